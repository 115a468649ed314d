"""The campaign's years and their scored months.

A campaign runs for a calendar year (`duban campaign new 2027` starts the next: the campaign table)
and is scored from its first month to December: months before it are not ranked, not in the trend
and not in the mid-year or annual averages. Planned progress still runs from each task's own start
date. The first month is [campaign] first_month when that falls in the year, else the one recorded
with the year when it was started (March unless first_month said otherwise), else March.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from db import queries
from db.month import Month

FIRST_MONTH = 3  # March: the default first month of a campaign year


def first_month(s: Session | None, config, year: int) -> Month:
    """`year`'s first scored month (s None: from the configuration alone)."""
    text = config.campaign.first_month
    if text and Month.parse(text).year == year:
        return Month.parse(text)
    row = queries.get_campaign(s, year) if s is not None else None
    if row is not None and row.first_month:
        return Month.parse(row.first_month)
    return Month(year, FIRST_MONTH)


def scored(s: Session, config, month: Month) -> bool:
    """Whether `month` is one of its campaign year's scored months."""
    return month >= first_month(s, config, month.year)


def scored_months(s: Session | None, config, year: int, until: datetime | None = None, tz=None,
                  last: int = 12) -> list[Month]:
    """The year's scored months up to `last`, those that have begun by `until` when given."""
    m, out = first_month(s, config, year), []
    while m.year == year and m.month <= last:
        if until is not None and m.start_utc(tz) > until:
            break
        out.append(m)
        m = m.next()
    return out


def _default_year(config, now: datetime) -> int:
    text = config.campaign.first_month
    return Month.parse(text).year if text else now.astimezone(config.schedule.tz).year


def current_year(s: Session | None, config, now: datetime) -> int:
    """The campaign year chat messages, scores, prompts and jobs mean: the latest started one
    (s None, or none started yet: that of [campaign] first_month, else the clock's)."""
    year = queries.current_year(s) if s is not None else None
    return year if year is not None else _default_year(config, now)


def ensure(s: Session, config, now: datetime) -> None:
    """At start: a database without a campaign year records one (that of [campaign] first_month,
    else the clock's), so that what is added belongs to it."""
    if queries.current_year(s) is None:
        year = _default_year(config, now)
        queries.add_campaign(s, year, str(first_month(s, config, year)), now)


def start(s: Session, config, year: int, now: datetime, carry: bool) -> queries.Unfinished:
    """Start `year`'s campaign after the current one (the caller checked it is later): its first
    month recorded, the current year's kept as it is now, and (`carry`) what the current year left
    open copied into the new one under the same codes. Returns what was left open."""
    current = current_year(s, config, now)
    row = queries.get_campaign(s, current)
    if row is None:  # (a database started before years were kept, and never since)
        row = queries.add_campaign(s, current, "", None)
    row.first_month = str(first_month(s, config, current))  # kept when [campaign] first_month moves on
    s.add(row)
    open_ = queries.unfinished(s, current)
    queries.add_campaign(s, year, str(first_month(s, config, year)), now)
    if carry:
        queries.carry(s, open_, year)
    return open_
