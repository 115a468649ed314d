"""The campaign's year and its scored months.

A campaign runs for a calendar year and is scored from its first month ([campaign] first_month, else
March of the year) to December: months before it are not ranked, not in the trend and not in the
mid-year or annual averages. Planned progress still runs from each task's own start date.
"""
from __future__ import annotations

from datetime import datetime

from db.month import Month

FIRST_MONTH = 3  # March: the default first month of a campaign year


def first_month(config, year: int) -> Month:
    """`year`'s first scored month: [campaign] first_month when it falls in that year, else March."""
    text = config.campaign.first_month
    if text:
        month = Month.parse(text)
        if month.year == year:
            return month
    return Month(year, FIRST_MONTH)


def scored(config, month: Month) -> bool:
    """Whether `month` is one of its campaign year's scored months."""
    return month >= first_month(config, month.year)


def scored_months(config, year: int, until: datetime | None = None, tz=None, last: int = 12) -> list[Month]:
    """The year's scored months up to `last`, those that have begun by `until` when given."""
    m, out = first_month(config, year), []
    while m.year == year and m.month <= last:
        if until is not None and m.start_utc(tz) > until:
            break
        out.append(m)
        m = m.next()
    return out


def current_year(s, config, now: datetime) -> int:
    """The campaign year chat messages, scores, prompts and jobs mean: the latest started one."""
    return Month.of(now.astimezone(config.schedule.tz)).year
