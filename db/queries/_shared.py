"""What the query modules share: plain-row reads and the lease-based work-queue claim."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlmodel import Session, col

from db.models import Campaign

# The current campaign year (the latest), inside a statement: what a chat message's code means.
CURRENT_YEAR = select(func.max(Campaign.year)).scalar_subquery()


def in_year(model, year: int | None = None):
    """`model`'s rows (a task, problem or 督办 item) of `year`, or of the current campaign year."""
    return model.year == (CURRENT_YEAR if year is None else year)


def _plain(s: Session, stmt, **params) -> list:
    """Run a column query on the session's connection, past the ORM layer: plain row tuples, at a
    third of the cost per row (bulk reads of a year's reports go through here)."""
    return s.connection().execute(stmt, params).all()


def _leased_due(model, waiting: str, working: str, now: datetime):
    """Rows of a work queue (the outbox, pictures to fetch) that are `waiting` and due, or `working`
    under a worker whose lease ran out (it crashed or hung)."""
    return ((model.status == waiting) & (col(model.next_attempt_at).is_(None) | (model.next_attempt_at <= now))) | (
        (model.status == working) & (model.lease_until < now)
    )


def _claim(s: Session, model, row_id: int, waiting: str, working: str, now: datetime, lease: timedelta) -> bool:
    """Atomically take one due row of a work queue for `lease`; False if another worker has it."""
    stmt = (update(model).where(model.id == row_id, _leased_due(model, waiting, working, now))
            .values(status=working, lease_until=now + lease, attempts=model.attempts + 1))
    return s.exec(stmt).rowcount == 1  # type: ignore[call-overload]


def _insert(s: Session, model):
    """An INSERT in the session's dialect, with its ON CONFLICT clauses."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model.__table__)
