"""The monthly ranking's review and release (公开亮晒 after a review window).

At the ranking's time the month is computed once and frozen (`freeze`): the admins see it as a
预览, each unit's 负责人 sees its own line and may 申诉; an admin answers 发布 or 暂缓, or the
window ends and it is published by itself. What is published is the frozen ranking (`thaw`), so a
report or an import after the ranking's time changes nothing that was reviewed or broadcast.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.campaign.scoring import UnitScore
from db.models import RELEASE_HELD, RELEASE_PUBLISHED, RELEASE_REVIEW, Appeal, RankingRelease
from db.month import Month

_FIELDS = ("rank", "tier", "score", "report_rate", "progress", "supervision", "overdue", "active_tasks", "reported",
           "reported_on_time", "items", "items_on_time", "prev_rank", "trend", "lights")


def freeze(scores: list[UnitScore]) -> str:
    """The ranking as JSON: what every text and the export show of it."""
    return json.dumps([{**{f: getattr(sc, f) for f in _FIELDS},
                        "unit": {"id": sc.unit.id, "name": sc.unit.name, "leader_userid": sc.unit.leader_userid}}
                       for sc in scores], ensure_ascii=False)


def thaw(data: str) -> list[SimpleNamespace]:
    """The frozen ranking, read like the live one (sc.unit.name, sc.score, sc.trend ...)."""
    return [SimpleNamespace(**{**row, "unit": SimpleNamespace(**row["unit"]), "rated": bool(row["rank"])})
            for row in json.loads(data)]


def get(s: Session, month: Month) -> RankingRelease | None:
    return s.exec(select(RankingRelease).where(RankingRelease.month == str(month))).first()


def open_for_review(s: Session, scores: list[UnitScore], month: Month, now: datetime, hours: float) -> RankingRelease:
    """Store the month's frozen ranking, in review until `hours` from now (0: published now)."""
    release = RankingRelease(month=str(month), data=freeze(scores), computed_at=now,
                             review_until=now + timedelta(hours=hours),
                             status=RELEASE_PUBLISHED if hours == 0 else RELEASE_REVIEW,
                             published_at=now if hours == 0 else None)
    s.add(release)
    s.flush()
    return release


def publish(s: Session, month: Month, now: datetime) -> bool:
    """Mark the month published, if it was not already: True for the one caller that did it (a
    conditional update, so two admins, or an admin and the timer, never both send it)."""
    done = s.exec(update(RankingRelease)  # type: ignore[call-overload]
                  .where(RankingRelease.month == str(month), RankingRelease.status != RELEASE_PUBLISHED)
                  .values(status=RELEASE_PUBLISHED, published_at=now)).rowcount
    return done == 1


def hold(s: Session, release: RankingRelease, reason: str) -> None:
    release.status, release.hold_reason = RELEASE_HELD, reason
    s.add(release)


def due_for_publishing(s: Session, now: datetime) -> list[RankingRelease]:
    """Releases whose review window has ended and that nobody held."""
    return list(s.exec(select(RankingRelease).where(RankingRelease.status == RELEASE_REVIEW,
                                                    RankingRelease.review_until <= now)
                       .order_by(RankingRelease.month)))


def latest_in_review(s: Session) -> RankingRelease | None:
    return s.exec(select(RankingRelease).where(col(RankingRelease.status).in_([RELEASE_REVIEW, RELEASE_HELD]))
                  .order_by(col(RankingRelease.month).desc())).first()


def published_months(s: Session) -> list[str]:
    """The months whose ranking was published, oldest first."""
    return list(s.exec(select(RankingRelease.month).where(RankingRelease.status == RELEASE_PUBLISHED)
                       .order_by(RankingRelease.month)))


def add_appeal(s: Session, release: RankingRelease, unit_id: int, userid: str, text: str, now: datetime) -> Appeal:
    appeal = Appeal(month=release.month, unit_id=unit_id, userid=userid, text=text, created_at=now)
    s.add(appeal)
    s.flush()
    return appeal


def appeals(s: Session, month: Month) -> list[Appeal]:
    return list(s.exec(select(Appeal).where(Appeal.month == str(month)).order_by(Appeal.id)))
