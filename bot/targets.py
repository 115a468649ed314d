"""Who gets a message: a unit's group, the broadcast group, the admins; and the pushes built for them.

Shared by commands (提醒, 督办) and jobs, so a prompt looks the same whoever sends it."""
from __future__ import annotations

from sqlmodel import Session

from bot.campaign.digest import UnitDue
from bot.config import Config
from bot.reply import Push, Target
from db import queries
from db.models import Unit
from db.month import Month


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
            "deadline": month.first_day.replace(day=config.schedule.report_deadline_day),
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
