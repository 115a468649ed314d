"""Workdays in mainland China: public holidays and adjusted working days (调休) from chinese-calendar.

A year the library does not know falls back to "Monday to Friday", with one warning logged.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("duban.jobs")
_warned: set[int] = set()


def is_workday(d: date) -> bool:
    try:
        return chinese_calendar.is_workday(d)
    except NotImplementedError:
        if d.year not in _warned:
            _warned.add(d.year)
            log.warning("chinese-calendar has no holiday data for %s: counting weekends only", d.year)
        return d.weekday() < 5


def previous_workday(moment: datetime) -> datetime:
    """The same time on the nearest workday on or before the moment's (local) date."""
    d = moment
    for _ in range(40):
        if is_workday(d.date()):
            return d
        d -= timedelta(days=1)
    return moment


class WorkdayCronTrigger(BaseTrigger):
    """A cron trigger whose fire times that fall on a rest day move to the nearest earlier workday."""

    LOOKBACK = timedelta(days=40)  # longer than any run of rest days in China

    def __init__(self, cron: CronTrigger, workdays_only: bool = True):
        self.cron = cron
        self.workdays_only = workdays_only
        self.timezone = cron.timezone

    def adjust(self, base: datetime) -> datetime:
        return previous_workday(base) if self.workdays_only else base

    def pairs(self, start: datetime, end: datetime):
        """(base, adjusted) fire times with base in [start, end)."""
        base = self.cron.get_next_fire_time(None, start)
        while base is not None and base < end:
            yield base, self.adjust(base)
            base = self.cron.get_next_fire_time(base, base + timedelta(seconds=1))

    def get_next_fire_time(self, previous_fire_time, now):
        after = previous_fire_time or now
        for _base, adjusted in self.pairs(after - self.LOOKBACK, after + timedelta(days=800)):
            if (previous_fire_time is None and adjusted >= now) or (
                previous_fire_time is not None and adjusted > previous_fire_time
            ):
                return adjusted
        return None

    def last_before(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The latest (base, adjusted) pair whose adjusted time is at or before `moment`."""
        found = None
        for base, adjusted in self.pairs(moment - timedelta(days=400), moment + self.LOOKBACK):
            if adjusted <= moment:
                found = (base, adjusted)
        return found

    def __str__(self) -> str:
        return f"workday({self.cron})" if self.workdays_only else str(self.cron)
