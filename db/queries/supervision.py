"""督办 items and their events."""
from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

from sqlmodel import Session, col, select

from db.models import (
    EVENT_FEEDBACK,
    EVENT_LATE_ENTRY,
    ITEM_ANSWERED,
    ITEM_DONE,
    ItemEvent,
    Member,
    SupervisionItem,
)
from db.month import Month
from db.queries._shared import _plain, in_year
from db.queries.tasks import code_key

# ---------------------------------------------------------------- supervision


def get_item(s: Session, code: str) -> SupervisionItem | None:
    return s.exec(select(SupervisionItem).where(SupervisionItem.code == code, in_year(SupervisionItem))).first()


def _due_in(month: Month):
    """Supervision items of the month's campaign year whose deadline falls in `month`: the month they
    are scored in (an item carried into the next year is that year's, not scored twice)."""
    return SupervisionItem.deadline.between(month.first_day, month.last_day) & (SupervisionItem.year == month.year)


class Accepted(NamedTuple):
    answered_at: datetime  # when the answer that was accepted came
    closed_at: datetime  # when it was accepted (办结)


def accepted_answers(s: Session, month: Month) -> dict[int, Accepted]:
    """item id -> its accepted answer, for the items due in the month that are 办结."""
    q = select(SupervisionItem.id, SupervisionItem.answered_at, SupervisionItem.closed_at).where(
        _due_in(month), col(SupervisionItem.closed_at).is_not(None))
    return {item_id: Accepted(answered, closed) for item_id, answered, closed in _plain(s, q)}


def open_items(s: Session, as_of: datetime, unit_id: int | None = None) -> list[SupervisionItem]:
    """Supervision items issued by `as_of` that wait for the unit: not answered (or sent back) and
    not 办结. An item whose 牵头单位 or 配合单位 is `unit_id`, if given."""
    q = select(SupervisionItem).where(col(SupervisionItem.status).not_in((ITEM_ANSWERED, ITEM_DONE)),
                                      SupervisionItem.created_at <= as_of, in_year(SupervisionItem),
                                      col(SupervisionItem.voided_at).is_(None))
    items = sorted(s.exec(q), key=lambda i: code_key(i.code))
    if unit_id is not None:
        answered = step_units(s, [i.id for i in items if unit_id in i.partners], EVENT_FEEDBACK)
        items = [i for i in items if i.unit_id == unit_id
                 or (unit_id in i.partners and unit_id not in answered.get(i.id, ()))]
    return items


def step_units(s: Session, item_ids: list[int], kind: str) -> dict[int, set[int]]:
    """For each item, the units whose people took this step (签收, 反馈): a step is its author's unit's."""
    if not item_ids:
        return {}
    q = select(ItemEvent.item_id, Member.unit_id).join(Member, Member.userid == ItemEvent.userid) \
        .where(col(ItemEvent.item_id).in_(item_ids), ItemEvent.kind == kind)
    out: dict[int, set[int]] = {}
    for item_id, unit_id in s.exec(q):
        out.setdefault(item_id, set()).add(unit_id)
    return out


def partnered_due(s: Session, month: Month, month_end: datetime) -> dict[int, list[SupervisionItem]]:
    """The items due in `month` that count in it (month_end: its end) by 配合单位: unit id -> the items it
    works on as a partner (not scored on it)."""
    out: dict[int, list[SupervisionItem]] = {}
    for item in month_items_full(s, month, month_end):
        for unit_id in item.partners:
            out.setdefault(unit_id, []).append(item)
    return out


def unfinished_items(s: Session) -> list[SupervisionItem]:
    """Every item not yet 办结, for the daily reminders."""
    q = select(SupervisionItem).where(SupervisionItem.status != ITEM_DONE, in_year(SupervisionItem),
                                      col(SupervisionItem.voided_at).is_(None))
    return sorted(s.exec(q), key=lambda i: code_key(i.code))


def add_item_event(s: Session, item: SupervisionItem, kind: str, userid: str, text: str, now: datetime) -> ItemEvent:
    row = ItemEvent(item_id=item.id, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def item_events(s: Session, item_id: int) -> list[ItemEvent]:
    return list(s.exec(select(ItemEvent).where(ItemEvent.item_id == item_id).order_by(ItemEvent.id)))


def last_feedback(s: Session, item_id: int, partners: list[int] = ()) -> ItemEvent | None:
    """The item's latest 反馈, leaving out those of people of its 配合单位 (`partners`): the 牵头单位's
    answer (an admin's on its behalf included) is the one scored."""
    q = select(ItemEvent).outerjoin(Member, Member.userid == ItemEvent.userid) \
        .where(ItemEvent.item_id == item_id, col(ItemEvent.kind).in_((EVENT_FEEDBACK, EVENT_LATE_ENTRY)))
    if partners:
        q = q.where((Member.unit_id == None) | col(Member.unit_id).not_in(partners))  # noqa: E711
    return s.exec(q.order_by(col(ItemEvent.id).desc()).limit(1)).first()


def _live_in(month_end: datetime):
    """Items that count in a month ending at `month_end`: not 作废, or 作废 only after it (queries.live's rule)."""
    return col(SupervisionItem.voided_at).is_(None) | (SupervisionItem.voided_at >= month_end)


def month_items_full(s: Session, month: Month, month_end: datetime) -> list[SupervisionItem]:
    """The items due in `month` that count in it (month_end: its end), for the export and the previews."""
    return list(s.exec(select(SupervisionItem).where(_due_in(month), _live_in(month_end)).order_by(SupervisionItem.id)))


class ScoredItem(NamedTuple):
    id: int
    unit_id: int
    deadline: date
    answered_at: datetime | None
    closed_at: datetime | None

    @property
    def accepted(self) -> Accepted | None:
        """Its accepted answer, once it is 办结 (as accepted_answers gives it)."""
        return Accepted(self.answered_at, self.closed_at) if self.closed_at is not None else None


def scored_items(s: Session, month: Month, month_end: datetime) -> list[ScoredItem]:
    """The items due in `month` that count in it (month_end: its end) with their accepted answer, for scoring."""
    q = select(*(getattr(SupervisionItem, f) for f in ScoredItem._fields)).where(_due_in(month), _live_in(month_end))
    return [ScoredItem(*row) for row in _plain(s, q)]


def events_of(s: Session, item_ids: list[int]) -> list[ItemEvent]:
    """The timelines of these items (every step), oldest first."""
    if not item_ids:
        return []
    q = select(ItemEvent).where(col(ItemEvent.item_id).in_(item_ids))
    return list(s.exec(q.order_by(ItemEvent.id)))
