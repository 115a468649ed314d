"""清单 / 通过 / 退回 <单位>: a unit's lists from its own 负责人, and their review by an admin.

    清单 (负责人) -> the unit's workbook as a file -> sent back (a file in chat, or the unit's page)
    -> checked, kept as the unit's submission (待审核) -> 通过 <单位> (applied at once)
                                                     -> 退回 <单位> <意见> (已退回: the unit sends again)

The workbook is checked when it has been fetched (bot/evidence.py, bot/excel/lists.py); here the
file message is only recorded."""
from bot.campaign import lists
from bot.reply import Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_REFUSE, LEADERS, Context, Router
from db import queries
from db.models import ATTACH_PENDING, LISTS_CODE, LISTS_NONE, ROLE_ADMIN, Attachment, Unit
from handlers.common import fail

router = Router("lists")


def _unit(ctx: Context, command: str, name: str) -> Unit:
    unit = queries.find_unit(ctx.session, name)
    if unit is None:
        raise fail(command, "unit_not_found", name=name)
    return unit


def _shown(ctx: Context, unit: Unit) -> dict:
    """What 清单 and the review show of a unit: its state and the waiting difference, row by row."""
    waiting = queries.waiting_submission(ctx.session, unit.id)
    return {"unit": unit, "state": lists.states(ctx.session, ctx.now, ctx.tz)[unit.id], "waiting": waiting,
            "changes": lists.changes_of(waiting) if waiting else None,
            "counts": lists.counts(lists.changes_of(waiting)) if waiting else None,
            "people": queries.members_by_id(ctx.session)}


@router.command("清单", "lists", roles=LEADERS, in_group=IN_GROUP_REFUSE)
def show(ctx: Context) -> Reply:
    """负责人: the unit's workbook as a file. Admins: every unit's state, or `清单 <单位>`: that unit's
    workbook and the difference waiting for review."""
    name = ctx.args.strip()
    if ctx.member.role == ROLE_ADMIN and not name:
        states = lists.states(ctx.session, ctx.now, ctx.tz)
        units = [(u, states[u.id]) for u in queries.all_units(ctx.session)
                 if u.id != ctx.member.unit_id or states[u.id] != LISTS_NONE]
        return Reply("lists_states", {"units": units})
    unit = _unit(ctx, "清单", name) if ctx.member.role == ROLE_ADMIN else ctx.unit
    spec = {"kind": "lists", "unit": unit.id, "at": ctx.now.isoformat()}
    push = Push(Target("app", ctx.member.userid), "", file=spec, filename=lists.workbook_name(unit), key="file")
    return Reply("lists_sent", {**_shown(ctx, unit), "filename": push.filename,
                                "admin": ctx.member.role == ROLE_ADMIN}, [push])


def receive(ctx: Context) -> Reply:
    """A file message from a unit's 负责人: their lists, fetched and checked after this message."""
    _, media_id = ctx.media
    ctx.session.add(Attachment(userid=ctx.member.userid, kind="file", msg_id=ctx.msg_id, media_id=media_id,
                               created_at=ctx.now, code=LISTS_CODE, unit_id=ctx.unit.id, status=ATTACH_PENDING))
    return Reply("lists_received", {"unit": ctx.unit})


def _waiting(ctx: Context, command: str, unit: Unit):
    waiting = queries.waiting_submission(ctx.session, unit.id)
    if waiting is None:
        raise fail(command, "lists_not_waiting", unit=unit, state=lists.states(ctx.session, ctx.now, ctx.tz)[unit.id])
    return waiting


def _to_unit(ctx: Context, unit: Unit, submission, template: str, data: dict) -> list[Push]:
    """The answer to the unit: to whoever sent the lists, and to the unit's 负责人 if another."""
    ids = dict.fromkeys(u for u in (submission.userid, unit.leader_userid) if u and u != ctx.member.userid)
    return [Push(Target("app", userid), template, {"unit": unit, "submission": submission, **data},
                 markdown=False, key=f"lists{submission.id}:{userid}") for userid in ids
            if queries.get_member(ctx.session, userid)]


@router.command("通过", "approve", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def approve(ctx: Context) -> Reply:
    """通过 <单位>: the unit's waiting lists are applied at once."""
    name = ctx.args.strip()
    if not name:
        raise fail("通过", "missing_args")
    unit = _unit(ctx, "通过", name)
    waiting = _waiting(ctx, "通过", unit)
    stale = lists.stale(ctx.session, waiting)
    if stale:
        raise fail("通过", "lists_stale", unit=unit, codes=stale)
    done = lists.approve(ctx.session, waiting, ctx.member, ctx.now)
    data = {"done": done}
    return Reply("lists_approved", {"unit": unit, **data}, _to_unit(ctx, unit, waiting, "lists_review_push",
                                                                     {"kind": "通过", **data}))


def send_back(ctx: Context, unit: Unit, opinion: str) -> Reply:
    """退回 <单位> <意见> (the 退回 command also serves 督办 items and problems: handlers/supervision.py)."""
    waiting = _waiting(ctx, "退回", unit)
    lists.send_back(ctx.session, waiting, ctx.member, ctx.now, opinion)
    return Reply("lists_returned", {"unit": unit, "opinion": opinion},
                 _to_unit(ctx, unit, waiting, "lists_review_push", {"kind": "退回", "opinion": opinion}))
