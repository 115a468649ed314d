"""Summaries shared by commands and scheduled jobs: unit prompts, the unreported list, rankings.

Each builder reads through db/ and returns Push objects (template + data); nothing here sends.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from bot.app import broadcast_target, unit_target
from bot.clock import Month
from bot.config import Config
from bot.reply import Push, Target
from db import progress, queries
from db.models import Member, Unit
from db.progress import TaskSnapshot, UnitScore


def weights(config: Config) -> progress.Weights:
    r = config.ranking
    return progress.Weights(r.weight_report, r.weight_progress, r.weight_supervision, r.overdue_penalty)


def rank(s: Session, config: Config, month: Month, now: datetime) -> list[UnitScore]:
    return progress.ranking(
        s, month, now, config.schedule.tz, config.schedule.report_deadline_day, weights(config)
    )


@dataclass
class UnitDue:
    """What a unit still owes this month."""

    unit: Unit
    unreported: list[TaskSnapshot]
    overdue: list[TaskSnapshot]
    items: list
    people: list[Member]

    @property
    def empty(self) -> bool:
        return not (self.unreported or self.overdue or self.items)


def unit_dues(s: Session, config: Config, month: Month, now: datetime, units: list[Unit] | None = None) -> list[UnitDue]:
    tz = config.schedule.tz
    units = units if units is not None else queries.all_units(s)
    wanted = {u.id for u in units}
    snaps = progress.snapshots(s, month, now, tz, config.schedule.report_deadline_day)
    people = queries.members_by_id(s)
    by_unit: dict[int, list[TaskSnapshot]] = {}
    for sn in snaps:
        if sn.active and sn.task.unit_id in wanted:
            by_unit.setdefault(sn.task.unit_id, []).append(sn)
    items_by_unit: dict[int, list] = {}
    for it in queries.open_items(s):
        items_by_unit.setdefault(it.unit_id, []).append(it)
    out = []
    for u in units:
        mine = sorted(by_unit.get(u.id, []), key=lambda x: queries.code_key(x.task.code))
        unreported = [x for x in mine if not x.reported_in_month]
        overdue = [x for x in mine if x.overdue]
        items = items_by_unit.get(u.id, [])
        ids = [x.task.owner_userid for x in unreported + overdue]
        if items and u.leader_userid:
            ids.append(u.leader_userid)
        seen: dict[str, Member] = {}
        for uid in ids:
            if uid in people and uid not in seen:
                seen[uid] = people[uid]
        out.append(UnitDue(u, unreported, overdue, items, list(seen.values())))
    return out


def group_or_leader(s: Session, unit: Unit) -> Target | None:
    target = unit_target(unit)
    if target is None and unit.leader_userid and queries.get_member(s, unit.leader_userid):
        target = Target("app", unit.leader_userid)
    return target


def unit_prompt(s: Session, config: Config, due: UnitDue, month: Month, firm: bool = False) -> Push | None:
    target = group_or_leader(s, due.unit)
    if target is None:
        return None
    return Push(
        target,
        "unit_prompt",
        {
            "due": due,
            "month": month,
            "firm": firm,
            "deadline_day": config.schedule.report_deadline_day,
            "mentions": due.people,
        },
        mentions=[m.userid for m in due.people],
        key=f"{due.unit.id}",
    )


def broadcast_pushes(s: Session, config: Config, template: str, data: dict, key: str, to_admins: bool) -> list[Push]:
    pushes = []
    target = broadcast_target(config)
    if target is not None:
        pushes.append(Push(target, template, data, key=f"{key}:broadcast"))
    if to_admins:
        for admin in queries.admins(s):
            pushes.append(Push(Target("app", admin.userid), template, data, key=f"{key}:{admin.userid}"))
    return pushes
