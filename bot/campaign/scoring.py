"""Task snapshots (traffic lights) and the unit ranking (公开亮晒).

One computation serves the broadcast, the `排名` and `状态` commands and the export, so they agree.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from db import queries
from db.models import Task, Unit
from db.month import Month, local_midnight_utc

GREEN, YELLOW, RED = "green", "yellow", "red"
TIER_TOP, TIER_OK, TIER_LOW = "先进", "达标", "滞后"
TIER_NONE = "不参评"  # no active task in the month


@dataclass(frozen=True)
class Weights:
    report: float = 40
    progress: float = 40
    supervision: float = 20
    overdue_penalty: float = 5


@dataclass(slots=True)
class TaskSnapshot:
    task: Task
    percent: int
    reported_in_month: bool
    reported_on_time: bool
    planned: float
    overdue: bool
    active: bool
    light: str


def progress_ratio(percent: int, planned: float) -> float:
    """Actual over planned progress, capped at 1 (a task not yet planned to move counts as on track)."""
    return 1.0 if planned <= 0 else min(percent / planned, 1.0)


def planned_percent(task: Task, on: date) -> float:
    """Planned progress grows linearly from the start date (0 %) to the due date (100 %)."""
    if on >= task.due_date:
        return 100.0
    if on <= task.start_date:
        return 0.0
    span = (task.due_date - task.start_date).days
    return 100.0 * (on - task.start_date).days / span if span > 0 else 100.0


def evaluation_moment(month: Month, now: datetime, tz: ZoneInfo) -> datetime:
    """The exclusive cutoff: the month's end, or just after now while the month is still running."""
    return min(now + timedelta(microseconds=1), month.end_utc(tz))


def snapshots(
    s: Session,
    month: Month,
    now: datetime,
    tz: ZoneInfo,
    deadline_day: int,
    tasks: list | None = None,
    unit_id: int | None = None,
    preloaded: tuple[dict, dict] | None = None,
) -> list[TaskSnapshot]:
    """The state of each task in `month` (as of its end, or now): progress, plan, light.

    `preloaded` = (latest report per task, first day reported in the month per task), as
    year_reports() yields them, saves the two queries when many months are computed."""
    if tasks is None:  # the tasks of the month's campaign year
        tasks = queries.unit_tasks(s, unit_id, month.year) if unit_id is not None else queries.all_tasks(s, month.year)
    on, latest, first_days = _inputs(s, month, now, tz, unit_id, preloaded)
    tasks = queries.live(tasks, month.end_utc(tz))
    return [TaskSnapshot(*state) for state in _states(tasks, latest, first_days, month, on, deadline_day)]


def _inputs(s: Session, month: Month, now: datetime, tz: ZoneInfo, unit_id: int | None, preloaded):
    """The evaluation day, the latest report per task and the first day reported per task."""
    cutoff = evaluation_moment(month, now, tz)
    on = (cutoff - timedelta(microseconds=1)).astimezone(tz).date()
    if preloaded is not None:
        return (on, *preloaded)
    return on, queries.latest_reports_before(s, cutoff, unit_id), queries.month_report_days(s, month, cutoff, unit_id)


def _states(tasks, latest: dict, first_day_reported: dict, month: Month, on: date, deadline_day: int):
    """The rules behind snapshots() and ranking(), one plain tuple per task in TaskSnapshot's field
    order: a year's export goes through 200,000 of them, so no object is built per task here."""
    month_key, prev_key, last_day, prev_first = str(month), str(month.prev()), month.last_day, month.prev().first_day
    get_latest, get_day = latest.get, first_day_reported.get
    for t in tasks:
        rep = get_latest(t.id)
        percent = rep.percent if rep else 0
        day = get_day(t.id)
        done_before = rep is not None and percent >= 100 and rep.month < month_key
        planned = planned_percent(t, on)
        overdue = on > t.due_date and percent < 100
        if percent >= 100:
            light = GREEN
        elif overdue or ((rep is None or rep.month < prev_key) and t.start_date < prev_first):
            light = RED  # overdue, or stale: no report this month or last
        elif day is None or percent < planned:
            light = YELLOW
        else:
            light = GREEN
        yield (t, percent, day is not None, day is not None and day <= deadline_day, planned, overdue,
               t.start_date <= last_day and not done_before, light)


