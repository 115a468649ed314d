"""A unit's lists as its 负责人 sends them (清单): submissions, their review, each unit's state."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from db.models import (
    LISTS_REPLACED, LISTS_WAITING, ListSubmission, Problem, ProblemProgress, Report, Task,
)


def waiting_submission(s: Session, unit_id: int) -> ListSubmission | None:
    """The unit's submission waiting for review, if any (there is at most one)."""
    return s.exec(select(ListSubmission).where(ListSubmission.unit_id == unit_id,
                                               ListSubmission.status == LISTS_WAITING)).first()


def waiting_submissions(s: Session) -> list[ListSubmission]:
    """Every unit's submission waiting for review, oldest first."""
    return list(s.exec(select(ListSubmission).where(ListSubmission.status == LISTS_WAITING)
                       .order_by(ListSubmission.id)))


def list_history(s: Session, unit_id: int) -> list[ListSubmission]:
    """Every submission of the unit, newest first."""
    return list(s.exec(select(ListSubmission).where(ListSubmission.unit_id == unit_id)
                       .order_by(col(ListSubmission.id).desc())))


def list_states(s: Session, since: datetime | None = None) -> dict[int, str]:
    """Each unit's state by its newest submission (sent `since`, if given) that was not replaced:
    待审核, 已退回 or 已通过; a unit not in the answer has sent none (未提交)."""
    states: dict[int, str] = {}
    q = select(ListSubmission.unit_id, ListSubmission.status).where(ListSubmission.status != LISTS_REPLACED)
    if since is not None:
        q = q.where(ListSubmission.created_at >= since)
    for unit_id, status in s.exec(q.order_by(col(ListSubmission.id).desc())):
        states.setdefault(unit_id, status)
    return states


def last_review(s: Session, unit_id: int) -> ListSubmission | None:
    """The unit's newest submission that was reviewed (通过 or 退回)."""
    return s.exec(select(ListSubmission).where(ListSubmission.unit_id == unit_id,
                                               col(ListSubmission.reviewed_at).is_not(None))
                  .order_by(col(ListSubmission.id).desc())).first()


def unit_tasks(s: Session, unit_id: int) -> list[Task]:
    return list(s.exec(select(Task).where(Task.unit_id == unit_id).order_by(Task.id)))


def unit_problems(s: Session, unit_id: int) -> list[Problem]:
    return list(s.exec(select(Problem).where(Problem.unit_id == unit_id).order_by(Problem.id)))


def task_has_reports(s: Session, task_id: int) -> bool:
    return s.exec(select(Report.id).where(Report.task_id == task_id).limit(1)).first() is not None


def problem_has_progress(s: Session, problem_id: int) -> bool:
    return s.exec(select(ProblemProgress.id).where(ProblemProgress.problem_id == problem_id).limit(1)).first() \
        is not None
