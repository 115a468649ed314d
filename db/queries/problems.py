"""Problems (问题清单) and their progress."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from db.models import (
    PROGRESS_ASK,
    PROGRESS_NOTE,
    Problem,
    ProblemProgress,
)
from db.queries.tasks import code_key

# ---------------------------------------------------------------- problems


def get_problem(s: Session, code: str) -> Problem | None:
    return s.exec(select(Problem).where(Problem.code == code)).first()


def add_problem_progress(s: Session, problem: Problem, userid: str, text: str, now: datetime,
                         kind: str = PROGRESS_NOTE) -> ProblemProgress:
    row = ProblemProgress(problem_id=problem.id, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def all_problems(s: Session) -> list[Problem]:
    return sorted(s.exec(select(Problem).where(col(Problem.voided_at).is_(None))), key=lambda p: code_key(p.code))


def last_close_request(s: Session, problem_id: int) -> ProblemProgress | None:
    q = select(ProblemProgress).where(ProblemProgress.problem_id == problem_id, ProblemProgress.kind == PROGRESS_ASK)
    return s.exec(q.order_by(col(ProblemProgress.id).desc()).limit(1)).first()
