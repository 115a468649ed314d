"""Template cards that ask for a decision, and taps waiting for the words their command needs."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.models import CARD_ASK_MINUTES, CardAsk, DecisionCard


def add_card(s: Session, task_id: str, subject: str, userid: str, now: datetime) -> None:
    """Remember a card put in the outbox (its task_id is unique: a card enqueued again is one card)."""
    with s.no_autoflush:
        if s.exec(select(DecisionCard.id).where(DecisionCard.task_id == task_id)).first() is None:
            s.add(DecisionCard(task_id=task_id, subject=subject, userid=userid, created_at=now))


def card_by_task(s: Session, task_id: str) -> DecisionCard | None:
    return s.exec(select(DecisionCard).where(DecisionCard.task_id == task_id)).first()


def card_sent(s: Session, task_id: str, response_code: str, now: datetime) -> None:
    """WeCom took the card and gave the response_code that updates it (once, within 72 hours)."""
    card = card_by_task(s, task_id)
    if card is not None:
        card.response_code, card.sent_at = response_code, now
        s.add(card)


def open_cards(s: Session, subject: str) -> list[DecisionCard]:
    """The cards still asking for this decision, oldest first."""
    q = select(DecisionCard).where(DecisionCard.subject == subject, DecisionCard.outcome == "")
    return list(s.exec(q.order_by(col(DecisionCard.id))))


def ask_words(s: Session, userid: str, command: str, task_id: str, now: datetime) -> None:
    """The person tapped a button whose command needs words: their next message completes it."""
    s.exec(delete(CardAsk).where(CardAsk.userid == userid))
    s.add(CardAsk(userid=userid, command=command, task_id=task_id, asked_at=now))
    if "asking" in s.info:  # read with the batch's senders (queries.expect)
        s.info["asking"].add(userid)


def take_ask(s: Session, userid: str, now: datetime) -> tuple[CardAsk | None, bool]:
    """The person's waiting tap, removed (the caller's transaction keeps it if the command is
    refused), and whether it is still within CARD_ASK_MINUTES; (None, False) if there is none."""
    if userid not in s.info.get("asking", (userid,)):  # the batch's senders were read: nothing waits
        return None, False
    ask = s.get(CardAsk, userid)
    if ask is None:
        return None, False
    s.delete(ask)
    return ask, now - ask.asked_at <= timedelta(minutes=CARD_ASK_MINUTES)
