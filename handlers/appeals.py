"""采纳 / 驳回 / 补录 / 重算 / 更正: an admin's answer to a 申诉 and how a month's ranking is corrected.

    申诉 (a unit's 负责人) -> 采纳 <单位> [意见] or 驳回 <单位> <意见>: the 负责人 is told either way
    采纳 -> 补录 T3 <日期时间> <进度%> <内容> (a report the system missed, with its real time), or
            补录 D3 <日期时间> <内容> (a 督办 answer given on paper)
         -> 重算 <月份> (in review: frozen again; the admins and each 负责人 whose line changed are told)
         -> 更正 <月份> <说明> (once published: frozen again and published with a 更正 heading)

Every earlier version of the ranking is kept (bot/campaign/release.py)."""
from __future__ import annotations

import re
from datetime import datetime, time

from bot import targets
from bot.campaign import digest, release
from bot.reply import Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_REFUSE, Context, Router
from bot.text import normalize_map, parse_code, parse_date_text, parse_month_text, split_args
from db import queries
from db.models import (
    APPEAL_ACCEPTED, APPEAL_REJECTED, EVENT_LATE_ENTRY, ITEM_ANSWERED, ITEM_DONE, RELEASE_PUBLISHED, Appeal, Unit,
)
from db.month import Month
from handlers.common import fail, need_args, percent

router = Router("appeals")


def _decide(ctx: Context, command: str, decision: str, remark_required: bool) -> Reply:
    (name,), remark = need_args(command, ctx.args, 1, content=remark_required)
    unit = queries.find_unit(ctx.session, name)
    if unit is None:
        raise fail(command, "unit_not_found", name=name)
    appeal = release.waiting_appeal(ctx.session, unit.id)
    if appeal is None:
        raise fail(command, "no_waiting_appeal", unit=unit)
    release.decide(ctx.session, appeal, decision, remark, ctx.member.userid, ctx.now)
    data = {"appeal": appeal, "unit": unit, "decision": decision, "remark": remark}
    pushes = []
    if queries.get_member(ctx.session, appeal.userid) is not None:
        pushes.append(Push(Target("app", appeal.userid), "appeal_decided_push", data, markdown=False,
                           key=f"appeal{appeal.id}"))
    return Reply("appeal_decided_ok", {**data, "told": bool(pushes)}, pushes,
                 settles=[(f"appeal:{appeal.month}:{unit.id}", {"kind": decision})])


