"""The seven campaign jobs (SPEC §3 and the daily 督办 watch). Each maps its scheduled (base) moment to a period and builds
the pushes for that period from db/ through the shared digest. Nothing here sends or writes."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlmodel import Session

from bot import targets
from bot.campaign import digest, items, lists, release, reviews, years
from db.month import Month
from bot.config import Config
from bot.reply import Push, Target
from db import queries
from db.models import EVENT_FEEDBACK, LISTS_NONE, LISTS_RETURNED
from jobs.calendar import EARLIER, LATER, SKIP, Workdays

log = logging.getLogger("duban.jobs")


@dataclass(frozen=True)
class JobDef:
    name: str
    period: Callable[[datetime], str]  # local base moment -> period key, e.g. "2026-03"
    build: Callable[[Session, Config, datetime, datetime], list[Push]]  # (s, config, base, now)
    # On a rest day: EARLIER for a job that comes before a deadline (its text names the real one),
    # LATER for one that reports on a period, which must have ended first; SKIP for a daily one.
    moves: str = EARLIER


def _month_of(base: datetime) -> str:
    return str(Month.of(base))


def _month_before(base: datetime) -> str:
    return str(Month.of(base).prev())


def deploy_check(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    """To each unit whose lists are not in this year (未提交, 已退回), or still empty: its state, what is
    empty, and how its 负责人 sends them (清单); to admins, every unit's state."""
    pushes = []
    empty = {unit.id: missing for unit, missing in digest.empty_lists(s)}
    states = lists.states(s, base, config.schedule.tz)
    for unit in queries.all_units(s):
        missing, state = empty.get(unit.id, []), states[unit.id]
        if not missing and state not in (LISTS_NONE, LISTS_RETURNED):
            continue
        returned = queries.last_review(s, unit.id) if state == LISTS_RETURNED else None
        pushes += targets.to_unit(s, unit, "deploy_check", {"missing": missing, "state": state, "returned": returned},
                                  str(unit.id), targets.leader_of(s, unit))
    units = [(u, states[u.id]) for u in queries.all_units(s)]
    pushes += [Push(Target("app", a.userid), "lists_states", {"units": units, "deadline": True}, markdown=False,
                    key=f"admin:{a.userid}") for a in queries.admins(s)]
    return pushes