@dataclass
class UnitScore:
    unit: Unit
    active_tasks: int
    reported: int
    reported_on_time: int
    report_rate: float
    progress: float
    supervision: float
    items: int
    items_on_time: int
    overdue: int
    score: float
    last_report_at: datetime | None
    rank: int = 0
    tier: str = TIER_OK
    prev_rank: int | None = None
    lights: dict[str, int] = field(default_factory=dict)
    compared: bool = False  # last month's ranking was published: the trend compares with it

    @property
    def rated(self) -> bool:
        return self.rank > 0

    @property
    def trend(self) -> str:
        """较上月: against last month's published ranking only; "—" without one, 新 when not ranked in it."""
        if not self.compared:
            return "—"
        if self.prev_rank is None:
            return "新"
        if self.prev_rank > self.rank:
            return f"↑{self.prev_rank - self.rank}"
        if self.prev_rank < self.rank:
            return f"↓{self.rank - self.prev_rank}"
        return "—"


def year_reports(s: Session, months: list[Month], now: datetime, tz: ZoneInfo):
    """For consecutive months, yield (month, (latest per task, first day per task)) from one query:
    the same data snapshots() would load month by month. The `latest` dict is updated in place
    as the months advance: use it before asking for the next month."""
    if not months:
        return
    rows = queries.year_report_rows(s, evaluation_moment(months[-1], now, tz))
    latest: dict = {}
    i, n = 0, len(rows)
    for month in months:
        key = str(month)
        first_days: dict[int, int] = {}
        while i < n and rows[i][1] <= key:
            row = rows[i]
            latest[row[0]] = row  # the task's newest report so far (rows carry .percent and .month)
            if row[1] == key:
                day = first_days.get(row[0])
                if day is None or row[3] < day:
                    first_days[row[0]] = row[3]
            i += 1
        yield month, (latest, first_days)


def deadline_end(deadline: date, tz: ZoneInfo) -> datetime:
    """The moment a deadline day is over."""
    return local_midnight_utc(deadline + timedelta(days=1), tz)


def item_on_time(item, accepted, cutoff: datetime, tz: ZoneInfo, end: datetime | None = None) -> bool | None:
    """True answered on time, False late or missed, None not due yet and not done.

    `accepted` (queries.Accepted, or None): an item counts only once it is 办结, by the time of the
    answer that was accepted, against its deadline as (possibly) extended; an answer that was sent
    back does not count, nor one that came after `cutoff`. `end`: deadline_end(item.deadline), if
    the caller has it."""
    end = end if end is not None else deadline_end(item.deadline, tz)
    if accepted is not None and accepted.answered_at < cutoff:
        return accepted.answered_at < end
    return None if cutoff < end else False


