"""撤回 / 作废: mistakes undone.

    撤回 P3: the person's own 问题, within WITHDRAW_WINDOW, while nothing happened to it (no 整改, no 销号)
    撤回 T3: the person's own latest 汇报 version of the task, within WITHDRAW_WINDOW, in the running
             month, while it is still the latest: the version before counts again
    作废 <编号> <原因> (admins): a 任务, 问题, 督办 or 亮点 is kept with who, when and why, and is gone
             from lists, prompts and the scores of the running month on (bot/campaign/scoring.py);
             a published month changes only through 更正."""
from __future__ import annotations

import re
from datetime import timedelta

from bot.reply import Reply
from bot.router import ADMINS, IN_GROUP_REFUSE, Context, Router
from bot.text import parse_code
from db import queries
from db.models import (
    PROBLEM_OPEN, ROLE_ADMIN, ROLE_LEADER, ROLE_MEMBER, Highlight, Problem, SupervisionItem, Task, Unit,
)
from db.month import Month
from handlers.common import fail, need_args, refuse_voided

router = Router("undo")
WITHDRAW_WINDOW = timedelta(hours=24)
WITHDRAWN = "本人撤回"  # the void_reason of a 问题 its author withdrew
# What a code names: its prefix, the table, how the replies call it and the error when there is none.
_KINDS = {"T": (Task, "任务", "task_not_found"), "P": (Problem, "问题", "problem_not_found"),
          "D": (SupervisionItem, "督办单", "item_not_found"), "L": (Highlight, "亮点", "highlight_not_found")}


def _kind(token: str) -> str | None:
    m = re.fullmatch(r"\s*([TtPpDdLl])\s*\d{1,9}\s*", token)
    return m.group(1).upper() if m else None


def _named(ctx: Context, command: str, token: str, prefix: str):
    """The task, problem, 督办 item or 亮点 a code names (any unit's), if it was not voided already."""
    model, _, missing = _KINDS[prefix]
    row = queries.by_code(ctx.session, model, parse_code(token, prefix))
    if row is None:
        raise fail(command, missing, code=token)
    refuse_voided(command, row)
    return row


# A 分管领导 looks across units rather than reporting: an admin's 作废 serves their rare mistake.
WITHDRAWERS = frozenset({ROLE_MEMBER, ROLE_LEADER, ROLE_ADMIN})


@router.command("撤回", "withdraw", roles=WITHDRAWERS)  # in a group too, where people report
def withdraw(ctx: Context) -> Reply:
    (token,), _ = need_args("撤回", ctx.args, 1, content=False)
    kind = _kind(token)
    if kind == "P":
        return _withdraw_problem(ctx, token)
    if kind == "T":
        return _withdraw_report(ctx, token)
    raise fail("撤回", "withdraw_what", code=token)


def _withdraw_problem(ctx: Context, token: str) -> Reply:
    s = ctx.session
    row = _named(ctx, "撤回", token, "P")
    if row.owner_userid != ctx.member.userid:
        raise fail("撤回", "withdraw_not_own", code=row.code, kind="问题")
    if ctx.now - row.created_at > WITHDRAW_WINDOW:
        raise fail("撤回", "withdraw_too_late", code=row.code, kind="问题", when=row.created_at)
    if row.status != PROBLEM_OPEN or queries.progress_of(s, [row.id]):
        raise fail("撤回", "withdraw_moved_on", code=row.code, kind="问题", what="整改或销号记录")
    row.voided_at, row.voided_by, row.void_reason = ctx.now, ctx.member.userid, WITHDRAWN
    s.add(row)
    return Reply("withdraw_ok", {"problem": row})


def _withdraw_report(ctx: Context, token: str) -> Reply:
    s = ctx.session
    task = _named(ctx, "撤回", token, "T")
    latest = queries.latest_report(s, task.id)
    if latest is None:
        raise fail("撤回", "withdraw_nothing", code=task.code)
    if latest.userid != ctx.member.userid or latest.entered_by:
        who = queries.get_member(s, latest.entered_by or latest.userid)
        raise fail("撤回", "withdraw_not_own", code=task.code, kind="汇报", who=who.name if who else latest.userid)
    if ctx.now - latest.created_at > WITHDRAW_WINDOW:
        raise fail("撤回", "withdraw_too_late", code=task.code, kind="汇报", when=latest.created_at)
    if latest.month != str(Month.of(ctx.now.astimezone(ctx.tz))):
        raise fail("撤回", "withdraw_moved_on", code=task.code, kind="汇报", what=f"{latest.month} 月结束（已计入排名）")
    queries.withdraw_report(s, latest.id)
    before = queries.latest_report(s, task.id, Month.parse(latest.month))
    return Reply("withdraw_ok", {"task": task, "report": latest, "before": before})


@router.command("作废", "void", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def void(ctx: Context) -> Reply:
    (token,), reason = need_args("作废", ctx.args, 1)
    prefix = _kind(token)
    if prefix is None:
        raise fail("作废", "void_what", code=token)
    row, kind = _named(ctx, "作废", token, prefix), _KINDS[prefix][1]
    s = ctx.session
    row.voided_at, row.voided_by, row.void_reason = ctx.now, ctx.member.userid, reason
    s.add(row)
    return Reply("void_ok", {"row": row, "kind": kind, "unit": s.get(Unit, row.unit_id),
                             "month": Month.of(ctx.now.astimezone(ctx.tz))})
