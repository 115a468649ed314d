"""任务 / 汇报 / 修改: the unit's task list and progress reports."""
from db.month import Month
from bot.reply import Reply
from bot.router import Context, Router
from bot.campaign import scoring
from db import queries
from db.models import Unit
from handlers.common import fail, need_args, percent, task_by_code

router = Router("tasks")


def _month(ctx: Context) -> Month:
    return Month.of(ctx.now.astimezone(ctx.tz))


@router.command("任务", "我的任务", "tasks", "task")
def list_tasks(ctx: Context) -> Reply:
    s = ctx.session
    month = _month(ctx)
    if ctx.args:
        task = task_by_code(s, "任务", ctx.args.split()[0], ctx.member)
        snap = scoring.snapshots(
            s, month, ctx.now, ctx.tz, ctx.config.schedule.report_deadline_day, tasks=[task]
        )[0]
        history = queries.report_history(s, task.id)[-5:]
        people = queries.members_by_id(s)
        return Reply("task_detail", {"snap": snap, "history": history, "people": people, "month": month})
    snaps = scoring.snapshots(
        s, month, ctx.now, ctx.tz, ctx.config.schedule.report_deadline_day, unit_id=ctx.unit.id
    )
    snaps = [x for x in snaps if x.active]
    return Reply(
        "tasks_list",
        {"unit": ctx.unit, "snaps": snaps, "month": month, "unreported": sum(not x.reported_in_month for x in snaps)},
    )


@router.command("汇报", "report")
def report(ctx: Context) -> Reply:
    (code, pct_token), text = need_args("汇报", ctx.args, 2)
    task = task_by_code(ctx.session, "汇报", code, ctx.member, lock=True)
    pct = percent("汇报", pct_token)
    rep = queries.add_report(ctx.session, task, ctx.member.userid, pct, text, ctx.now, ctx.tz)
    # The count is the task's own unit's (an admin may report for another unit).
    unit = ctx.unit if task.unit_id == ctx.unit.id else ctx.session.get(Unit, task.unit_id)
    month = _month(ctx)
    left = queries.unreported_count(ctx.session, unit.id, month)
    deadline = month.first_day.replace(day=ctx.config.schedule.report_deadline_day)
    return Reply("report_ok", {"task": task, "report": rep, "left": left, "unit": unit,
                               "late": rep.local_day > deadline.day, "deadline": deadline})


@router.command("修改", "amend")
def amend(ctx: Context) -> Reply:
    (code, pct_token), text = need_args("修改", ctx.args, 2)
    task = task_by_code(ctx.session, "修改", code, ctx.member, lock=True)
    pct = percent("修改", pct_token)
    month = _month(ctx)
    previous = queries.latest_report(ctx.session, task.id, month)
    if previous is None:
        raise fail("修改", "nothing_to_amend", code=task.code)
    rep = queries.add_report(ctx.session, task, ctx.member.userid, pct, text, ctx.now, ctx.tz, supersedes=previous)
    return Reply("amend_ok", {"task": task, "report": rep, "previous": previous})
