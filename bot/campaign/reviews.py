"""The two reviews (SPEC §2): the mid-year review at the end of June and the annual appraisal in
December. Each is a period, "2026-H1" and "2026" (the periods their jobs run for), and carries each
unit's 点评 (from an admin) and 自评 (from its 负责人), taken during that month."""
from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session

from db import queries
from db.models import ReviewComment

MIDYEAR_JOB = "midyear_review"
ANNUAL_JOB = "annual_summary"


def midyear(year: int) -> str:
    return f"{year}-H1"


def annual(year: int) -> str:
    return str(year)


def open_period(day: date) -> str | None:
    """The review taking comments on `day`: in June the mid-year one, in December the annual one."""
    return midyear(day.year) if day.month == 6 else annual(day.year) if day.month == 12 else None


def latest_period(day: date) -> str:
    """The review open on `day`, else the last one before it."""
    if day.month == 12:
        return annual(day.year)
    return midyear(day.year) if day.month >= 6 else annual(day.year - 1)


def title(period: str) -> str:
    """2026年上半年 (the mid-year review's), 2026年度 (the annual one's)."""
    return f"{period[:4]}年上半年" if is_midyear(period) else f"{period}年度"


def is_midyear(period: str) -> bool:
    return period.endswith("-H1")


def job_of(period: str) -> str:
    """The job that sends this review."""
    return MIDYEAR_JOB if is_midyear(period) else ANNUAL_JOB


def latest(s: Session, period: str, until: datetime | None = None,
           unit_id: int | None = None) -> dict[int, dict[str, ReviewComment]]:
    """unit id -> {"点评": row, "自评": row}: the latest of each kind made by `until`."""
    out: dict[int, dict[str, ReviewComment]] = {}
    for row in queries.review_comments(s, [period], until, unit_id):
        out.setdefault(row.unit_id, {})[row.kind] = row  # oldest first: the last one wins
    return out
