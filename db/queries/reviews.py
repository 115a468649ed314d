"""Reviews' comments (点评, 自评)."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from db.models import (
    ReviewComment,
)

# ---------------------------------------------------------------- reviews' comments (点评, 自评)


def add_review_comment(s: Session, unit_id: int, period: str, kind: str, userid: str, text: str,
                       now: datetime) -> ReviewComment:
    row = ReviewComment(unit_id=unit_id, period=period, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def review_comments(s: Session, periods: list[str], until: datetime | None = None,
                    unit_id: int | None = None) -> list[ReviewComment]:
    """Every 点评 and 自评 of these periods (made by `until`), oldest first."""
    q = select(ReviewComment).where(col(ReviewComment.period).in_(periods))
    if until is not None:
        q = q.where(ReviewComment.created_at <= until)
    if unit_id is not None:
        q = q.where(ReviewComment.unit_id == unit_id)
    return list(s.exec(q.order_by(ReviewComment.id)))