def ranking(
    s: Session,
    month: Month,
    now: datetime,
    tz: ZoneInfo,
    deadline_day: int,
    weights: Weights,
    with_trend: bool = True,
    previous: list[UnitScore] | None = None,
    units: list[Unit] | None = None,
    tasks: list[Task] | None = None,
    preloaded: tuple[dict, dict] | None = None,
    prev_ranks: dict[int, int] | None = None,
) -> list[UnitScore]:
    """Score and rank every unit for `month`. The trend compares with `previous` (last month's
    ranking) or `prev_ranks` (unit id -> last month's rank) when given (digest.rank gives last
    month's published ranks); `with_trend` is kept for callers that say they want none.
    `units`/`tasks` may be passed in by a caller that ranks many months, so they are loaded once
    (anything with the fields scoring reads: queries.UnitName, queries.TaskDates)."""
    units = units if units is not None else queries.all_units(s)
    tasks = queries.live(tasks if tasks is not None else queries.all_tasks(s, month.year), month.end_utc(tz))  # the month's campaign year's
    on, latest, first_days = _inputs(s, month, now, tz, None, preloaded)
    # One pass over the active tasks: per unit [count, on time, reported, progress sum, overdue, lights].
    totals: dict[int, list] = {}
    for task, percent, reported, on_time, planned, overdue, active, light in _states(
            tasks, latest, first_days, month, on, deadline_day):
        if not active:
            continue
        t = totals.get(task.unit_id)
        if t is None:
            t = totals[task.unit_id] = [0, 0, 0, 0.0, 0, {GREEN: 0, YELLOW: 0, RED: 0}]
        t[0] += 1
        t[1] += on_time
        t[2] += reported
        t[3] += progress_ratio(percent, planned)
        t[4] += overdue
        t[5][light] += 1
    cutoff = evaluation_moment(month, now, tz)
    items_by_unit: dict[int, list[bool | None]] = defaultdict(list)
    deadline_ends: dict[date, datetime] = {}  # items share deadlines
    for it in queries.scored_items(s, month, month.end_utc(tz)):
        end = deadline_ends.get(it.deadline)
        if end is None:
            end = deadline_ends[it.deadline] = deadline_end(it.deadline, tz)
        items_by_unit[it.unit_id].append(item_on_time(it, it.accepted, cutoff, tz, end))
    last_report = queries.unit_last_report_times(s, month, cutoff)

    scores = []
    for u in units:
        n, on_time, reported, progress_sum, overdue, lights = totals.get(
            u.id, (0, 0, 0, 0.0, 0, {GREEN: 0, YELLOW: 0, RED: 0}))
        rate = on_time / n if n else 0.0
        progress = progress_sum / n if n else 0.0
        verdicts = items_by_unit.get(u.id, [])
        due = [v for v in verdicts if v is not None]
        sup = (sum(due) / len(due)) if due else 1.0
        score = weights.report * rate + weights.progress * progress + weights.supervision * sup
        score = max(0.0, score - weights.overdue_penalty * overdue)
        scores.append(
            UnitScore(
                unit=u,
                active_tasks=n,
                reported=reported,
                reported_on_time=on_time,
                report_rate=rate,
                progress=progress,
                supervision=sup,
                items=len(verdicts),
                items_on_time=sum(1 for v in verdicts if v),
                overdue=overdue,
                score=round(score, 1),
                last_report_at=last_report.get(u.id),
                lights=lights,
            )
        )
    far_future = datetime.max.replace(tzinfo=UTC)
    scores.sort(key=lambda x: (-x.score, -x.report_rate, x.last_report_at or far_future, x.unit.name))
    # A unit with no active task this month has nothing to be measured on: 不参评, listed after
    # the ranked units, never ranked (else it would score on supervision alone and could lead).
    rated = [sc for sc in scores if sc.active_tasks]
    unrated = sorted((sc for sc in scores if not sc.active_tasks), key=lambda x: x.unit.name)
    n = len(rated)
    k = int(n * 0.2 + 0.5)
    for i, sc in enumerate(rated):
        sc.rank = i + 1
        if sc.score < 60 or i >= n - k:
            sc.tier = TIER_LOW
        elif i < k:
            sc.tier = TIER_TOP
        else:
            sc.tier = TIER_OK
    for sc in unrated:
        sc.rank, sc.tier = 0, TIER_NONE
    scores = rated + unrated
    if previous is not None:
        prev_ranks = {p.unit.id: p.rank for p in previous if p.rank}
    if prev_ranks is not None and with_trend:
        for sc in scores:
            sc.prev_rank, sc.compared = prev_ranks.get(sc.unit.id), True
    return scores
