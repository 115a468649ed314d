"""Workdays in mainland China: public holidays and adjusted working days (调休) from chinese-calendar,
patched by `[schedule] holidays` / `[schedule] workdays` for years the library does not know yet.

A year with neither falls back to "Monday to Friday", logged once at DEBUG: people are told in
Chinese (`duban serve`, `duban jobs list`, the admins from December: JobQueue.calendar_gaps).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("duban.jobs")
_warned: set[int] = set()

EARLIER, LATER = "earlier", "later"
SKIP = "skip"  # a daily job: a run that falls on a rest day is not made up


class Workdays:
    """Which days are workdays: the configured days first, then chinese-calendar, then weekdays."""

    def __init__(self, holidays: frozenset[date] = frozenset(), workdays: frozenset[date] = frozenset()):
        self.holidays = holidays
        self.workdays = workdays
        self.patched_years = {d.year for d in holidays | workdays}

    def __call__(self, d: date) -> bool:
        if d in self.workdays:
            return True
        if d in self.holidays:
            return False
        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:
            if d.year not in _warned and d.year not in self.patched_years:
                _warned.add(d.year)
                log.debug("no holiday data for %s: counting weekends only; add [schedule] holidays "
                            "and workdays to config.toml", d.year)
            return d.weekday() < 5

    def knows(self, year: int) -> bool:
        """Whether holidays for `year` are known (from the library or from the configuration)."""
        if year in self.patched_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
            return True
        except NotImplementedError:
            return False

    def shift(self, moment: datetime, direction: str) -> datetime:
        """The same time on the nearest workday on or before (EARLIER) or after (LATER) the moment's date."""
        step = timedelta(days=-1 if direction == EARLIER else 1)
        d = moment
        for _ in range(40):
            if self(d.date()):
                return d
            d += step
        return moment


class WorkdayCronTrigger(BaseTrigger):
    """A cron trigger whose fire times that fall on a rest day move to a workday: EARLIER for a job
    that comes before a deadline, LATER for one that reports on a period that must have ended;
    SKIP (a daily job) leaves them out."""

    LOOKBACK = timedelta(days=40)  # longer than any run of rest days in China

    def __init__(self, cron: CronTrigger, workdays_only: bool = True, direction: str = EARLIER,
                 workdays: Workdays | None = None):
        self.cron = cron
        self.workdays_only = workdays_only
        self.direction = direction
        self.workdays = workdays or Workdays()
        self.timezone = cron.timezone

    def adjust(self, base: datetime) -> datetime:
        return self.workdays.shift(base, self.direction) if self.workdays_only else base

    def pairs(self, start: datetime, end: datetime):
        """(base, adjusted) fire times with base in [start, end)."""
        base = self.cron.get_next_fire_time(None, start)
        while base is not None and base < end:
            if self.direction == SKIP and self.workdays_only:
                if self.workdays(base.date()):
                    yield base, base
            else:
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

    def base_of(self, adjusted: datetime) -> datetime | None:
        """The cron's own fire time that `adjusted` (a time this trigger gives) was moved from."""
        for base, moved in self.pairs(adjusted - self.LOOKBACK, adjusted + self.LOOKBACK):
            if moved == adjusted:
                return base
        return None

    def last_before(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The latest (base, adjusted) pair whose adjusted time is at or before `moment`."""
        found = None
        for base, adjusted in self.pairs(moment - timedelta(days=400), moment + self.LOOKBACK):
            if adjusted <= moment:
                found = (base, adjusted)
        return found

    def __str__(self) -> str:
        return f"workday-{self.direction}({self.cron})" if self.workdays_only else str(self.cron)
