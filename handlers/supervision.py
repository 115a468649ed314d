"""反馈 / 督办: supervision items (督办单) and the units' answers."""
from db.month import Month
from bot.reply import Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_REFUSE, Context, Router
from bot.targets import unit_target
from db import queries
from db.models import Feedback, SupervisionItem
from handlers.common import fail, item_by_code, need_args, parse_date

router = Router("supervision")


@router.command("反馈", "feedback")
def feedback(ctx: Context) -> Reply:
    (code,), text = need_args("反馈", ctx.args, 1)
    item = item_by_code(ctx.session, "反馈", code, ctx.member)
    ctx.session.add(Feedback(item_id=item.id, userid=ctx.member.userid, text=text, created_at=ctx.now))
    late = ctx.now.astimezone(ctx.tz).date() > item.deadline
    return Reply("feedback_ok", {"item": item, "late": late})


@router.command("督办", "supervise", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def supervise(ctx: Context) -> Reply:
    (unit_name, deadline_token), text = need_args("督办", ctx.args, 2)
    s = ctx.session
    unit = queries.find_unit(s, unit_name)
    if unit is None:
        raise fail("督办", "unit_not_found", name=unit_name)
    deadline = parse_date("督办", deadline_token)
    today = ctx.now.astimezone(ctx.tz).date()
    if deadline < today:
        raise fail("督办", "deadline_past", value=deadline_token)
    item = SupervisionItem(
        code=queries.next_code(s, SupervisionItem, "D"),
        unit_id=unit.id,
        content=text,
        deadline=deadline,
        month=str(Month.of(today)),
        created_by=ctx.member.userid,
        created_at=ctx.now,
    )
    s.add(item)
    s.flush()
    target = unit_target(unit)
    leader = queries.get_member(s, unit.leader_userid) if unit.leader_userid else None
    mentions = [leader] if leader else []
    if target is None and leader is not None:
        target = Target("app", leader.userid)
    pushes = []
    if target is not None:
        pushes.append(
            Push(target, "supervision_push", {"item": item, "unit": unit, "mentions": mentions},
                 mentions=[m.userid for m in mentions], key=item.code)
        )
    return Reply("supervise_ok", {"item": item, "unit": unit, "target": target}, pushes)
