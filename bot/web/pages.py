"""What each page shows, read through db/ and the campaign's own computations (the same ranking
and lights as the broadcast and the chat). Each function takes a short read-only session (what
总览 counts is kept in a write transaction of its own: bot/campaign/months.py); the number of
queries does not grow with the number of units, tasks or reports."""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.campaign import lists, months, release, scoring, years
from db import queries
from db.models import (
    EVENT_ISSUE, LISTS_WAITING, MAX_ID, PROBLEM_CLOSED, RELEASE_PUBLISHED, ROLE_ADMIN, ROLE_LEADER, Member, RankingRelease,
    Unit,
)
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

    def sends_lists(self, unit_id: int) -> bool:
        """The unit's 负责人 (and admins) send its lists (清单)."""
        return self.admin or (self.member.role == ROLE_LEADER and self.member.unit_id == unit_id)

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
        inputs = months.Inputs(s, month.year)
        done = months.finished(s, app, trend[:-1], now, inputs, previous=last[2] if last else None,
                               check_every=months.CHECK_EVERY + months.KEPT_FOR, provisional=True)
        # months counted now: the ranking so far too (last month's ranks may have changed)
        counted, running = months.so_far(s, app, month, now, done,
                                         timedelta(0) if done.counted else months.KEPT_FOR, inputs)
        with self._lock:
            self._window = (month, counted, done, running)
        return done, running

    def published(self, frozen: RankingRelease) -> list:
        """The published ranking, thawed once: a release changes after publication only by 更正 (its version)."""
        key = (frozen.id, frozen.month, frozen.published_at, frozen.version)
        last = self._published
        if last is None or last[0] != key:
            last = self._published = (key, release.thaw(frozen.data))
        return last[1]


def overview(s: Session, app, who: Viewer, now: datetime, rankings: Rankings) -> dict:
    from jobs import JobQueue

    month = this_month(app, now)
    trend = months.trend(s, app.config, month)
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
    rated = [sc for sc in running if sc.rank]
    return {
        "month": month,
        # admins and 分管领导 open with the organisation (their own office is usually 不参评)
        "org_first": who.admin or bool(who.units),
        "org_units": len(rated),
        "org_reported": sum(sc.reported for sc in rated),
        "org_tasks": sum(sc.active_tasks for sc in rated),
        "org_behind": sum(1 for sc in rated if sc.reported < sc.active_tasks),
        "running_label": f"截至{local.day}日",
        "preview": running if who.admin else None,
        "published": published,
        "published_month": published_month,
        "correction": release.correction(frozen) if published is not None else None,
        "mine": mine,
        "total": sum(1 for sc in running if sc.rank),  # 名次 x / N: N counts the ranked units only
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
        "past_years": past_years(s, app, now),
        # each unit's lists this year (admins: every unit; others: their own)
        "list_states": [(u, state) for u, state in _list_states(s, app, now)
                        if who.admin or u.id == who.unit.id],
    }


def _list_states(s: Session, app, now: datetime) -> list[tuple[Unit, str]]:
    states = lists.states(s, now, app.tz)
    return [(u, states[u.id]) for u in queries.all_units(s)]


def list_review(s: Session, submission) -> dict:
    """A submission as the pages show it: its difference row by row and its counts."""
    changes = lists.changes_of(submission)
    return {"submission": submission, "changes": changes, "counts": lists.counts(changes)}


def past_years(s: Session, app, now: datetime) -> list[int]:
    """The campaign years before the current one, newest first: each readable on its year page."""
    current = years.current_year(s, app.config, now)
    return sorted((c.year for c in queries.campaigns(s) if c.year < current), reverse=True)


def year_page(s: Session, app, who: Viewer, year: int, month_text: str, now: datetime) -> dict:
    """A campaign year's published rankings (a past year's as they were published), one month at a
    time: `month_text` or the latest published one."""
    if not 0 < year <= 9999 or queries.get_campaign(s, year) is None:
        raise NotVisible(year)
    published = [r for r in release.published_of_year(s, year)]
    chosen = next((r for r in published if r.month == month_text), published[-1] if published else None)
    return {"year": year, "years": sorted((c.year for c in queries.campaigns(s)), reverse=True),
            "current": years.current_year(s, app.config, now), "months": [r.month for r in published],
            "release": chosen, "scores": release.thaw(chosen.data) if chosen else [],
            "first": years.first_month(s, app.config, year)}


