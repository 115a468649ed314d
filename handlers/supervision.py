"""督办 / 签收 / 反馈 / 延期 / 办结 / 退回 / 同意延期 / 不同意延期: a supervision item's life.

    下发 -> 签收 (or the first 反馈) -> 反馈 (one or more) -> 办结 by an admin
                                                     -> 退回 by an admin: the unit answers again
    延期: the unit asks before the deadline; an admin agrees (the deadline moves) or not.

Every step is a row in the item's timeline (ItemEvent); `督办 D3` shows it."""
import re

from bot import targets
from bot.campaign import items as lights
from bot.reply import Button, Card, Push, Reply, Target, UserError
from bot.router import ADMINS, EVERYONE, IN_GROUP_REFUSE, Context, Router
from bot.text import parse_code, parse_date_text, split_args
from db import queries
from db.models import (
    EVENT_DONE, EVENT_EXTEND_ASK, EVENT_EXTEND_NO, EVENT_EXTEND_YES, EVENT_FEEDBACK, EVENT_ISSUE, EVENT_RETURN,
    EVENT_SIGN, ITEM_ANSWERED, ITEM_DONE, ITEM_ISSUED, ITEM_RETURNED, ITEM_SIGNED, ROLE_ADMIN, SupervisionItem, Unit,
)
from db.month import Month
from handlers import lists, problems
from handlers.common import fail, need_args, parse_date, refuse_voided
from jobs.calendar import Workdays

router = Router("supervision")

_ITEM_CODE = re.compile(r"(?i:d)\s*\d{1,9}")


def _today(ctx: Context):
    return ctx.now.astimezone(ctx.tz).date()


def _workdays(ctx: Context) -> Workdays:
    return Workdays(ctx.config.schedule.days("holidays"), ctx.config.schedule.days("workdays"))


def _item(ctx: Context, command: str, token: str, also: set[int] = frozenset()) -> SupervisionItem:
    """The item a code names, if it was issued to the member's unit (牵头 or 配合; admins: any) or,
    to look at, to one of `also` (a 分管领导's units)."""
    code = parse_code(token, "D")
    item = queries.get_item(ctx.session, code) if code else None
    if item is None:
        raise fail(command, "item_not_found", code=token, past=queries.past_year_of(ctx.session, code) if code else None)
    refuse_voided(command, item)
    units = {item.unit_id, *item.partners}
    if ctx.member.role != ROLE_ADMIN and ctx.member.unit_id not in units and not units & also:
        raise fail(command, "item_not_yours", code=item.code)
    return item


def _units(ctx: Context, item: SupervisionItem) -> list[Unit]:
    """The 牵头单位, then the 配合单位."""
    return [u for u in (ctx.session.get(Unit, i) for i in [item.unit_id, *item.partners]) if u is not None]


def _to_units(ctx: Context, item: SupervisionItem, template: str, data: dict, key: str) -> list[Push]:
    """A notice about the item to each of its units' groups (@ the 负责人), else 1:1 to their 负责人."""
    return [p for unit in _units(ctx, item)
            for p in targets.to_unit(ctx.session, unit, template, {"item": item, **data}, f"{key}:{unit.id}",
                                     targets.leader_of(ctx.session, unit))]


def _sent(ctx: Context, units: list[Unit], pushes: list[Push]) -> list[tuple[Unit, list[targets.Place]]]:
    """Where the notice to each unit went (the reply names it)."""
    return [(u, targets.places(ctx.session, ctx.config, [p for p in pushes if p.data["unit"].id == u.id]))
            for u in units]


def _where(ctx: Context, pushes: list[Push]) -> list[targets.Place]:
    return targets.places(ctx.session, ctx.config, pushes)


def _sign_cards(ctx: Context, item: SupervisionItem, pushes: list[Push]) -> list[Push]:
    """A new item asks each unit's 负责人 to sign: a card to them 1:1 (bot/cards.py). Where the
    item went to the 负责人 already, that push is the card; a group reads the text, and with
    [wecom] cards its 负责人 gets the card as well. Each unit signs its own part (a 配合单位 too), so
    each unit's card is settled by that unit's 签收 or first 反馈."""
    out = []
    for push in pushes:
        unit = push.data["unit"]
        card = Card("card_item_issued", _sign_subject(item, unit.id), [
            Button("签收", f"签收 {item.code}"), Button("反馈", f"反馈 {item.code}", "办理情况"),
            Button("申请延期", f"延期 {item.code}", "新期限和理由（如 12月20日 等待批复）")])
        if push.target.channel == "app":
            push.card = card
        elif ctx.config.wecom.cards and unit.leader_userid and queries.get_member(ctx.session, unit.leader_userid):
            out.append(Push(Target("app", unit.leader_userid), "supervision_push", push.data, markdown=False,
                            key=f"{push.key}:card", card=card))
    return pushes + out


