"""The web pages' reads (read-only, one query each) and sign-in links."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    and_,
    bindparam,
    delete,
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
    Unit,
    WebLink,
    WebSession,
)
from db.queries._shared import _insert, _plain, in_year
from db.queries.inbound import MemberRow, UnitRow
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


def spend_token(s: Session, token_hash: str, now: datetime, expires_at: datetime) -> bool:
    """Record a one-time token (an OAuth state) as used: True the first time, False ever after
    (kept until `expires_at`, when the token is refused anyway)."""
    stmt = _insert(s, WebLink).values(token_hash=token_hash, userid="", expires_at=expires_at, used_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=["token_hash"]).returning(WebLink.token_hash)
    return s.connection().execute(stmt).first() is not None


# ---------------------------------------------------------------- web sessions


class SignedIn(NamedTuple):
    member: MemberRow  # type: ignore[valid-type]
    unit: UnitRow  # type: ignore[valid-type]
    csrf: str


def _signed_in_statement():
    w, m, u = WebSession.__table__, Member.__table__, Unit.__table__
    # The session counts only while the person has the role and unit they signed in with.
    same = and_(m.c.userid == w.c.userid, m.c.role == w.c.role, m.c.unit_id == w.c.unit_id)
    return select(*m.c, *u.c, w.c.csrf).select_from(w.join(m, same).join(u, u.c.id == m.c.unit_id)) \
        .where(w.c.token_hash == bindparam("token_hash"), w.c.expires_at > bindparam("now"))


_SIGNED_IN = _signed_in_statement()
_MEMBER_FIELDS = len(MemberRow._fields)


def start_web_session(s: Session, token_hash: str, member, csrf: str, expires_at: datetime) -> None:
    s.add(WebSession(token_hash=token_hash, userid=member.userid, role=member.role, unit_id=member.unit_id,
                     csrf=csrf, expires_at=expires_at))


def signed_in(s: Session, token_hash: str, now: datetime) -> SignedIn | None:
    """Who a session belongs to, with their unit and the session's CSRF token, in one query by its
    key; None if it is unknown, ended, expired, or the person's role or unit is no longer the same."""
    row = s.connection().execute(_SIGNED_IN, {"token_hash": token_hash, "now": now}).first()
    if row is None:
        return None
    return SignedIn(MemberRow(*row[:_MEMBER_FIELDS]), UnitRow(*row[_MEMBER_FIELDS:-1]), row[-1])


def end_web_session(s: Session, token_hash: str) -> None:
    s.exec(delete(WebSession).where(WebSession.token_hash == token_hash))  # type: ignore[call-overload]


def end_web_sessions(s: Session, userids: set[str]) -> int:
    """End every session of these people (their role or unit changed, or they left the roster)."""
    if not userids:
        return 0
    return s.exec(delete(WebSession).where(col(WebSession.userid).in_(userids))).rowcount  # type: ignore[call-overload]


def prune_web(s: Session, now: datetime) -> int:
    """Forget expired sessions, links and spent tokens."""
    gone = s.exec(delete(WebSession).where(WebSession.expires_at <= now)).rowcount  # type: ignore[call-overload]
    return gone + s.exec(delete(WebLink).where(WebLink.expires_at <= now)).rowcount  # type: ignore[call-overload]


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
