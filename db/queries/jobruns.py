"""Job runs: one claim per job and period."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from db.models import (
    JobRun,
)

# ---------------------------------------------------------------- job runs


def claim_job_run(s: Session, job: str, period: str, scheduled_for: datetime, now: datetime, by: str) -> bool:
    """Claim (job, period) in its own transaction. False if someone claimed it before."""
    try:
        with s.begin_nested():
            s.add(JobRun(job=job, period=period, scheduled_for=scheduled_for, claimed_at=now, claimed_by=by))
    except IntegrityError:
        return False
    return True


def get_job_run(s: Session, job: str, period: str) -> JobRun | None:
    return s.exec(select(JobRun).where(JobRun.job == job, JobRun.period == period)).first()
