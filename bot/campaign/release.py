"""The monthly ranking's review and release (公开亮晒 after a review window).

At the ranking's time the month is computed once and frozen (`freeze`): the admins see it as a
预览, each unit's 负责人 sees its own line and may 申诉; an admin answers 发布 or 暂缓, or the
window ends and it is published by itself. What is published is the frozen ranking (`thaw`), so a
report or an import after the ranking's time changes nothing that was reviewed or broadcast.

An admin answers each 申诉 (采纳 / 驳回); for an accepted one a report may be entered with its real
time (补录), and the month frozen again (`refreeze`): 重算 while in review, 更正 once published. Each
version it replaces is kept (RankingVersion); the release holds the latest, with 更正's note.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.campaign.scoring import UnitScore
from db.models import (
    APPEAL_ACCEPTED, RELEASE_HELD, RELEASE_PUBLISHED, RELEASE_REVIEW, Appeal, RankingRelease, RankingVersion,
)
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


def published_ranks(s: Session, month: Month) -> dict[int, int] | None:
    """Unit id -> rank in `month`'s published ranking; None when it was not published (較上月 then
    has nothing to compare with)."""
    frozen = get(s, month)
    if frozen is None or frozen.status != RELEASE_PUBLISHED:
        return None
    return {row["unit"]["id"]: row["rank"] for row in json.loads(frozen.data) if row["rank"]}


def published_of_year(s: Session, year: int) -> list[RankingRelease]:
    """`year`'s published rankings, in month order."""
    return list(s.exec(select(RankingRelease).where(col(RankingRelease.month).startswith(f"{year}-"),
                                                    RankingRelease.status == RELEASE_PUBLISHED)
                       .order_by(RankingRelease.month)))


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


# ---------------------------------------------------------------- appeals decided, versions (重算, 更正)


def waiting_appeal(s: Session, unit_id: int) -> Appeal | None:
    """The unit's latest 申诉 no admin has decided yet."""
    return s.exec(select(Appeal).where(Appeal.unit_id == unit_id, Appeal.decision == "")
                  .order_by(col(Appeal.id).desc())).first()


def decide(s: Session, appeal: Appeal, decision: str, remark: str, userid: str, now: datetime) -> None:
    appeal.decision, appeal.remark, appeal.decided_by, appeal.decided_at = decision, remark, userid, now
    s.add(appeal)


def accepted_appeal(s: Session, month: Month, unit_id: int) -> Appeal | None:
    """The unit's latest accepted (采纳) 申诉 of `month`: what a 补录 is entered for."""
    return s.exec(select(Appeal).where(Appeal.month == str(month), Appeal.unit_id == unit_id,
                                       Appeal.decision == APPEAL_ACCEPTED).order_by(col(Appeal.id).desc())).first()


def changed_lines(old: list, new: list) -> list[dict]:
    """The units whose line differs between two rankings (thawed or live): name, leader, old and new
    (rank, score, tier; None where the unit was not in it), in the new ranking's order."""
    before = {sc.unit.id: sc for sc in old}
    out = []
    for sc in new:
        was = before.get(sc.unit.id)
        if was is None or (was.rank, was.score, was.tier) != (sc.rank, sc.score, sc.tier):
            out.append({"unit": sc.unit.name, "unit_id": sc.unit.id, "leader": sc.unit.leader_userid,
                        "old": [was.rank, was.score, was.tier] if was else None,
                        "new": [sc.rank, sc.score, sc.tier]})
    return out


def refreeze(s: Session, frozen: RankingRelease, scores: list[UnitScore], userid: str, now: datetime,
             note: str = "") -> list[dict]:
    """Freeze the month again from `scores` (重算 in review, 更正 once published): the version it
    replaces is kept (RankingVersion); returns the lines that changed."""
    s.add(RankingVersion(month=frozen.month, version=frozen.version, status=frozen.status, data=frozen.data,
                         computed_at=frozen.computed_at, published_at=frozen.published_at, note=frozen.note,
                         replaced_by=userid, replaced_at=now))
    changes = changed_lines(thaw(frozen.data), scores)
    frozen.data, frozen.computed_at, frozen.version = freeze(scores), now, frozen.version + 1
    if note:
        frozen.note, frozen.changes, frozen.corrected_at = note, json.dumps(changes, ensure_ascii=False), now
    s.add(frozen)
    s.flush()
    return changes


def versions(s: Session, month: Month) -> list[RankingVersion]:
    return list(s.exec(select(RankingVersion).where(RankingVersion.month == str(month))
                       .order_by(RankingVersion.version)))


def correction(frozen: RankingRelease) -> dict | None:
    """A corrected (更正) month's note and the lines it changed, for every text that shows it."""
    if not frozen.note:
        return None
    return {"note": frozen.note, "at": frozen.corrected_at, "version": frozen.version,
            "changes": json.loads(frozen.changes or "[]")}
