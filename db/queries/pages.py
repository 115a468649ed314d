"""The web pages' reads (read-only, one query each) and sign-in links."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    update,
)
from sqlmodel import Session, col, select

from db.models import (
    Member,
    Outbox,
    Problem,
    ProblemProgress,
    Report,
    SupervisionItem,
    Task,
    WebLink,
)
from db.queries._shared import _plain, in_year
from db.queries.tasks import code_key

# ---------------------------------------------------------------- web pages (read-only, one query each)


def add_web_link(s: Session, token_hash: str, userid: str, expires_at: datetime) -> None:
    s.add(WebLink(token_hash=token_hash, userid=userid, expires_at=expires_at))


def use_web_link(s: Session, token_hash: str, now: datetime) -> str | None:
    """Spend a one-time link: the userid it was made for, or None if it is unknown, used or expired.
    One UPDATE claims it, so two requests with the same link cannot both sign in."""
    claimed = s.exec(update(WebLink).where(WebLink.token_hash == token_hash, col(WebLink.used_at).is_(None),
                                           WebLink.expires_at > now).values(used_at=now)).rowcount  # type: ignore[call-overload]
    return s.get(WebLink, token_hash).userid if claimed == 1 else None


def members_named(s: Session, userids: set[str]) -> dict[str, str]:
    """userid -> name for these userids."""
    if not userids:
        return {}
    return dict(_plain(s, select(Member.userid, Member.name).where(col(Member.userid).in_(userids))))


def unit_reports(s: Session, unit_id: int, year: int | None = None) -> list[Report]:
    """Every version of every report on the unit's tasks of `year` (None: the current one), newest first."""
    return list(s.exec(select(Report).join(Task, col(Task.id) == Report.task_id)
                       .where(Report.unit_id == unit_id, in_year(Task, year)).order_by(col(Report.id).desc())))


def unit_problems(s: Session, unit_id: int, year: int | None = None) -> list[Problem]:
    return sorted(s.exec(select(Problem).where(Problem.unit_id == unit_id, in_year(Problem, year),
                                               col(Problem.voided_at).is_(None))),
                  key=lambda p: code_key(p.code))


def progress_of(s: Session, problem_ids: list[int]) -> list[ProblemProgress]:
    if not problem_ids:
        return []
    return list(s.exec(select(ProblemProgress).where(col(ProblemProgress.problem_id).in_(problem_ids))
                       .order_by(ProblemProgress.id)))


def unit_items(s: Session, unit_id: int, year: int | None = None) -> list[SupervisionItem]:
    return sorted(s.exec(select(SupervisionItem).where(SupervisionItem.unit_id == unit_id,
                                                       in_year(SupervisionItem, year))),
                  key=lambda i: code_key(i.code), reverse=True)


def outbox_page(s: Session, statuses: tuple[str, ...], limit: int) -> list[Outbox]:
    """The newest `limit` messages in these states."""
    q = select(Outbox).where(col(Outbox.status).in_(statuses)).order_by(col(Outbox.id).desc()).limit(limit)
    return list(s.exec(q))