def _sign_subject(item: SupervisionItem, unit_id: int) -> str:
    return f"{item.code}:sign:{unit_id}"


def _to_admins(ctx: Context, item: SupervisionItem, kind: str, text: str, card: Card | None = None,
               **extra) -> list[Push]:
    data = {"item": item, "unit": ctx.session.get(Unit, item.unit_id), "kind": kind, "text": text,
            "member": ctx.member, "sender_unit": ctx.unit, **extra}
    return [Push(Target("app", a.userid), "item_admin_push", data, markdown=False, key=f"admin:{a.userid}",
                 card=card)
            for a in queries.admins(ctx.session) if a.userid != ctx.member.userid]


# ---------------------------------------------------------------- 督办: issue, list, timeline


@router.command("督办", "supervise", roles=EVERYONE, in_group=IN_GROUP_REFUSE)
def supervise(ctx: Context) -> Reply:
    args = ctx.args.strip()
    if not args:
        return _list(ctx)
    tokens, rest = split_args(args, 1)
    if len(tokens) == 1 and not rest and _ITEM_CODE.fullmatch(tokens[0]):
        return _timeline(ctx, tokens[0])
    if ctx.member.role != ROLE_ADMIN:
        raise UserError("not_allowed", command="督办", member=ctx.member, roles=[ROLE_ADMIN])
    return _issue(ctx)


def _list(ctx: Context) -> Reply:
    """Open items: the unit's own (a 分管领导: also their units'; admins: every unit's), with lights."""
    overseen = queries.overseen_units(ctx.session, ctx.member)
    mine = None if ctx.member.role == ROLE_ADMIN else {ctx.unit.id, *overseen}
    items = [i for i in queries.unfinished_items(ctx.session)
             if mine is None or i.unit_id in mine or mine.intersection(i.partners)]
    today, workdays = _today(ctx), _workdays(ctx)
    units = {u.id: u for u in queries.all_units(ctx.session)}
    rows = [(i, lights.light(i, today, ctx.config.supervision.warn_days, workdays), units.get(i.unit_id))
            for i in items]
    # One unit's list says whose it is once; a list across units names each item's unit.
    return Reply("items_list", {"rows": rows, "unit": ctx.unit if mine is not None and not overseen else None})


def _timeline(ctx: Context, token: str) -> Reply:
    item = _item(ctx, "督办", token, also=queries.overseen_units(ctx.session, ctx.member))
    events = queries.item_events(ctx.session, item.id)
    light = lights.light(item, _today(ctx), ctx.config.supervision.warn_days, _workdays(ctx))
    units = _units(ctx, item)
    return Reply("item_timeline", {"item": item, "units": units, "events": events, "light": light,
                                   "people": queries.members_by_id(ctx.session), "names": {u.id: u.name for u in units}})


def _issue(ctx: Context) -> Reply:
    """督办 <单位>[,<配合单位>…] <期限> <内容>: the units run until the first token that is a date."""
    s = ctx.session
    today = _today(ctx)
    tokens, _ = split_args(ctx.args, 12)
    if len(tokens) < 2:
        raise fail("督办", "missing_args")
    units: list[Unit] = []
    for i, token in enumerate(tokens):
        if i > 0 and parse_date_text(token, today) is not None:
            break
        unit = queries.find_unit(s, token)
        if unit is None:
            if i == 0:
                raise fail("督办", "unit_not_found", name=token)
            parse_date("督办", token, today)  # neither a unit nor a date: say what a date looks like
        if unit not in units:
            units.append(unit)
    else:
        raise fail("督办", "missing_args")
    (*_, deadline_token), text = need_args("督办", ctx.args, i + 1)
    deadline = parse_date("督办", deadline_token, today)
    if deadline < today:
        raise fail("督办", "deadline_past", value=deadline_token)
    lead, partners = units[0], units[1:]
    item = SupervisionItem(
        code=queries.next_code(s, SupervisionItem, "D"), unit_id=lead.id, content=text, deadline=deadline,
        month=str(Month.of(today)), created_by=ctx.member.userid, created_at=ctx.now,
        partner_ids=",".join(str(u.id) for u in partners),
    )
    s.add(item)
    s.flush()
    queries.add_item_event(s, item, EVENT_ISSUE, ctx.member.userid, text, ctx.now)
    pushes = _to_units(ctx, item, "supervision_push", {"lead": lead, "partners": partners}, item.code)
    pushes = _sign_cards(ctx, item, pushes)
    return Reply("supervise_ok", {"item": item, "lead": lead, "partners": partners,
                                  "sent": _sent(ctx, units, pushes)}, pushes)