def monthly_prompt(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    """To each unit that owes something, its prompt; to each 分管领导, one line per unit of theirs."""
    month = Month.of(base)
    pushes = []
    dues = digest.unit_dues(s, config, month, now)
    for due in dues:
        if not due.empty:
            pushes += targets.unit_prompt(s, config, due, month)
    return pushes + targets.leader_lines(s, config, dues, month)


def escalation(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    month = Month.of(base)
    late = [d for d in digest.unit_dues(s, config, month, now) if d.unreported]
    if not late:
        return []
    deadline = month.first_day.replace(day=config.schedule.report_deadline_day)
    to_units = {d.unit.id: targets.unit_prompt(s, config, d, month, firm=True) for d in late}
    sent = {unit_id: targets.places(s, config, rows) for unit_id, rows in to_units.items()}
    pushes = [Push(Target("app", a.userid), "escalation_admin",
                   {"dues": late, "month": month, "deadline": deadline, "sent": sent},
                   key=f"admin:{a.userid}", markdown=False) for a in queries.admins(s)]
    return pushes + [p for rows in to_units.values() for p in rows]


def monthly_ranking(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    """Freeze last month's ranking; with a review window, send the 预览 to the admins and each
    unit's line to its 负责人 (the broadcast follows on 发布 or when the window ends), else
    broadcast it at once."""
    month = Month.of(base).prev()
    if release.get(s, month) is not None:  # a forced re-run: the frozen ranking stands
        return []
    if not years.scored(s, config, month):  # before the campaign's first month: not ranked
        log.info("monthly_ranking: %s is before the campaign's first month, not ranked", month)
        return []
    scores = digest.rank(s, config, month, now)
    hours = config.ranking.review_hours
    frozen = release.open_for_review(s, scores, month, now, hours)
    if hours == 0:
        return targets.ranking_broadcast(s, config, month, scores, now)
    return targets.ranking_review(s, config, month, scores, frozen.review_until)


def midyear_review(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    year = base.year
    year_scores, monthly = digest.year_ranking(s, config, year, now, last_month=6)
    june = Month(year, 6)
    data = {"year": year, "scores": year_scores, "lines": digest.line_summaries(s, config, june, now),
            "months": list(monthly), "comments": reviews.latest(s, reviews.midyear(year), until=now)}
    return targets.to_broadcast_or_admins(s, config, "midyear_review", data, "midyear", admins_too=True)


def annual_summary(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    year = base.year
    year_scores, monthly = digest.year_ranking(s, config, year, now)
    december = Month(year, 12)
    data = {"year": year, "scores": year_scores, "lines": digest.line_summaries(s, config, december, now),
            "months": list(monthly), "comments": reviews.latest(s, reviews.annual(year), until=now)}
    pushes = targets.to_broadcast_or_admins(s, config, "annual_summary", data, "annual", admins_too=True)
    spec = {"kind": "year", "year": year, "at": now.isoformat()}
    for admin in queries.admins(s):
        pushes.append(Push(Target("app", admin.userid), "", file=spec, filename=f"争先督办-{year}年度考核.xlsx",
                           key=f"file:{admin.userid}"))
    return pushes


def item_watch(s: Session, config: Config, base: datetime, now: datetime) -> list[Push]:
    """Every workday: an open 督办 item that turns yellow today (due within [supervision] warn_days
    workdays) reminds its units; one that turned red (its deadline passed) tells its units, @ the
    负责人, and their 分管领导; the admins get one line of every overdue item, when there are any."""
    today = base.date()
    workdays = Workdays(config.schedule.days("holidays"), config.schedule.days("workdays"))
    warn = config.supervision.warn_days
    units = {u.id: u for u in queries.all_units(s)}
    overseers = queries.overseers(s)
    pushes, overdue = [], []
    for item in queries.unfinished_items(s):
        if item.created_at > now:
            continue
        if items.turns_yellow_today(item, today, warn, workdays):
            kind = "yellow"
        elif items.turns_red_today(item, today, workdays):
            kind = "red"
        else:
            kind = ""
        if kind:
            left = items.workdays_left(today, item.deadline, workdays)
            answered = queries.step_units(s, [item.id], EVENT_FEEDBACK).get(item.id, set()) if item.partners else set()
            for unit_id in (item.unit_id, *(p for p in item.partners if p not in answered)):
                unit = units.get(unit_id)
                if unit is not None:
                    pushes += targets.to_unit(s, unit, "item_push", {"kind": kind, "item": item, "left": left,
                                                                     "remark": ""},
                                              f"{item.code}:{kind}:{unit_id}", targets.leader_of(s, unit))
            if kind == "red":
                pushes += targets.item_to_leaders(item, [units[i] for i in (item.unit_id, *item.partners)
                                                         if i in units], overseers)
        if items.owed(item) and today > item.deadline and item.unit_id in units:
            overdue.append((item, units[item.unit_id]))
    if overdue:
        pushes += [Push(Target("app", a.userid), "items_overdue_admin", {"rows": overdue, "today": today},
                        markdown=False, key=f"admin:{a.userid}") for a in queries.admins(s)]
    return pushes


JOBS: dict[str, JobDef] = {
    j.name: j
    for j in (
        JobDef("deploy_check", lambda b: b.date().isoformat(), deploy_check),
        JobDef("monthly_prompt", _month_of, monthly_prompt),
        JobDef("escalation", _month_of, escalation),
        JobDef("monthly_ranking", _month_before, monthly_ranking, moves=LATER),
        JobDef("midyear_review", lambda b: reviews.midyear(b.year), midyear_review),
        JobDef("annual_summary", lambda b: reviews.annual(b.year), annual_summary),
        JobDef("item_watch", lambda b: b.date().isoformat(), item_watch, moves=SKIP),
    )
}