@router.command("采纳", "accept", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def accept(ctx: Context) -> Reply:
    return _decide(ctx, "采纳", APPEAL_ACCEPTED, remark_required=False)


@router.command("驳回", "reject", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def reject(ctx: Context) -> Reply:
    return _decide(ctx, "驳回", APPEAL_REJECTED, remark_required=True)


# 补录's <日期时间>: a date as elsewhere, then a time (10:00, 10点, 10点30分) or none (12:00).
_WHEN = re.compile(r"\s*(?P<date>\S+?)(?:[\sT]*(?P<h>\d{1,2})\s*[:点时]\s*(?P<m>\d{1,2})?\s*分?)?(?=\s|$)")
_NOON = time(12)


def _when(ctx: Context, text: str) -> tuple[datetime, str]:
    """The moment at the start of `text` (in the configured timezone) and the rest as typed."""
    norm, index = normalize_map(text)
    m = _WHEN.match(norm)
    day = parse_date_text(m.group("date"), ctx.now.astimezone(ctx.tz).date()) if m else None
    if day is None:
        raise fail("补录", "bad_when", value=(m.group(0) if m else text).strip())
    hour, minute = int(m.group("h") or _NOON.hour), int(m.group("m") or 0)
    if hour > 23 or minute > 59:
        raise fail("补录", "bad_when", value=m.group(0).strip())
    moment = datetime.combine(day, time(hour, minute), ctx.tz)
    if moment > ctx.now:
        raise fail("补录", "when_future", value=m.group(0).strip())
    rest = text[index[m.end()]:] if m.end() < len(norm) else ""
    return moment, rest.strip()


def _appeal_for(ctx: Context, unit_id: int, month: Month) -> Appeal:
    """The unit's accepted 申诉 of the month the entry is scored in."""
    appeal = release.accepted_appeal(ctx.session, month, unit_id)
    if appeal is None:
        raise fail("补录", "no_accepted_appeal", unit=ctx.session.get(Unit, unit_id), month=month)
    return appeal


@router.command("补录", "lateentry", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def late_entry(ctx: Context) -> Reply:
    """补录 T3 <日期时间> <进度%> <内容>, or 补录 D3 <日期时间> <内容>: for a unit whose 申诉 was accepted."""
    (code,), rest = need_args("补录", ctx.args, 1)
    if re.fullmatch(r"(?i:d)\s*\d{1,9}", code):
        return _item_answer(ctx, code, rest)
    task = queries.get_task(ctx.session, parse_code(code, "T") or "")
    if task is None or task.voided_at is not None:
        raise fail("补录", "task_not_found", code=code)
    moment, rest = _when(ctx, rest)
    (pct,), text = need_args("补录", rest, 1)
    pct = percent("补录", pct)
    month = Month.of(moment.astimezone(ctx.tz))
    appeal = _appeal_for(ctx, task.unit_id, month)
    later = queries.reports_after(ctx.session, task.id, moment)
    if later:
        raise fail("补录", "report_after", code=task.code, report=later[-1])
    rep = queries.add_report(ctx.session, queries.task_to_report(ctx.session, task.code, month), ctx.member.userid,
                             pct, text, moment, ctx.tz,
                             entered={"entered_by": ctx.member.userid, "entered_at": ctx.now, "appeal_id": appeal.id})
    return Reply("late_entry_ok", {"task": task, "report": rep, "appeal": appeal, "moment": moment,
                                   "unit": ctx.session.get(Unit, task.unit_id)})


def _item_answer(ctx: Context, code: str, rest: str) -> Reply:
    item = queries.get_item(ctx.session, parse_code(code, "D") or "")
    if item is None or item.voided_at is not None:
        raise fail("补录", "item_not_found", code=code)
    moment, text = _when(ctx, rest)
    if not text:
        raise fail("补录", "missing_args")
    appeal = _appeal_for(ctx, item.unit_id, Month.of(item.deadline))  # scored in its deadline's month
    queries.add_item_event(ctx.session, item, EVENT_LATE_ENTRY, ctx.member.userid,
                           f"{text}（{ctx.now.astimezone(ctx.tz):%m-%d %H:%M} 补录，申诉#{appeal.id}）",
                           moment)
    if item.status == ITEM_DONE:  # accepted already: it counts from the answer's real time
        item.answered_at = moment
    else:
        item.status = ITEM_ANSWERED
    ctx.session.add(item)
    return Reply("late_entry_ok", {"item": item, "appeal": appeal, "moment": moment,
                                   "unit": ctx.session.get(Unit, item.unit_id)})


def _month_release(ctx: Context, command: str, rest_required: bool):
    tokens, rest = split_args(ctx.args, 1)
    month = parse_month_text(tokens[0], ctx.now.astimezone(ctx.tz).year) if tokens else None
    if month is None or (rest_required and not rest):
        raise fail(command, "missing_args")
    frozen = release.get(ctx.session, month)
    if frozen is None:
        raise fail(command, "no_release", month=month)
    return month, frozen, rest


def _changed_pushes(ctx: Context, month: Month, changes: list[dict], kind: str, key: str) -> list[Push]:
    """To each 负责人 whose unit's line changed: old → new."""
    people = queries.members_by_id(ctx.session)
    return [Push(Target("app", c["leader"]), "ranking_changed_push", {"change": c, "month": month, "kind": kind},
                 markdown=False, key=f"{key}:{c['unit_id']}")
            for c in changes if c["leader"] in people]


@router.command("重算", "recount", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def recount(ctx: Context) -> Reply:
    """Freeze the month under review again, as the reports and answers now stand."""
    month, frozen, _ = _month_release(ctx, "重算", rest_required=False)
    if frozen.status == RELEASE_PUBLISHED:
        raise fail("重算", "recount_published", month=month)
    scores = digest.rank(ctx.session, ctx.config, month, ctx.now)
    changes = release.refreeze(ctx.session, frozen, scores, ctx.member.userid, ctx.now)
    data = {"month": month, "changes": changes, "version": frozen.version, "member": ctx.member}
    key = f"recount{frozen.version}"
    pushes = [Push(Target("app", a.userid), "recount_push", data, markdown=False, key=f"{key}:{a.userid}")
              for a in queries.admins(ctx.session) if a.userid != ctx.member.userid]
    pushes += _changed_pushes(ctx, month, changes, "重算", key)
    return Reply("recount_ok", data, pushes)


@router.command("更正", "correct", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def correct(ctx: Context) -> Reply:
    """Correct a published month: frozen again and published with a 更正 heading."""
    month, frozen, note = _month_release(ctx, "更正", rest_required=True)
    if frozen.status != RELEASE_PUBLISHED:
        raise fail("更正", "correct_unpublished", month=month)
    scores = digest.rank(ctx.session, ctx.config, month, ctx.now)
    changes = release.refreeze(ctx.session, frozen, scores, ctx.member.userid, ctx.now, note=note)
    key = f"correct{frozen.version}"
    data = {"scores": scores, "month": month, "correction": release.correction(frozen)}
    pushes = targets.to_broadcast_or_admins(ctx.session, ctx.config, "ranking_correction", data, key,
                                            admins_too=False)
    pushes += _changed_pushes(ctx, month, changes, "更正", key)
    return Reply("correct_ok", {"month": month, "changes": changes, "version": frozen.version, "note": note,
                                "broadcast": targets.broadcast_target(ctx.config) is not None}, pushes)
