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
    CardAsk,
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


def _senders_statement(one: bool):
    """A batch's senders with their units, who of them has a card's tap waiting, and the answers any
    of its MsgIds got before (a row for each such answer, else one with no answer). `one`: the
    statement for a batch of one message, plain binds instead of expanding IN lists (which SQLAlchemy
    renders anew on every execution)."""
    m, u, p, a = Member.__table__, Unit.__table__, ProcessedMessage.__table__, CardAsk.__table__
    if one:
        seen, who = p.c.msg_id == bindparam("msg_id"), m.c.userid == bindparam("userid")
    else:
        seen = p.c.msg_id.in_(bindparam("msg_ids", expanding=True))
        who = m.c.userid.in_(bindparam("userids", expanding=True))
    return select(*m.c, *u.c, a.c.userid, p.c.msg_id, p.c.reply) \
        .select_from(m.join(u, u.c.id == m.c.unit_id).outerjoin(a, a.c.userid == m.c.userid)
                     .outerjoin(p, (p.c.userid == m.c.userid) & seen)).where(who)


_SENDERS, _SENDER = _senders_statement(False), _senders_statement(True)
_MEMBER_FIELDS = len(MemberRow._fields)
_UNIT_END = _MEMBER_FIELDS + len(UnitRow._fields)
_RECORD_PROCESSED = insert(ProcessedMessage)


def expect(s: Session, messages: list[tuple[str, str]]) -> None:
    """Look up the senders of a batch's (userid, msg_id) messages, their units, the answers their
    MsgIds got before and who has a card's tap waiting for words (queries.take_ask), in one query;
    sender() then answers from what was read. A batch's answers
    are written together when it ends (write_answers), so a message costs no lookup and no write
    of its own for the dedupe."""
    found = s.info.setdefault("senders", {})
    answers = s.info.setdefault("answers", {})
    asking = s.info.setdefault("asking", set())
    if len(messages) == 1:
        (userid, msg_id), = messages
        rows = s.connection().execute(_SENDER, {"userid": userid, "msg_id": msg_id})
    else:
        rows = s.connection().execute(_SENDERS, {"userids": sorted({u for u, _ in messages}),
                                                 "msg_ids": sorted({m for _, m in messages if m})})
    for row in rows:
        userid = row[0]
        if userid not in found:
            found[userid] = (MemberRow(*row[:_MEMBER_FIELDS]), UnitRow(*row[_MEMBER_FIELDS:_UNIT_END]))
        if row[-3] is not None:
            asking.add(userid)
        if row[-2] is not None:
            answers.setdefault((userid, row[-2]), row[-1])
    s.info.setdefault("asked", set()).update(messages)


def sender(s: Session, userid: str, msg_id: str = "") -> Sender | None:
    """Who sent a message, with their unit and the answer their MsgId already got (in this batch or
    before); None if they are not on the roster (nothing is ever stored for them)."""
    if (userid, msg_id) not in s.info.get("asked", ()):
        expect(s, [(userid, msg_id)])
    found = s.info["senders"].get(userid)
    if found is None:
        return None
    return Sender(*found, s.info["answers"].get((userid, msg_id)) if msg_id else None)


def forget_senders(s: Session) -> None:
    """A unit or person changed in this transaction: the next sender() reads them afresh."""
    for key in ("senders", "asked", "asking"):
        s.info.pop(key, None)


def record_processed(s: Session, msg_id: str, userid: str, reply: str, now: datetime) -> None:
    """Remember the answer to a person's MsgId: a retry of it in this batch gets it at once, and it
    is written with the batch's other answers (write_answers)."""
    s.info.setdefault("answers", {})[(userid, msg_id)] = reply
    s.info.setdefault("new_answers", []).append({"msg_id": msg_id, "userid": userid, "reply": reply, "created_at": now})


def write_answers(s: Session) -> None:
    """Write the batch's answers in one statement; an answer another replica wrote first for the
    same MsgId raises IntegrityError (the batch is then handled again)."""
    rows = s.info.pop("new_answers", None)
    if rows:  # (one row: a plain INSERT, not the many-rows form)
        s.connection().execute(_RECORD_PROCESSED, rows[0] if len(rows) == 1 else rows)


def prune_processed(s: Session, before: datetime) -> int:
    """Forget answers given before `before` (older than any retry or replay the wire accepts)."""
    return s.exec(delete(ProcessedMessage).where(ProcessedMessage.created_at < before)).rowcount  # type: ignore[call-overload]
