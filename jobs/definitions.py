"""The six campaign jobs (SPEC §3). Each maps its scheduled (base) moment to a period and builds
the pushes for that period from db/ through the shared digest. Nothing here sends or writes."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlmodel import Session

from bot import targets
from bot.campaign import digest
from db.month import Month
from bot.config import Config
from bot.reply import Push, Target
from db import queries
from jobs.calendar import EARLIER, LATER

log = logging.getLogger("duban.jobs")


@dataclass(frozen=True)
class JobDef:
    name: str
    period: Callable[[datetime], str]  # local base moment -> period key, e.g. "2026-03"
    build: Callable[[Session, Config, datetime, datetime], list[Push]]  # (s, config, base, now)
    # On a rest day: EARLIER for a job that comes before a deadline (its text names the real one),
    # LATER for one that reports on a period, which must have ended first.
    moves: str = EARLIER


def _month_of(base: datetime) -> str:
    return str(Month.of(base))


def _month_before(base: datetime) -> str:
    return str(Month.of(base).prev())


def _to_broadcast_or_admins(s: Session, config: Config, template: str, data: dict, key: str,
                            admins_too: bool) -> list[Push]:
    if targets.broadcast_target(config) is None and not admins_too:
        log.warning("no broadcast group configured ([broadcast] chat_id / webhook_key): %s goes to the admins", key)
        admins_too = True
    return targets.broadcast_pushes(s, config, template, data, key, to_admins=admins_too)


def deploy_check(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    pushes = []
    for unit, missing in digest.empty_lists(s):
        target = targets.group_or_leader(s, unit)
        if target is None:
            continue
        leader = queries.get_member(s, unit.leader_userid) if unit.leader_userid else None
        mentions = [leader] if leader else []
        pushes.append(Push(target, "deploy_check", {"unit": unit, "missing": missing, "mentions": mentions},
                           mentions=[m.userid for m in mentions], key=str(unit.id)))
    return pushes


def monthly_prompt(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    month = Month.of(base)
    pushes = []
    for due in digest.unit_dues(s, config, month, now):
        if due.empty:
            continue
        push = targets.unit_prompt(s, config, due, month)
        if push is not None:
            pushes.append(push)
    return pushes


def escalation(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    month = Month.of(base)
    late = [d for d in digest.unit_dues(s, config, month, now) if d.unreported]
    if not late:
        return []
    deadline = month.first_day.replace(day=config.schedule.report_deadline_day)
    pushes = [Push(Target("app", a.userid), "escalation_admin", {"dues": late, "month": month, "deadline": deadline},
                   key=f"admin:{a.userid}", markdown=False) for a in queries.admins(s)]
    for due in late:
        push = targets.unit_prompt(s, config, due, month, firm=True)
        if push is not None:
            pushes.append(push)
    return pushes


def monthly_ranking(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    month = Month.of(base).prev()
    scores = digest.rank(s, config, month, now)
    data = {"scores": scores, "month": month}
    pushes = _to_broadcast_or_admins(s, config, "ranking_broadcast", data, "ranking", admins_too=False)
    return pushes + _ranking_image(config, month, now)


def _ranking_image(config: Config, month: Month, now: datetime) -> list[Push]:
    """The ranking as a picture, after the text, to the broadcast group (none without one). The PNG
    is drawn at send time (bot/campaign/chart.py) from the ranking as of `now`."""
    target = targets.broadcast_target(config)
    if target is None:
        return []
    spec = {"kind": "ranking_image", "month": str(month), "at": now.isoformat()}
    return [Push(target, "", file=spec, image=True, filename=f"争先督办-{month}排名.png", key="ranking:image")]


def midyear_review(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    year = base.year
    year_scores, monthly = digest.year_ranking(s, config, year, now, last_month=6)
    june = Month(year, 6)
    data = {"year": year, "scores": year_scores, "lines": digest.line_summaries(s, config, june, now),
            "months": list(monthly)}
    return _to_broadcast_or_admins(s, config, "midyear_review", data, "midyear", admins_too=True)


def annual_summary(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    year = base.year
    year_scores, monthly = digest.year_ranking(s, config, year, now)
    december = Month(year, 12)
    data = {"year": year, "scores": year_scores, "lines": digest.line_summaries(s, config, december, now),
            "months": list(monthly)}
    pushes = _to_broadcast_or_admins(s, config, "annual_summary", data, "annual", admins_too=True)
    spec = {"kind": "year", "year": year, "at": now.isoformat()}
    for admin in queries.admins(s):
        pushes.append(Push(Target("app", admin.userid), "", file=spec, filename=f"争先督办-{year}年度考核.xlsx",
                           key=f"file:{admin.userid}"))
    return pushes


JOBS: dict[str, JobDef] = {
    j.name: j
    for j in (
        JobDef("deploy_check", lambda b: b.date().isoformat(), deploy_check),
        JobDef("monthly_prompt", _month_of, monthly_prompt),
        JobDef("escalation", _month_of, escalation),
        JobDef("monthly_ranking", _month_before, monthly_ranking, moves=LATER),
        JobDef("midyear_review", lambda b: f"{b.year}-H1", midyear_review),
        JobDef("annual_summary", lambda b: str(b.year), annual_summary),
    )
}
