"""Evidence (attachments) and 亮点."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    delete,
    literal,
    update,
)
from sqlmodel import Session, col, select

from db.models import (
    ATTACH_FETCHING,
    ATTACH_HELD,
    ATTACH_PENDING,
    EVENT_FEEDBACK,
    LISTS_CODE,
    PROGRESS_ASK,
    PROGRESS_NOTE,
    AttachIntent,
    Attachment,
    Highlight,
    ItemEvent,
    Problem,
    ProblemProgress,
    Report,
    SupervisionItem,
    Task,
)
from db.queries._shared import _claim, _leased_due

# ---------------------------------------------------------------- evidence (attachments)


class Act(NamedTuple):
    """Something a person did that the pictures they send next belong to."""

    at: datetime
    code: str  # T3, P3, D3, L3
    what: str  # 汇报 | 整改 | 申请销号 | 反馈 | 亮点 | 附件


def recent_act(s: Session, userid: str, since: datetime) -> Act | None:
    """The person's latest 汇报 (or 修改), 整改 (or 销号), 反馈, 亮点 or 附件 <编号> made at or after
    `since`. At the same moment, 附件 (said on purpose) wins."""
    statements = [
        select(Report.created_at, Task.code, literal("汇报"))
        .join(Task, col(Task.id) == Report.task_id).where(Report.userid == userid, Report.created_at >= since)
        .order_by(col(Report.id).desc()),
        select(ProblemProgress.created_at, Problem.code, ProblemProgress.kind)
        .join(Problem, col(Problem.id) == ProblemProgress.problem_id)
        .where(ProblemProgress.userid == userid, col(ProblemProgress.kind).in_((PROGRESS_NOTE, PROGRESS_ASK)),
               ProblemProgress.created_at >= since).order_by(col(ProblemProgress.id).desc()),
        select(ItemEvent.created_at, SupervisionItem.code, ItemEvent.kind)
        .join(SupervisionItem, col(SupervisionItem.id) == ItemEvent.item_id)
        .where(ItemEvent.userid == userid, ItemEvent.kind == EVENT_FEEDBACK, ItemEvent.created_at >= since)
        .order_by(col(ItemEvent.id).desc()),
        select(Highlight.created_at, Highlight.code, literal("亮点"))
        .where(Highlight.userid == userid, Highlight.created_at >= since).order_by(col(Highlight.id).desc()),
        select(AttachIntent.created_at, AttachIntent.code, literal("附件"))
        .where(AttachIntent.userid == userid, AttachIntent.created_at >= since),
    ]
    acts = []
    for rank, q in enumerate(statements):
        row = s.connection().execute(q.limit(1)).first()
        if row is not None:
            acts.append((row[0], rank, Act(*row)))
    return max(acts)[2] if acts else None


def set_intent(s: Session, userid: str, code: str, now: datetime) -> None:
    """附件 <编号>: the person's pictures go to `code` for a while."""
    row = s.get(AttachIntent, userid) or AttachIntent(userid=userid, code=code, created_at=now)
    row.code, row.created_at = code, now
    s.add(row)


def attach_held(s: Session, userid: str, since: datetime, code: str, unit_id: int) -> int:
    """Give the person's pictures held since `since` to `code`, to be fetched. Returns how many."""
    return s.exec(update(Attachment).where(Attachment.userid == userid, Attachment.status == ATTACH_HELD,
                                           Attachment.created_at >= since)  # type: ignore[call-overload]
                  .values(code=code, unit_id=unit_id, status=ATTACH_PENDING)).rowcount


def prune_held(s: Session, before: datetime) -> int:
    """Forget pictures held since before `before` that nobody attached (附件 came too late, or never)."""
    return s.exec(delete(Attachment).where(Attachment.status == ATTACH_HELD,  # type: ignore[call-overload]
                                           Attachment.created_at < before)).rowcount


def due_attachment_ids(s: Session, now: datetime, limit: int) -> list[int]:
    due = _leased_due(Attachment, ATTACH_PENDING, ATTACH_FETCHING, now)
    return list(s.exec(select(Attachment.id).where(due).order_by(Attachment.id).limit(limit)))


def claim_attachment(s: Session, attachment_id: int, now: datetime, lease: timedelta) -> bool:
    """Atomically take one attachment to fetch; False if another fetcher has it."""
    return _claim(s, Attachment, attachment_id, ATTACH_PENDING, ATTACH_FETCHING, now, lease)


def attachments(s: Session, codes: list[str] | None = None, unit_id: int | None = None) -> list[Attachment]:
    """Attached pictures and files (not those still held, nor a unit's lists: those are its list
    submissions), oldest first: of these codes, or this unit."""
    q = select(Attachment).where(Attachment.code != "", Attachment.code != LISTS_CODE)
    if codes is not None:
        q = q.where(col(Attachment.code).in_(codes))
    if unit_id is not None:
        q = q.where(Attachment.unit_id == unit_id)
    return list(s.exec(q.order_by(Attachment.id)))


# ---------------------------------------------------------------- 亮点


def get_highlight(s: Session, code: str) -> Highlight | None:
    return s.exec(select(Highlight).where(Highlight.code == code)).first()


def highlights(s: Session, unit_id: int | None = None) -> list[Highlight]:
    """Newest first: every unit's, or one unit's."""
    q = select(Highlight).where(col(Highlight.voided_at).is_(None))
    if unit_id is not None:
        q = q.where(Highlight.unit_id == unit_id)
    return list(s.exec(q.order_by(col(Highlight.id).desc())))


def highlights_to_show(s: Session) -> list[Highlight]:
    """Picked (选用) and not yet in a monthly broadcast, in the order they were sent."""
    q = select(Highlight).where(col(Highlight.picked_at).is_not(None), Highlight.shown_month == "",
                                col(Highlight.voided_at).is_(None))
    return list(s.exec(q.order_by(Highlight.id)))
