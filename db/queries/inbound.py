"""Inbound dedupe: who sent a message, and the answer already given to its MsgId."""
from __future__ import annotations

from collections import namedtuple
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    bindparam,
    delete,
    insert,
)
from sqlmodel import Session, select

from db.models import (
    Member,
    ProcessedMessage,
    Unit,
)

# ---------------------------------------------------------------- inbound dedupe


def _row_type(model) -> type:
    """A read-only row with the model's column names (a message's sender: no ORM object to build)."""
    return namedtuple(f"{model.__name__}Row", [c.name for c in model.__table__.columns])


MemberRow = _row_type(Member)
UnitRow = _row_type(Unit)


class Sender(NamedTuple):
    member: MemberRow  # type: ignore[valid-type]
    unit: UnitRow  # type: ignore[valid-type]
    reply: str | None  # the answer already given to this MsgId (WeCom retries what got no answer)


def _sender_statement():
    m, u, p = Member.__table__, Unit.__table__, ProcessedMessage.__table__
    seen = (p.c.userid == m.c.userid) & (p.c.msg_id == bindparam("msg_id"))
    return select(*m.c, *u.c, p.c.reply).select_from(m.join(u, u.c.id == m.c.unit_id).outerjoin(p, seen)) \
        .where(m.c.userid == bindparam("userid"))


_SENDER = _sender_statement()
_MEMBER_FIELDS = len(MemberRow._fields)
_RECORD_PROCESSED = insert(ProcessedMessage)


def sender(s: Session, userid: str, msg_id: str = "") -> Sender | None:
    """Who sent a message, with their unit and the answer their MsgId already got, in one query;
    None if they are not on the roster (nothing is ever stored for them)."""
    row = s.connection().execute(_SENDER, {"userid": userid, "msg_id": msg_id}).first()
    if row is None:
        return None
    return Sender(MemberRow(*row[:_MEMBER_FIELDS]), UnitRow(*row[_MEMBER_FIELDS:-1]), row[-1])


def record_processed(s: Session, msg_id: str, userid: str, reply: str, now: datetime) -> None:
    """Remember the answer to a person's MsgId; a second record of the same raises IntegrityError."""
    s.connection().execute(_RECORD_PROCESSED, {"msg_id": msg_id, "userid": userid, "reply": reply, "created_at": now})


def prune_processed(s: Session, before: datetime) -> int:
    """Forget answers given before `before` (older than any retry or replay the wire accepts)."""
    return s.exec(delete(ProcessedMessage).where(ProcessedMessage.created_at < before)).rowcount  # type: ignore[call-overload]
