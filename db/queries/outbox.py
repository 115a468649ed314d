"""The outbox: what is to be sent, claimed by the sender with a lease."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import (
    func,
    update,
)
from sqlmodel import Session, col, select

from db.models import (
    Outbox,
)
from db.queries._shared import _claim, _leased_due

# ---------------------------------------------------------------- outbox


def enqueue(
    s: Session,
    key: str,
    channel: str,
    target: str,
    msgtype: str,
    payload: dict,
    now: datetime,
    filename: str = "",
) -> bool:
    """Add a message to the outbox unless one with this key is already there. True if added.

    Rows are written at commit, in one batch, so a broadcast to 2,000 groups is not 2,000 flushes."""
    added = s.info.setdefault("outbox_keys", set())
    if key in added:
        return False
    with s.no_autoflush:
        if s.exec(select(Outbox.id).where(Outbox.key == key)).first() is not None:
            return False
    added.add(key)
    s.add(
        Outbox(
            key=key,
            channel=channel,
            target=target,
            msgtype=msgtype,
            payload=json.dumps(payload, ensure_ascii=False),
            filename=filename,
            created_at=now,
        )
    )
    return True


def forget_pending_outbox(s: Session) -> None:
    """Forget the keys enqueue() holds for rows not yet written: call it when a message ends (its
    rows are written before the next message looks them up; rolled back, they are gone)."""
    s.info.pop("outbox_keys", None)


def _due(now: datetime):
    return _leased_due(Outbox, "pending", "sending", now)


REPLY_KEYS = ("reply:", "response_url:")  # outbox keys of answers to a person's own message


def due_outbox_ids(s: Session, now: datetime, limit: int, replies_only: bool = False) -> list[int]:
    """The due messages, oldest first; `replies_only` (quiet hours): answers to people's messages only."""
    q = select(Outbox.id).where(_due(now))
    if replies_only:
        key = col(Outbox.key)
        q = q.where(key.startswith(REPLY_KEYS[0], autoescape=True) | key.startswith(REPLY_KEYS[1], autoescape=True))
    return list(s.exec(q.order_by(Outbox.id).limit(limit)))


def outbox_by_ids(s: Session, ids: list[int]) -> list[Outbox]:
    if not ids:
        return []
    return list(s.exec(select(Outbox).where(col(Outbox.id).in_(ids)).order_by(Outbox.id)))


def claim_outbox(s: Session, outbox_id: int, now: datetime, lease: timedelta) -> bool:
    """Atomically take one due message; False if another sender has it."""
    return _claim(s, Outbox, outbox_id, "pending", "sending", now, lease)


def outbox_rows(s: Session, statuses: tuple[str, ...]) -> list[Outbox]:
    return list(s.exec(select(Outbox).where(col(Outbox.status).in_(statuses)).order_by(Outbox.id)))


def retry_failed_outbox(s: Session, ids: list[int] | None) -> int:
    """Put failed messages (all, or those with these ids) back to pending, due now, with their
    attempts reset. Returns how many."""
    q = update(Outbox).where(Outbox.status == "failed")
    if ids is not None:
        q = q.where(col(Outbox.id).in_(ids))
    q = q.values(status="pending", attempts=0, next_attempt_at=None, lease_until=None)
    return s.exec(q).rowcount  # type: ignore[call-overload]


def outbox_counts(s: Session) -> dict[str, int]:
    return dict(s.exec(select(Outbox.status, func.count()).group_by(Outbox.status)).all())
