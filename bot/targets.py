"""Who gets a message: a unit's group, the broadcast group, the admins; and the pushes built for them.

Shared by commands (提醒, 督办) and jobs, so a prompt looks the same whoever sends it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session

from bot.campaign import release
from bot.campaign.digest import UnitDue
from bot.config import Config
from bot.reply import Button, Card, Push, Target
from bot.wecom.api import IMAGE_LIMIT
from db import queries
from db.models import ATTACH_STORED, Attachment, Member, SupervisionItem, Unit
from db.month import Month

log = logging.getLogger("duban.jobs")


def unit_target(unit: Unit) -> Target | None:
    """A unit's group: its app chat if it has one, else its group robot."""
    if unit.chat_id:
        return Target("appchat", unit.chat_id)
    if unit.webhook_key:
        return Target("webhook", unit.webhook_key)
    return None


def broadcast_target(config: Config) -> Target | None:
    if config.broadcast.chat_id:
        return Target("appchat", config.broadcast.chat_id)
    if config.broadcast.webhook_key:
        return Target("webhook", config.broadcast.webhook_key)
    return None


def group_or_leader(s: Session, unit: Unit) -> Target | None:
    """The unit's group, else its leader in a 1:1 app message, else nobody."""
    target = unit_target(unit)
    if target is None and unit.leader_userid and queries.get_member(s, unit.leader_userid):
        target = Target("app", unit.leader_userid)
    return target


def leader_of(s: Session, unit: Unit) -> list[Member]:
    """The unit's 负责人, if their account exists: whom a notice to the unit @-mentions."""
    leader = queries.get_member(s, unit.leader_userid) if unit.leader_userid else None
    return [leader] if leader else []


def to_unit(s: Session, unit: Unit, template: str, data: dict, key: str, mentions: list[Member]) -> list[Push]:
    """A notice to a unit: its group, @ the people named; without a group, 1:1 to its 负责人, who
    is not @-mentioned in their own chat. Nobody to send to: no push."""
    target = group_or_leader(s, unit)
    if target is None:
        return []
    mentions = [] if target.channel == "app" else mentions
    return [Push(target, template, {**data, "unit": unit, "mentions": mentions},
                 mentions=[m.userid for m in mentions], key=key)]


def unit_prompt(s: Session, config: Config, due: UnitDue, month: Month, firm: bool = False) -> list[Push]:
    """The month's prompt to a unit's group, @ each 责任人 who owes something. A unit without a group:
    the whole prompt to its 负责人, and to each other 责任人 with something outstanding their own
    line of it (their tasks, their problems), 1:1."""
    data = {"due": due, "month": month, "firm": firm, "person": None,
            "deadline": month.first_day.replace(day=config.schedule.report_deadline_day)}
    pushes = to_unit(s, due.unit, "unit_prompt", data, f"{due.unit.id}", due.people)
    if unit_target(due.unit) is not None:
        return pushes
    for person in due.people:
        if person.userid == due.unit.leader_userid:
            continue
        own = replace(due, unreported=[x for x in due.unreported if x.task.owner_userid == person.userid],
                      overdue=[x for x in due.overdue if x.task.owner_userid == person.userid], items=[],
                      problems=[p for p in due.problems if p.owner_userid == person.userid], people=[person])
        if not own.empty:
            pushes.append(Push(Target("app", person.userid), "unit_prompt",
                               {**data, "due": own, "person": person, "mentions": []},
                               key=f"{due.unit.id}:{person.userid}"))
    return pushes


@dataclass(frozen=True)
class Place:
    """Where a push went, as a reply names it (bot/templates/_sent.j2)."""

    kind: str  # "broadcast" | "group" (a unit's) | "person" (1:1)
    name: str  # the unit's name, the person's name


def places(s: Session, config: Config, pushes: list[Push]) -> list[Place]:
    """Where these pushes go, each place once, in order."""
    broadcast = broadcast_target(config)
    groups = {t: u.name for u in queries.all_units(s) if (t := unit_target(u)) is not None}
    people = queries.members_by_id(s)
    out: list[Place] = []
    for push in pushes:
        t = push.target
        if t == broadcast:
            place = Place("broadcast", "")
        elif t.channel == "app":
            place = Place("person", people[t.id].name if t.id in people else t.id)
        else:
            place = Place("group", groups.get(t, ""))
        if place not in out:
            out.append(place)
    return out


def broadcast_pushes(s: Session, config: Config, template: str, data: dict, key: str, to_admins: bool) -> list[Push]:
    pushes = []
    target = broadcast_target(config)
    if target is not None:
        pushes.append(Push(target, template, data, key=f"{key}:broadcast"))
    if to_admins:
        for admin in queries.admins(s):
            pushes.append(Push(Target("app", admin.userid), template, data, key=f"{key}:{admin.userid}"))
    return pushes


def to_broadcast_or_admins(s: Session, config: Config, template: str, data: dict, key: str,
                           admins_too: bool) -> list[Push]:
    """To the broadcast group (and the admins too, if asked); to the admins alone when no
    broadcast group is configured."""
    if broadcast_target(config) is None and not admins_too:
        log.warning("no broadcast group configured ([broadcast] chat_id / webhook_key): %s goes to the admins", key)
        admins_too = True
    return broadcast_pushes(s, config, template, data, key, to_admins=admins_too)


