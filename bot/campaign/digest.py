"""Summaries shared by commands and scheduled jobs: what each unit owes, rankings, the year, the lines.

Each reads through db/ and returns plain data; bot/targets.py turns it into pushes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Session

from bot.campaign import release, scoring, years
from bot.campaign.scoring import TaskSnapshot, UnitScore
from db import queries
from db.models import EVENT_FEEDBACK, LINES, PROBLEM_CLOSED, Member, Problem, Unit
from db.month import Month

if TYPE_CHECKING:
    from bot.config import Config


def weights(config: Config) -> scoring.Weights:
    r = config.ranking
    return scoring.Weights(r.weight_report, r.weight_progress, r.weight_supervision, r.overdue_penalty)


def rank(s: Session, config: Config, month: Month, now: datetime, **kwargs) -> list[UnitScore]:
    """scoring.ranking with the trend against last month's published ranking (none if unpublished)."""
    if kwargs.get("with_trend", True) and kwargs.get("previous") is None and kwargs.get("prev_ranks") is None:
        kwargs["prev_ranks"] = release.published_ranks(s, month.prev())
    return scoring.ranking(
        s, month, now, config.schedule.tz, config.schedule.report_deadline_day, weights(config), **kwargs
    )


@dataclass
class UnitDue:
    """What a unit still owes this month."""

    unit: Unit
    unreported: list[TaskSnapshot]
    overdue: list[TaskSnapshot]
    items: list
    people: list[Member]
    problems: list = field(default_factory=list)  # its problems past their 整改时限, not 销号'd

    @property
    def empty(self) -> bool:
        return not (self.unreported or self.overdue or self.items or self.problems)


def unit_dues(s: Session, config: Config, month: Month, now: datetime, units: list[Unit] | None = None) -> list[UnitDue]:
    tz = config.schedule.tz
    units = units if units is not None else queries.all_units(s)
    wanted = {u.id for u in units}
    snaps = scoring.snapshots(s, month, now, tz, config.schedule.report_deadline_day)
    people = queries.members_by_id(s)
    by_unit: dict[int, list[TaskSnapshot]] = {}
    for sn in snaps:
        if sn.active and sn.task.unit_id in wanted:
            by_unit.setdefault(sn.task.unit_id, []).append(sn)
    items_by_unit: dict[int, list] = {}
    waiting = queries.open_items(s, now)
    answered = queries.step_units(s, [it.id for it in waiting if it.partners], EVENT_FEEDBACK)
    for it in waiting:  # the 牵头单位's, and each 配合单位's that has not answered its part
        for unit_id in (it.unit_id, *(p for p in it.partners if p not in answered.get(it.id, ()))):
            items_by_unit.setdefault(unit_id, []).append(it)
    today = now.astimezone(tz).date()
    late_problems: dict[int, list[Problem]] = {}
    for p in queries.all_problems(s):
        if p.deadline is not None and p.deadline < today and p.status != PROBLEM_CLOSED and p.created_at <= now:
            late_problems.setdefault(p.unit_id, []).append(p)
    out = []
    for u in units:
        mine = sorted(by_unit.get(u.id, []), key=lambda x: queries.code_key(x.task.code))
        unreported = [x for x in mine if not x.reported_in_month]
        overdue = [x for x in mine if x.overdue]
        items = items_by_unit.get(u.id, [])
        ids = [x.task.owner_userid for x in unreported + overdue]
        if items and u.leader_userid:
            ids.append(u.leader_userid)
        seen: dict[str, Member] = {}
        for uid in ids:
            if uid in people and uid not in seen:
                seen[uid] = people[uid]
        out.append(UnitDue(u, unreported, overdue, items, list(seen.values()), late_problems.get(u.id, [])))
    return out








@dataclass
class YearScore:
    unit: Unit
    score: float
    report_rate: float
    progress: float
    months: int
    top_months: int
    low_months: int
    rank: int = 0
    tier: str = scoring.TIER_OK


def year_ranking(s: Session, config: Config, year: int, now: datetime, last_month: int = 12):
    """Mean of the monthly scores over the year's scored months so far (from its first month:
    years.scored_months); tiers as for a month."""
    months = years.scored_months(s, config, year, now, config.schedule.tz, last_month)
    units, tasks = queries.all_units(s), queries.all_tasks(s, year)
    monthly: dict[Month, list[UnitScore]] = {}
    # One pass over the year's reports; each month's trend is against the month before as published.
    for m, preloaded in scoring.year_reports(s, months, now, config.schedule.tz):
        monthly[m] = rank(s, config, m, now, units=units, tasks=tasks, preloaded=preloaded)
    acc: dict[int, list] = {u.id: [] for u in units}
    for scores in monthly.values():
        for sc in scores:
            if sc.rated:  # a month without active tasks (不参评) is left out of the unit's mean
                acc[sc.unit.id].append(sc)
    out, unrated = [], []
    by_id = {u.id: u for u in units}
    for unit_id, rows in acc.items():
        n = len(rows)
        if not n:
            unrated.append(YearScore(unit=by_id[unit_id], score=0.0, report_rate=0.0, progress=0.0, months=0,
                                     top_months=0, low_months=0, tier=scoring.TIER_NONE))
            continue
        out.append(YearScore(
            unit=rows[0].unit,
            score=round(sum(r.score for r in rows) / n, 1),
            report_rate=sum(r.report_rate for r in rows) / n,
            progress=sum(r.progress for r in rows) / n,
            months=n,
            top_months=sum(r.tier == scoring.TIER_TOP for r in rows),
            low_months=sum(r.tier == scoring.TIER_LOW for r in rows),
        ))
    out.sort(key=lambda y: (-y.score, -y.report_rate, y.unit.name))
    k = int(len(out) * 0.2 + 0.5)
    for i, ys in enumerate(out):
        ys.rank = i + 1
        ys.tier = (scoring.TIER_LOW if ys.score < 60 or i >= len(out) - k
                   else scoring.TIER_TOP if i < k else scoring.TIER_OK)
    return out + sorted(unrated, key=lambda y: y.unit.name), monthly


@dataclass
class LineSummary:
    line: str
    tasks: int
    mean_percent: float
    reported: int
    red: int
    done: int


def line_summaries(s: Session, config: Config, month: Month, now: datetime) -> list[LineSummary]:
    """Per action line (深学争优 / 敢为争先 / 实干争效): how its tasks stand in `month`."""
    snaps = scoring.snapshots(s, month, now, config.schedule.tz, config.schedule.report_deadline_day)
    out = []
    for line in LINES:
        mine = [x for x in snaps if x.task.line == line and x.task.start_date <= month.last_day]
        n = len(mine)
        out.append(LineSummary(
            line=line,
            tasks=n,
            mean_percent=sum(x.percent for x in mine) / n if n else 0.0,
            reported=sum(x.reported_in_month for x in mine),
            red=sum(x.light == scoring.RED for x in mine),
            done=sum(x.percent >= 100 for x in mine),
        ))
    return out


def empty_lists(s: Session) -> list[tuple[Unit, list[str]]]:
    """Units whose task, responsibility or problem list (三张清单) is still empty."""
    tasks, problems = queries.all_tasks(s), queries.all_problems(s)  # the current campaign year's
    with_tasks = {t.unit_id for t in tasks}
    with_owner = {t.unit_id for t in tasks if t.owner_userid}
    with_problems = {p.unit_id for p in problems}
    out = []
    for u in queries.all_units(s):
        missing = [name for name, ids in (("任务清单", with_tasks), ("责任清单", with_owner), ("问题清单", with_problems))
                   if u.id not in ids]
        if missing:
            out.append((u, missing))
    return out
