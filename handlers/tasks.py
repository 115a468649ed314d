"""任务 / 汇报 / 修改: the unit's task list and progress reports."""
import re

from db.month import Month
from bot.reply import Reply
from bot.router import Context, Router
from bot.campaign import scoring
from db import queries
from bot.text import parse_code, split_args, split_repeated
from db.models import ROLE_ADMIN, Unit
from handlers.common import fail, need_args, percent, task_by_code, task_to_report

router = Router("tasks")


def _month(ctx: Context) -> Month:
    return Month.of(ctx.now.astimezone(ctx.tz))


@router.command("任务", "我的任务", "tasks", "task")
def list_tasks(ctx: Context) -> Reply:
    s = ctx.session
    month = _month(ctx)
    unit = ctx.unit
    if ctx.args and ctx.member.role == ROLE_ADMIN and not parse_code(ctx.args.split()[0], "T"):
        unit = queries.find_unit(s, ctx.args.strip())  # an admin's 任务 <单位>: that unit's tasks
        if unit is None:
            raise fail("任务", "unit_not_found", name=ctx.args.strip())
    elif ctx.args:
        # A 分管领导 may look at the tasks of the units they are over (reporting stays their unit's).
        task = task_by_code(s, "任务", ctx.args.split()[0], ctx.member, also=queries.overseen_units(s, ctx.member))
        snap = scoring.snapshots(
            s, month, ctx.now, ctx.tz, ctx.config.schedule.report_deadline_day, tasks=[task]
        )[0]
        history = queries.report_history(s, task.id)[-5:]
        people = queries.members_by_id(s)
        return Reply("task_detail", {"snap": snap, "history": history, "people": people, "month": month,
                                     "attachments": queries.attachments(s, [task.code])})
    snaps = scoring.snapshots(
        s, month, ctx.now, ctx.tz, ctx.config.schedule.report_deadline_day, unit_id=unit.id
    )
    snaps = [x for x in snaps if x.active]
    return Reply(
        "tasks_list",
        {"unit": unit, "snaps": snaps, "month": month, "unreported": sum(not x.reported_in_month for x in snaps)},
    )


# A second 汇报 in one message: the word after a space or a mark, followed by [code] and a percent.
_NEXT_REPORT = re.compile(r"(?<=[\s,;.!?。、])(?:汇报|report)(?=[\s,;:、]*(?:[tT]?\d{1,9}[\s,;:、]+)?\d{1,3}\s*%)",
                          re.IGNORECASE)
_PERCENT_FIRST = re.compile(r"\d{1,3}(?:\.\d+)?%")  # a (normalised) token that starts with a percent
_GLUED = re.compile(r"(\d\s*[%％])(?=[^\s%％])")  # "30%完成方案": the percent runs on into the text


def _code_percent_text(ctx: Context, command: str, args: str) -> tuple[queries.ReportTarget, int, str]:
    """<code> <percent> <text>, as people type it: the text may follow the percent without a space;
    the code may be left out by someone with exactly one open task of their own."""
    tokens, _ = split_args(args, 2)
    code_given = not (tokens and _PERCENT_FIRST.match(tokens[0]))
    count = 2 if code_given else 1
    if len(tokens) >= count and re.fullmatch(r"\d{1,3}(?:\.\d+)?%.+", tokens[count - 1]):
        args = _GLUED.sub(r"\1 ", args, count=1)
    tokens, text = need_args(command, args, count, first=2 - count)
    if code_given:
        code = tokens[0]
    else:
        codes = queries.open_task_codes(ctx.session, ctx.member.userid, _month(ctx))
        if len(codes) != 1:
            raise fail(command, "need_code", codes=codes)
        code = codes[0]
    task = task_to_report(ctx.session, command, code, ctx.member, _month(ctx))
    return task, percent(command, tokens[-1]), text


def _report_one(ctx: Context, args: str) -> dict:
    task, pct, text = _code_percent_text(ctx, "汇报", args)
    rep = queries.add_report(ctx.session, task, ctx.member.userid, pct, text, ctx.now, ctx.tz)
    # The count is the task's own unit's (an admin may report for another unit).
    unit = ctx.unit if task.unit_id == ctx.unit.id else ctx.session.get(Unit, task.unit_id)
    deadline = _month(ctx).first_day.replace(day=ctx.config.schedule.report_deadline_day)
    today = ctx.now.astimezone(ctx.tz).date()
    return {"task": task, "report": rep, "left": task.others_unreported, "unit": unit,
            "late": rep.local_day > deadline.day, "overdue": task.due_date < today and pct < 100,
            "deadline": deadline}


def _tasks_ahead(s, args: list[str], now, config) -> None:
    """A batch's 汇报 read their tasks in one query (queries.read_ahead_targets)."""
    codes = [parse_code(first[0], "T") for first, _ in (split_args(a, 1) for a in args) if first]  # (as the handler)
    queries.read_ahead_targets(s, [c for c in codes if c], Month.of(now.astimezone(config.schedule.tz)))


@router.command("汇报", "report", ahead=_tasks_ahead)
def report(ctx: Context) -> Reply:
    """One report, or several in one message (汇报 T1 30% … 汇报 T2 20% …), each answered; a wrong
    one refuses the whole message, so nothing is half-stored."""
    entries = [_report_one(ctx, piece) for piece in split_repeated(ctx.args, _NEXT_REPORT)]
    # What each unit has still to report after this whole message: its last entry counted the rest.
    left = {e["unit"].id: e["left"] for e in entries}
    for e in entries:
        e["left"] = left[e["unit"].id]
    if len(entries) == 1:
        return Reply("report_ok", entries[0])
    return Reply("reports_ok", {"entries": entries})


@router.command("修改", "amend")
def amend(ctx: Context) -> Reply:
    task, pct, text = _code_percent_text(ctx, "修改", ctx.args)
    month = _month(ctx)
    previous = queries.latest_report(ctx.session, task.id, month)
    if previous is None:
        raise fail("修改", "nothing_to_amend", code=task.code)
    rep = queries.add_report(ctx.session, task, ctx.member.userid, pct, text, ctx.now, ctx.tz, supersedes=previous)
    return Reply("amend_ok", {"task": task, "report": rep, "previous": previous})