def ranking_broadcast(s: Session, config: Config, month: Month, scores: list, published_at: datetime) -> list[Push]:
    """公开亮晒: the month's (frozen) ranking to the broadcast group, with the 亮点 picked since the
    last one (本月亮点: marked shown in this month's broadcast, so each appears once)."""
    shown = queries.highlights_to_show(s)
    units = {u.id: u for u in queries.all_units(s)}
    for h in shown:
        h.shown_month = str(month)
        s.add(h)
    data = {"scores": scores, "month": month, "published_at": published_at,
            "highlights": [(h, units[h.unit_id]) for h in shown]}
    pushes = to_broadcast_or_admins(s, config, "ranking_broadcast", data, "ranking", admins_too=False)
    target = broadcast_target(config)
    if target is not None:  # the picture after the text, drawn at send time (bot.charts.py)
        spec = {"kind": "ranking_image", "month": str(month), "at": published_at.isoformat()}
        pushes.append(Push(target, "", file=spec, image=True, filename=f"争先督办-{month}排名.png",
                           key="ranking:image"))
        for h, att in highlight_pictures(s, shown).items():
            spec = {"kind": "attachment", "id": att.id, "at": published_at.isoformat()}
            pushes.append(Push(target, "", file=spec, image=True, filename=f"亮点{h}.{att.ext}", key=f"highlight:{h}"))
    return pushes


def appeal_outcomes(s: Session, month: Month, scores: list, published: bool, reason: str = "") -> list[Push]:
    """To whoever appealed the month (each unit's latest 申诉), when it is published or held: what
    became of the appeal and the unit's line."""
    by_unit = {sc.unit.id: sc for sc in scores}
    latest = {a.unit_id: a for a in release.appeals(s, month)}
    people = queries.members_by_id(s)
    return [Push(Target("app", a.userid), "appeal_release_push",
                 {"month": month, "appeal": a, "published": published, "reason": reason,
                  "sc": by_unit.get(a.unit_id) if by_unit.get(a.unit_id) and by_unit[a.unit_id].rank else None},
                 markdown=False, key=f"appeal{a.id}:{'published' if published else 'held'}")
            for a in latest.values() if a.userid in people]


def highlight_pictures(s: Session, highlights: list) -> dict[str, Attachment]:
    """code -> each 亮点's first stored picture that WeCom takes as an image message (JPG or PNG, 2 MB)."""
    pictures: dict[str, Attachment] = {}
    for att in queries.attachments(s, [h.code for h in highlights]):
        if att.status == ATTACH_STORED and att.ext in ("jpg", "png") and att.size <= IMAGE_LIMIT:
            pictures.setdefault(att.code, att)
    return pictures


def ranking_review(s: Session, config: Config, month: Month, scores: list, until: datetime) -> list[Push]:
    """The 预览 to every admin, and to each ranked unit's 负责人 the unit's own line and why."""
    data = {"scores": scores, "month": month, "until": until}
    pushes = [Push(Target("app", a.userid), "ranking_preview", data, key=f"preview:{a.userid}")
              for a in queries.admins(s)]
    if config.wecom.cards:  # after the whole ranking, its decision as a card (bot/cards.py)
        card = Card("card_ranking_preview", f"ranking:{month}",
                    [Button("发布", f"发布 {month}"), Button("暂缓", f"暂缓 {month}", "暂缓原因")])
        pushes += [Push(Target("app", a.userid), "ranking_preview_decide", data, markdown=False,
                        key=f"decide:{a.userid}", card=card) for a in queries.admins(s)]
    leaders = {m.userid for m in queries.members_by_id(s).values()}
    partnered = queries.partnered_due(s, month, month.end_utc(config.schedule.tz))
    for sc in scores:
        if sc.unit.leader_userid in leaders:
            pushes.append(Push(Target("app", sc.unit.leader_userid), "ranking_unit_review",
                               {"sc": sc, "month": month, "until": until, "count": len([x for x in scores if x.rank]),
                                "can_appeal": bool(sc.rank), "partnered": partnered.get(sc.unit.id, [])},
                               key=f"unit:{sc.unit.id}"))
    return pushes


def leader_lines(s: Session, config: Config, dues: list[UnitDue], month: Month) -> list[Push]:
    """The monthly prompt's line for each 分管领导: how each of their units stands (1:1)."""
    by_unit = {d.unit.id: d for d in dues}
    mine: dict[str, tuple[Member, list[UnitDue]]] = {}
    for unit_id, leaders in queries.overseers(s).items():
        for leader in leaders:
            if unit_id in by_unit:
                mine.setdefault(leader.userid, (leader, []))[1].append(by_unit[unit_id])
    deadline = month.first_day.replace(day=config.schedule.report_deadline_day)
    return [Push(Target("app", userid), "leader_monthly",
                 {"leader": leader, "dues": sorted(rows, key=lambda d: d.unit.name), "month": month,
                  "deadline": deadline}, markdown=False, key=f"leader:{userid}")
            for userid, (leader, rows) in sorted(mine.items())]


def item_to_leaders(item: SupervisionItem, units: list[Unit], overseers: dict[int, list[Member]]) -> list[Push]:
    """A 督办 item that went red, to the 分管领导 of its units (one message each, naming their units)."""
    mine: dict[str, tuple[Member, list[Unit]]] = {}
    for unit in units:
        for leader in overseers.get(unit.id, ()):
            mine.setdefault(leader.userid, (leader, []))[1].append(unit)
    return [Push(Target("app", userid), "item_leader_push", {"item": item, "leader": leader, "units": rows},
                 markdown=False, key=f"{item.code}:red:leader:{userid}")
            for userid, (leader, rows) in sorted(mine.items())]
