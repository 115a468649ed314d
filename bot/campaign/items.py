"""督办 items' lights: green, yellow (due within [supervision] warn_days workdays), red (past due).

Shared by `督办 D3`, the unit's status and the daily item_watch job, so they agree."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Callable

from bot.campaign.scoring import GREEN, RED, YELLOW
from db.models import ITEM_ANSWERED, ITEM_DONE, SupervisionItem


def workdays_left(today: date, deadline: date, is_workday: Callable[[date], bool]) -> int:
    """Workdays after today up to and including the deadline (0 on the deadline day or after)."""
    n, d = 0, today + timedelta(days=1)
    while d <= deadline:
        n += is_workday(d)
        d += timedelta(days=1)
    return n


def owed(item: SupervisionItem) -> bool:
    """The unit still has to answer: not answered (or sent back) and not 办结."""
    return item.status not in (ITEM_ANSWERED, ITEM_DONE)


def light(item: SupervisionItem, today: date, warn_days: int, is_workday: Callable[[date], bool]) -> str:
    if not owed(item):
        return GREEN
    if today > item.deadline:
        return RED
    return YELLOW if workdays_left(today, item.deadline, is_workday) <= warn_days else GREEN


def turns_yellow_today(item: SupervisionItem, today: date, warn_days: int, is_workday) -> bool:
    """The first workday it is yellow (so its unit is reminded once), unless issued that day."""
    return (owed(item) and today <= item.deadline and item.created_at.date() < today
            and workdays_left(today, item.deadline, is_workday) == warn_days)


def turns_red_today(item: SupervisionItem, today: date, is_workday) -> bool:
    """The first workday after its deadline, still owed."""
    if not owed(item) or today <= item.deadline:
        return False
    d = item.deadline + timedelta(days=1)
    while d < today:
        if is_workday(d):
            return False
        d += timedelta(days=1)
    return True