def unit_page(s: Session, app, who: Viewer, unit_id: int, now: datetime, year: int | None = None) -> dict:
    """The unit's tasks, reports, problems and 督办 items of the current campaign year, or of a past
    `year` (as they stood at its end)."""
    if not 0 < unit_id <= MAX_ID or not who.sees_unit(unit_id):
        raise NotVisible(unit_id)
    unit = s.get(Unit, unit_id)
    if unit is None:
        raise NotVisible(unit_id)
    current = years.current_year(s, app.config, now)
    if year is not None and year != current and queries.get_campaign(s, year) is None:
        raise NotVisible(unit_id)
    past = year is not None and year != current
    month = Month(year, 12) if past else this_month(app, now)
    snaps = sorted(scoring.snapshots(s, month, now, app.tz, app.config.schedule.report_deadline_day,
                                     unit_id=unit.id), key=lambda x: queries.code_key(x.task.code))
    year = year if past else None
    reports = queries.unit_reports(s, unit.id, year)
    history: dict[int, list] = {}
    for r in reports:
        history.setdefault(r.task_id, []).append(r)
    problems = queries.unit_problems(s, unit.id, year)
    progress: dict[int, list] = {}
    for p in queries.progress_of(s, [p.id for p in problems]):
        progress.setdefault(p.problem_id, []).append(p)
    items = queries.unit_items(s, unit.id, year)
    timeline: dict[int, list] = {}
    for e in queries.events_of(s, [i.id for i in items]):
        if e.kind != EVENT_ISSUE:  # the item itself says what was issued
            timeline.setdefault(e.item_id, []).append(e)
    files = queries.attachments(s, unit_id=unit.id)[::-1]  # newest first
    sent = queries.list_history(s, unit.id)  # the unit's lists as sent, newest first
    waiting = next((x for x in sent if x.status == LISTS_WAITING), None)
    today = now.astimezone(app.tz).date()
    people = {unit.leader_userid} | {x.task.owner_userid for x in snaps} | {r.userid for r in reports}
    people |= {p.owner_userid for p in problems} | {e.userid for es in timeline.values() for e in es}
    people |= {g.userid for gs in progress.values() for g in gs}
    people |= {a.userid for a in files}
    people |= {x.userid for x in sent} | {x.reviewed_by for x in sent}
    return {
        "unit": unit,
        "month": month,
        "snaps": snaps,
        "history": history,
        "problems": problems,
        "progress": progress,
        "closed": PROBLEM_CLOSED,
        "items": items,
        "timeline": timeline,
        "files": files,
        "list_history": [(x, lists.counts(lists.changes_of(x))) for x in sent],
        "list_state": lists.states(s, now, app.tz)[unit.id],
        "list_waiting": list_review(s, waiting) if waiting else None,
        "sends_lists": who.sends_lists(unit.id),
        "max_mb": app.config.storage.max_mb,
        "today": today,
        "names": queries.members_named(s, people - {""}),
        "past_year": year,  # a past campaign year shown, named with its year
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
        return {"review": None, "appeals": [], "ranking": []}
    units = {u.id: u.name for u in queries.all_units(s)}
    appeals = release.appeals(s, Month.parse(frozen.month))
    names = queries.members_named(s, {a.userid for a in appeals})
    ranking = release.thaw(frozen.data)
    figures = {sc.unit.id: sc for sc in ranking}
    return {"review": frozen, "ranking": ranking,
            "appeals": [(units.get(a.unit_id, ""), names.get(a.userid, a.userid), a, figures.get(a.unit_id))
                        for a in appeals]}


def campaign_panel(s: Session, app, now: datetime) -> dict:
    """管理's 考核年度: the current year, its first month and what it leaves open (as `duban campaign
    new` lists it), for starting the next year."""
    year = years.current_year(s, app.config, now)
    return {"campaign_year": year, "campaign_first": years.first_month(s, app.config, year),
            "campaign_open": queries.unfinished(s, year)}


def lists_queue(s: Session) -> list[tuple[str, dict]]:
    """Every unit's lists waiting for review (管理), oldest first, each with its difference."""
    units = {u.id: u.name for u in queries.all_units(s)}
    return [(units.get(x.unit_id, ""), list_review(s, x)) for x in queries.waiting_submissions(s)]


def outbox_page(s: Session, app, now: datetime, limit: int = 200) -> dict:
    failed = queries.outbox_page(s, ("failed",), limit)
    pending = queries.outbox_page(s, ("pending", "sending"), limit)
    rows = failed + pending
    people = queries.members_named(s, {u for r in rows if r.channel == "app" for u in r.target.split("|")})
    groups = {}
    for u in queries.all_units(s):
        groups[("appchat", u.chat_id)] = groups[("webhook", u.webhook_key)] = u.name
    groups[("appchat", app.config.broadcast.chat_id)] = "通报群"
    month = this_month(app, now)
    return {
        **review_queue(s),
        "lists_queue": (waiting := lists_queue(s)),
        "names": queries.members_named(s, {x["submission"].userid for _, x in waiting}),
        "counts": queries.outbox_counts(s),
        "failed": [Letter.of(r, people, groups) for r in failed],
        "pending": [Letter.of(r, people, groups) for r in pending],
        "limit": limit,
        "exports": [(f"{month}（截至目前）", f"month={month}"), (str(month.prev()), f"month={month.prev()}"),
                    (f"{month.year}年度", f"year={month.year}")],
    }


# What a failed send's errcode means, in words (WeCom's global error codes).
ERRCODE_WORDS = {
    40003: "收件人账号无效", 81013: "收件人均无效或不在应用可见范围", 60111: "收件人账号不存在",
    86008: "该群不存在或应用不在群内", 86003: "该群不存在", 93000: "群机器人地址无效",
    45009: "发送过于频繁，已被企业微信限流", 42001: "access_token 已过期", 40014: "access_token 无效",
    40001: "应用 Secret 错误", 60020: "服务器 IP 不在企业微信的可信 IP 名单中", 48002: "应用无此接口权限",
    301002: "应用无权给此人发消息", 82001: "收件人不在应用可见范围",
}


@dataclass
class Letter:
    """An outbox row as 管理 shows it: to whom by name, its first line, its last error in words."""
    row: object
    to: str
    headline: str
    error: str

    @classmethod
    def of(cls, row, people: dict, groups: dict) -> "Letter":
        if row.channel == "app":
            to = "、".join(people.get(u, u) for u in row.target.split("|"))
        elif row.channel == "response_url":
            to = "智能机器人（回复）"
        else:
            name = groups.get((row.channel, row.target))
            to = f"{name}{'' if name == '通报群' else '群'}" if name else ("群机器人" if row.channel == "webhook" else "群聊")
        return cls(row, to, _headline(row), _error_words(row.last_error))


def _headline(row) -> str:
    if row.msgtype in ("file", "image"):
        return row.filename or ("图片" if row.msgtype == "image" else "文件")
    try:
        data = json.loads(row.payload)
    except ValueError:
        return ""
    text = data.get("content") or data.get("main_title", {}).get("title", "") if isinstance(data, dict) else ""
    for line in str(text).splitlines():
        line = re.sub(r"<[^>]+>|[#*>`]", "", line).strip()
        if line:
            return line
    return ""


def _error_words(error: str) -> str:
    if not error:
        return ""
    code = re.search(r"errcode\D{0,3}(\d+)", error)
    if code and int(code.group(1)) in ERRCODE_WORDS:
        return f"{ERRCODE_WORDS[int(code.group(1))]}（错误码 {code.group(1)}）"
    if code:
        return f"企业微信拒绝发送（错误码 {code.group(1)}）"
    status = re.search(r"HTTP (\d{3})", error)
    if status:
        return f"企业微信服务器暂时出错（HTTP {status.group(1)}），稍后重试"
    if re.search(r"timeout|timed out|Timeout", error):
        return "连接企业微信超时"
    if re.search(r"Connect|connection|resolve", error, re.I):
        return "连不上企业微信（网络不通）"
    return error
