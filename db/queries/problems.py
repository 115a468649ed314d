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
from db.queries._shared import in_year
from db.queries.tasks import code_key

# ---------------------------------------------------------------- problems


def get_problem(s: Session, code: str) -> Problem | None:
    return s.exec(select(Problem).where(Problem.code == code, in_year(Problem))).first()


def add_problem_progress(s: Session, problem: Problem, userid: str, text: str, now: datetime,
                         kind: str = PROGRESS_NOTE) -> ProblemProgress:
    row = ProblemProgress(problem_id=problem.id, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def all_problems(s: Session, year: int | None = None) -> list[Problem]:
    return sorted(s.exec(select(Problem).where(in_year(Problem, year), col(Problem.voided_at).is_(None))),
                  key=lambda p: code_key(p.code))


def last_close_request(s: Session, problem_id: int) -> ProblemProgress | None:
    q = select(ProblemProgress).where(ProblemProgress.problem_id == problem_id, ProblemProgress.kind == PROGRESS_ASK)
    return s.exec(q.order_by(col(ProblemProgress.id).desc()).limit(1)).first()


def latest_notes(s: Session) -> dict[int, ProblemProgress]:
    """Each problem's latest 整改 note (problem id -> note), for the export."""
    q = select(ProblemProgress).where(ProblemProgress.kind == PROGRESS_NOTE).order_by(ProblemProgress.id)
    return {p.problem_id: p for p in s.exec(q)}