# ---------------------------------------------------------------- the unit's steps


def _partner(ctx: Context, item: SupervisionItem) -> Unit | None:
    """The 配合单位 the sender acts for on this item: their own unit, if it is one of the item's
    partners (not its 牵头单位). Its steps are its own part: they do not move the item's status."""
    return ctx.unit if ctx.unit.id in item.partners and ctx.unit.id != item.unit_id else None


@router.command("签收", "sign")
def sign(ctx: Context) -> Reply:
    (code,), _ = need_args("签收", ctx.args, 1, content=False)
    item = _item(ctx, "签收", code)
    partner = _partner(ctx, item)
    if partner is not None:
        if item.status == ITEM_DONE:
            raise fail("签收", "item_done", code=item.code)
        if partner.id in queries.step_units(ctx.session, [item.id], EVENT_SIGN).get(item.id, ()):
            raise fail("签收", "partner_signed", item=item, unit=partner)
        queries.add_item_event(ctx.session, item, EVENT_SIGN, ctx.member.userid, "", ctx.now)
        return Reply("item_ok", {"kind": "签收", "item": item, "partner": partner},
                     settles=[(_sign_subject(item, partner.id), {"kind": "签收"})])
    if item.status != ITEM_ISSUED:
        raise fail("签收", "item_signed", item=item)
    item.status = ITEM_SIGNED
    ctx.session.add(item)
    queries.add_item_event(ctx.session, item, EVENT_SIGN, ctx.member.userid, "", ctx.now)
    return Reply("item_ok", {"kind": "签收", "item": item}, settles=[(_sign_subject(item, item.unit_id), {"kind": "签收"})])


@router.command("反馈", "feedback")
def feedback(ctx: Context) -> Reply:
    (code,), text = need_args("反馈", ctx.args, 1)
    item = _item(ctx, "反馈", code)
    if item.status == ITEM_DONE:
        raise fail("反馈", "item_done", code=item.code)
    partner = _partner(ctx, item)
    if partner is not None:  # its own part: in the timeline, told to the admins; the item waits for its 牵头单位
        if partner.id not in queries.step_units(ctx.session, [item.id], EVENT_SIGN).get(item.id, ()):
            queries.add_item_event(ctx.session, item, EVENT_SIGN, ctx.member.userid, "", ctx.now)
        queries.add_item_event(ctx.session, item, EVENT_FEEDBACK, ctx.member.userid, text, ctx.now)
        pushes = _to_admins(ctx, item, "反馈", text)
        return Reply("feedback_ok", {"item": item, "late": _today(ctx) > item.deadline, "partner": partner,
                                     "lead": ctx.session.get(Unit, item.unit_id), "notified": _where(ctx, pushes)},
                     pushes, settles=[(_sign_subject(item, partner.id), {"kind": "签收"})])
    if item.status == ITEM_ISSUED:  # the first answer signs for it, too
        queries.add_item_event(ctx.session, item, EVENT_SIGN, ctx.member.userid, "", ctx.now)
    queries.add_item_event(ctx.session, item, EVENT_FEEDBACK, ctx.member.userid, text, ctx.now)
    item.status = ITEM_ANSWERED
    ctx.session.add(item)
    late = _today(ctx) > item.deadline
    card = Card("card_item_admin", f"{item.code}:answer",
                [Button("办结", f"办结 {item.code}"), Button("退回", f"退回 {item.code}", "退回意见")])
    pushes = _to_admins(ctx, item, "反馈", text, card)
    return Reply("feedback_ok", {"item": item, "late": late, "notified": _where(ctx, pushes), "partner": None},
                 pushes, settles=[(_sign_subject(item, item.unit_id), {"kind": "签收"})])


@router.command("延期", "extend")
def extend(ctx: Context) -> Reply:
    (code, date_token), reason = need_args("延期", ctx.args, 2)
    item = _item(ctx, "延期", code)
    today = _today(ctx)
    if item.status == ITEM_DONE:
        raise fail("延期", "item_done", code=item.code)
    if today > item.deadline:
        raise fail("延期", "extend_too_late", item=item)
    new = parse_date("延期", date_token, today)
    if new <= item.deadline:
        raise fail("延期", "extend_not_later", item=item, value=date_token)
    item.ask_deadline = new
    ctx.session.add(item)
    text = f"{item.deadline} → {new}：{reason}"
    queries.add_item_event(ctx.session, item, EVENT_EXTEND_ASK, ctx.member.userid, text, ctx.now)
    card = Card("card_item_admin", f"{item.code}:extend", [
        Button("同意延期", f"同意延期 {item.code}"), Button("不同意", f"不同意延期 {item.code}", "不同意的理由")])
    pushes = _to_admins(ctx, item, "延期", text, card, asked=new, reason=reason)
    return Reply("item_ok", {"kind": "延期", "item": item, "notified": _where(ctx, pushes)}, pushes)


