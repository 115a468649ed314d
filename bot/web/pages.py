"""What each page shows, read through db/ and the campaign's own computations (the same ranking
and lights as the broadcast and the chat). Each function takes a short read-only session (what
总览 counts is kept in a write transaction of its own: bot/campaign/months.py); the number of
queries does not grow with the number of units, tasks or reports."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.campaign import months, release, scoring
from db import queries
from db.models import MAX_ID, PROBLEM_CLOSED, RELEASE_PUBLISHED, ROLE_ADMIN, Member, RankingRelease, Unit
from db.month import Month

JOB_LABELS = {
    "deploy_check": "部署检查（三张清单）",
    "monthly_prompt": "月度督办提示",
    "escalation": "汇报截止催办",
    "monthly_ranking": "月度排名通报（公开亮晒）",
    "midyear_review": "阶段性点评",
    "annual_summary": "年度总结与考核评比",
}
TREND_MONTHS = months.TREND_MONTHS
RUNNING_TTL = timedelta(minutes=1)  # the running month's ranking (截至目前) is counted once a minute
# by the scheduler (months.keep) and kept in the database; a process reads it, and the trend's
# finished months, again once what it read is this old


class NotVisible(Exception):
    """The page does not exist for this viewer (another unit's, or an admin's page)."""


@dataclass
class Viewer:
    member: Member
    unit: Unit
    units: frozenset[int] = field(default_factory=frozenset)  # a 分管领导's units
    csrf: str = ""  # the session's token, which its forms carry

    @property
    def admin(self) -> bool:
        return self.member.role == ROLE_ADMIN

    def sees_unit(self, unit_id: int) -> bool:
        """Admins see every unit; a 分管领导 their own and the units they are over; a member or
        负责人 only their own."""
        return self.admin or self.member.unit_id == unit_id or unit_id in self.units


def viewer(s: Session, userid: str) -> Viewer | None:
    found = queries.sender(s, userid)
    if not found:
        return None
    return Viewer(found.member, found.unit, frozenset(queries.overseen_units(s, found.member)))


def signed_in(s: Session, token_hash: str, now: datetime) -> Viewer | None:
    """The viewer of a session (one query by its key; a 分管领导's units are a second), or None."""
    found = queries.signed_in(s, token_hash, now)
    if not found:
        return None
    return Viewer(found.member, found.unit, frozenset(queries.overseen_units(s, found.member)), found.csrf)


def this_month(app, now: datetime) -> Month:
    return Month.of(now.astimezone(app.tz))


class Rankings:
    """The trend's finished months, the running month's ranking so far and the published ranking
    as this process last read them (bot/campaign/months.py), for RUNNING_TTL of the app's clock.
    What the scheduler kept is read even when a few minutes old (months.KEPT_FOR); only when nothing
    usable is kept (a fresh database, no scheduler running) is it counted here, and kept."""

    def __init__(self):
        self._window: tuple[Month, datetime, months.Finished, list] | None = None
        self._published: tuple[tuple, list] | None = None
        self._lock = threading.Lock()

    def window(self, s: Session, app, trend: list[Month], now: datetime) -> tuple[months.Finished, list]:
        """(the finished months of `trend`, the ranking of its last month so far)."""
        month = trend[-1]
        with self._lock:
            last = self._window
        if last is not None and last[0] == month and timedelta(0) <= now - last[1] < RUNNING_TTL:
            return last[2], last[3]
        inputs = months.Inputs(s)
        done = months.finished(s, app, trend[:-1], now, inputs, previous=last[2] if last else None,
                               check_every=months.CHECK_EVERY + months.KEPT_FOR, provisional=True)
        # months counted now: the ranking so far too (last month's ranks may have changed)
        counted, running = months.so_far(s, app, month, now, done,
                                         timedelta(0) if done.counted else months.KEPT_FOR, inputs)
        with self._lock:
            self._window = (month, counted, done, running)
        return done, running

    def published(self, frozen: RankingRelease) -> list:
        """The published ranking, thawed once: a release does not change once published."""
        key = (frozen.id, frozen.month, frozen.published_at)
        last = self._published
        if last is None or last[0] != key:
            last = self._published = (key, release.thaw(frozen.data))
        return last[1]


def overview(s: Session, app, who: Viewer, now: datetime, rankings: Rankings) -> dict:
    from jobs import JobQueue

    month = this_month(app, now)
    trend = months.trend(month)
    done, running = rankings.window(s, app, trend, now)
    published_month = month.prev()
    frozen = release.get(s, published_month)  # what was published (公开亮晒), not a recount
    published = rankings.published(frozen) if frozen is not None and frozen.status == RELEASE_PUBLISHED else None
    trend_units = None if who.admin else set(who.units) or {who.unit.id}
    points = [done.figures[m].point(trend_units) for m in trend[:-1]] + [months.Figures.of(running).point(trend_units)]
    mine = next((sc for sc in running if sc.unit.id == who.unit.id), None)
    deadline_day = app.config.schedule.report_deadline_day
    deadline = month.first_day.replace(day=deadline_day)
    local = now.astimezone(app.tz)
    calendar = [(JOB_LABELS[name], nxt.date(), f"{nxt:%H:%M}")
                for name, enabled, nxt, _ in JobQueue(app).next_runs(now)
                if enabled and nxt is not None and name in JOB_LABELS]  # (not the daily 督办 watch)
    if local.date() <= deadline:
        calendar.append(("本月汇报截止", deadline, ""))
    calendar.sort(key=lambda row: (row[1], row[2]))
    return {
        "month": month,
        "preview": running if who.admin else None,
        "published": published,
        "published_month": published_month,
        "mine": mine,
        "total": len(running),
        "unreported": queries.unreported_count(s, who.unit.id, month),
        "deadline": deadline,
        "deadline_passed": local.date() > deadline,
        "trend_labels": [f"{m.month}月" for m in trend],
        "trend_scores": [p[0] for p in points],
        "trend_rates": [p[1] for p in points],
        "trend_of": "全校平均" if who.admin else "分管单位平均" if who.units else who.unit.name,
        # a 分管领导's units, this month so far (their places among all; the whole preview is admins')
        "overseen": [sc for sc in running if sc.unit.id in who.units],
        "calendar": calendar[:6],
    }


def unit_page(s: Session, app, who: Viewer, unit_id: int, now: datetime) -> dict:
    if not 0 < unit_id <= MAX_ID or not who.sees_unit(unit_id):
        raise NotVisible(unit_id)
    unit = s.get(Unit, unit_id)
    if unit is None:
        raise NotVisible(unit_id)
    month = this_month(app, now)
    snaps = sorted(scoring.snapshots(s, month, now, app.tz, app.config.schedule.report_deadline_day,
                                     unit_id=unit.id), key=lambda x: queries.code_key(x.task.code))
    reports = queries.unit_reports(s, unit.id)
    history: dict[int, list] = {}
    for r in reports:
        history.setdefault(r.task_id, []).append(r)
    problems = queries.unit_problems(s, unit.id)
    progress: dict[int, list] = {}
    for p in queries.progress_of(s, [p.id for p in problems]):
        progress.setdefault(p.problem_id, []).append(p)
    items = queries.unit_items(s, unit.id)
    feedback: dict[int, list] = {}
    for f in queries.feedback_of(s, [i.id for i in items]):
        feedback.setdefault(f.item_id, []).append(f)
    files = queries.attachments(s, unit_id=unit.id)[::-1]  # newest first
    today = now.astimezone(app.tz).date()
    people = {unit.leader_userid} | {x.task.owner_userid for x in snaps} | {r.userid for r in reports}
    people |= {p.owner_userid for p in problems} | {f.userid for fs in feedback.values() for f in fs}
    people |= {a.userid for a in files}
    return {
        "unit": unit,
        "month": month,
        "snaps": snaps,
        "history": history,
        "problems": problems,
        "progress": progress,
        "closed": PROBLEM_CLOSED,
        "items": items,
        "feedback": feedback,
        "files": files,
        "today": today,
        "names": queries.members_named(s, people - {""}),
    }


def me_page(s: Session, app, who: Viewer, now: datetime) -> dict:
    month = this_month(app, now)
    snaps = sorted(scoring.snapshots(s, month, now, app.tz, app.config.schedule.report_deadline_day,
                                     unit_id=who.unit.id), key=lambda x: queries.code_key(x.task.code))
    own = [x for x in snaps if x.task.owner_userid == who.member.userid]
    others = [x for x in snaps if x.task.owner_userid != who.member.userid and x.active]
    reports = [r for r in queries.unit_reports(s, who.unit.id) if r.userid == who.member.userid][:10]
    codes = {x.task.id: x.task.code for x in snaps}
    return {"month": month, "own": own, "others": others, "reports": reports, "codes": codes}


def review_queue(s: Session) -> dict:
    """The month's ranking waiting for 发布 (in review or held), with the units' 申诉."""
    frozen = release.latest_in_review(s)
    if frozen is None:
        return {"review": None, "appeals": []}
    units = {u.id: u.name for u in queries.all_units(s)}
    appeals = release.appeals(s, Month.parse(frozen.month))
    names = queries.members_named(s, {a.userid for a in appeals})
    return {"review": frozen, "appeals": [(units.get(a.unit_id, ""), names.get(a.userid, a.userid), a)
                                          for a in appeals]}


def outbox_page(s: Session, limit: int = 200) -> dict:
    return {
        **review_queue(s),
        "counts": queries.outbox_counts(s),
        "failed": queries.outbox_page(s, ("failed",), limit),
        "pending": queries.outbox_page(s, ("pending", "sending"), limit),
        "limit": limit,
    }