# ---------------------------------------------------------------- the admins' steps


@router.command("办结", "done", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def done(ctx: Context) -> Reply:
    (code,), remark = need_args("办结", ctx.args, 1, content=False)
    item = _item(ctx, "办结", code)
    if item.status == ITEM_DONE:
        raise fail("办结", "item_done", code=item.code)
    answer = queries.last_feedback(ctx.session, item.id, item.partners)
    if item.status != ITEM_ANSWERED or answer is None:
        raise fail("办结", "item_not_answered", code=item.code)
    item.status, item.answered_at, item.closed_at = ITEM_DONE, answer.created_at, ctx.now
    ctx.session.add(item)
    queries.add_item_event(ctx.session, item, EVENT_DONE, ctx.member.userid, remark, ctx.now)
    on_time = answer.created_at.astimezone(ctx.tz).date() <= item.deadline
    data = {"kind": "办结", "remark": remark, "on_time": on_time}
    return _item_ok(ctx, item, data, "done", (f"{item.code}:answer", {"kind": "办结"}))


@router.command("退回", "return", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def send_back(ctx: Context) -> Reply:
    """退回 D3 <意见> (an answer to a 督办 item), 退回 P3 <意见> (a problem's 销号 request) or
    退回 <单位> <意见> (a unit's lists: handlers/lists.py)."""
    (code,), remark = need_args("退回", ctx.args, 1)
    if re.fullmatch(r"(?i:p)\s*\d{1,9}", code):
        return problems.send_back(ctx, code, remark)
    if not _ITEM_CODE.fullmatch(code) and (unit := queries.find_unit(ctx.session, code)) is not None:
        return lists.send_back(ctx, unit, remark)
    item = _item(ctx, "退回", code)
    if item.status == ITEM_DONE:
        raise fail("退回", "item_done", code=item.code)
    if item.status != ITEM_ANSWERED:
        raise fail("退回", "item_not_answered", code=item.code)
    item.status = ITEM_RETURNED
    ctx.session.add(item)
    event = queries.add_item_event(ctx.session, item, EVENT_RETURN, ctx.member.userid, remark, ctx.now)
    data = {"kind": "退回", "remark": remark}
    return _item_ok(ctx, item, data, f"return{event.id}", (f"{item.code}:answer", {"kind": "退回"}))


@router.command("同意延期", "extendok", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def extend_yes(ctx: Context) -> Reply:
    (code,), remark = need_args("同意延期", ctx.args, 1, content=False)
    item = _pending_extension(ctx, "同意延期", code)
    old = item.deadline
    item.deadline, item.ask_deadline = item.ask_deadline, None
    ctx.session.add(item)
    event = queries.add_item_event(ctx.session, item, EVENT_EXTEND_YES, ctx.member.userid,
                                   f"{old} → {item.deadline}" + (f"：{remark}" if remark else ""), ctx.now)
    data = {"kind": "同意延期", "remark": remark, "old": old}
    return _item_ok(ctx, item, data, f"ext{event.id}",
                    (f"{item.code}:extend", {"kind": "同意延期", "deadline": item.deadline}))


@router.command("不同意延期", "extendno", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def extend_no(ctx: Context) -> Reply:
    (code,), remark = need_args("不同意延期", ctx.args, 1)
    item = _pending_extension(ctx, "不同意延期", code)
    asked, item.ask_deadline = item.ask_deadline, None
    ctx.session.add(item)
    event = queries.add_item_event(ctx.session, item, EVENT_EXTEND_NO, ctx.member.userid, remark, ctx.now)
    data = {"kind": "不同意延期", "remark": remark, "asked": asked}
    return _item_ok(ctx, item, data, f"ext{event.id}", (f"{item.code}:extend", {"kind": "不同意延期"}))


def _item_ok(ctx: Context, item: SupervisionItem, data: dict, key: str, settles: tuple[str, dict]) -> Reply:
    """An admin's step: the reply, the notice to the item's units, whose places the reply names, and
    the decision cards it settles (bot/cards.py)."""
    pushes = _to_units(ctx, item, "item_push", data, key)
    return Reply("item_ok", {"item": item, "sent": _sent(ctx, _units(ctx, item), pushes), **data}, pushes,
                 settles=[settles])


def _pending_extension(ctx: Context, command: str, code: str) -> SupervisionItem:
    item = _item(ctx, command, code)
    if item.ask_deadline is None or item.status == ITEM_DONE:
        raise fail(command, "no_extension", code=item.code)
    return item
