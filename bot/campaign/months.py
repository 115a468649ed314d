"""Finished months' scores, counted once and kept in the database (MonthFigures), and the running
month's ranking counted from where the last finished month ended.

A month's ranking (scoring.ranking) takes the tasks, the newest report of each task as of the
month's end, the month's own reports and the 督办 items due in the month. Once the month is over its
reports stay as they are (a report is never changed, and one made now belongs to the running
month), so its scores change only when the tasks or units are imported again, an item due in it is
办结 late or its deadline moves, or the ranking settings change. The kept figures carry digests of
those inputs and are counted again when one differs. The settings and the reports are checked at
every use (a report added afterwards but timed before the month's end, as with a clock set back,
makes them stale); the tasks, units and items, which take a pass over every row, at most every
CHECK_EVERY, by whichever process comes first.

The counting is the scheduler's (keep(), every minute: jobs/__init__.py): it counts the running
month's ranking so far, checks the kept months when due and counts those that changed or ended.
A page (bot/web/pages.py) calls finished() and so_far() too, but takes what is kept while it is
recent enough (the ranking so far KEPT_FOR, the checks CHECK_EVERY + KEPT_FOR) and counts in the
request only when nothing usable is kept: a fresh database, the first minute after a month ends
(before the scheduler's run), or no scheduler running.

Each kept month also holds the newest report of every task at its end (`carry`): the next month
starts from it and adds its own reports, instead of going through a year of reports. This relies on
what add_report writes: a report's `month` is the local month of its `created_at`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.campaign import digest, release, scoring, years
from bot.campaign.scoring import UnitScore
from db import queries
from db.month import Month

log = logging.getLogger("duban.months")

# Part of the settings digest: bump it when the scoring rules change, and kept months are counted again.
FIGURES_VERSION = "1"
# A month is kept once it ended this long ago: a report made before its end may still be on its way
# (its transaction not yet committed) for a moment after; until then it is counted like the running one.
SETTLE = timedelta(minutes=10)
# How long kept months are trusted after their tasks, units and items were last found unchanged.
CHECK_EVERY = timedelta(minutes=10)
TREND_MONTHS = 12  # 总览's trend: the running month and the eleven before it
KEEP_EVERY = timedelta(minutes=1)  # the scheduler's keep(): the running month's ranking counted again
# keep() leaves the ranking so far alone when another process (a replica's scheduler) kept it this recently
KEPT_BY_ANOTHER = timedelta(seconds=45)
# A page serves the kept ranking so far while it is younger than this, and the kept months while they
# were checked less than CHECK_EVERY + KEPT_FOR ago: with the scheduler running they always are; past
# that (no scheduler, or it is stuck), the page counts in the request, as it did before the scheduler.
KEPT_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class Figures:
    """A finished month's rated units (those with active tasks) in ranking order: their ids, scores
    and on-time report rates. A unit's rank is its place in the list."""

    units: list[int]
    scores: list[float]
    rates: list[float]

    @classmethod
    def of(cls, ranking: list[UnitScore]) -> Figures:
        rated = [sc for sc in ranking if sc.rated]
        return cls([sc.unit.id for sc in rated], [sc.score for sc in rated], [sc.report_rate for sc in rated])

    def dump(self) -> str:
        return json.dumps({"unit": self.units, "score": self.scores, "rate": self.rates}, separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> Figures:
        data = json.loads(text)
        return cls(data["unit"], data["score"], data["rate"])

    def point(self, unit_ids: set[int] | None) -> tuple[float | None, float | None]:
        """(score, on-time report rate in %): the mean over these units (None: every rated unit)."""
        rows = [i for i, unit_id in enumerate(self.units) if unit_ids is None or unit_id in unit_ids]
        if not rows:
            return None, None
        return (sum(self.scores[i] for i in rows) / len(rows), 100 * sum(self.rates[i] for i in rows) / len(rows))


class Inputs:
    """The units and the tasks of one campaign year, read at most once by what one page counts."""

    def __init__(self, s: Session, year: int):
        self._s, self._year, self._units, self._tasks = s, year, None, None

    @property
    def units(self) -> list[queries.UnitName]:
        if self._units is None:
            self._units = queries.unit_names(self._s)
        return self._units

    @property
    def tasks(self) -> list[queries.TaskDates]:
        if self._tasks is None:
            self._tasks = queries.task_dates(self._s, self._year)
        return self._tasks


@dataclass
class Finished:
    figures: dict[Month, Figures]  # consecutive finished months
    carry: dict | None = None  # the newest report per task (queries.Latest) at the end of the last of
    # them, when counted (else read from the last one's kept figures when needed: running())
    kept_last: tuple | None = None  # (month, computed_at) of the last one's kept figures, if read
    counted: bool = False  # some of them were counted now (not all read back as kept)
    unsettled: frozenset = frozenset()  # those read back as kept provisionally (their carry is not read)


def finished(s: Session, app, months: list[Month], now: datetime, inputs: Inputs | None = None,
             previous: Finished | None = None, check_every: timedelta = CHECK_EVERY,
             provisional: bool = False) -> Finished:
    """The figures of consecutive finished months: from the database while their inputs are
    unchanged (checked when the last check is `check_every` old), else counted (from the end of the
    month before) and kept. `app` gives the settings and, to keep months, app.session(); `previous`,
    what this process read before, lends its carry when the last month's kept figures are the same.

    A month counted before it settled (SETTLE after its end) is kept too, but provisionally: only a
    reader that says `provisional` (a page) takes it; counting (the scheduler's keep()) counts it
    again until it is kept settled."""
    config = app.config
    tz = config.schedule.tz
    mark = queries.report_mark(s)  # first: what is read next includes at least the reports up to it
    settings = _settings(config)
    kept = {Month.parse(k.month): k for k in queries.kept_months(s, [str(m) for m in months])}
    earliest = {mark_: queries.earliest_report_after(s, mark_) for mark_ in {k.report_mark for k in kept.values()}}
    kept = {m: k for m, k in kept.items() if k.settings == settings
            and (earliest[k.report_mark] is None or earliest[k.report_mark] >= m.end_utc(tz))}
    settled = {m: k for m, k in kept.items() if k.computed_at >= m.end_utc(tz) + SETTLE}
    usable = kept if provisional else settled
    if months and len(usable) == len(months) and all(timedelta(0) <= now - k.checked_at < check_every
                                                     for k in usable.values()):
        return _reuse(Finished({m: Figures.load(usable[m].units) for m in months},
                               unsettled=frozenset(m for m in months if m not in settled)), usable, months, previous)
    kept = settled
    if not months:
        return Finished({})
    inputs = inputs or Inputs(s, months[0].year)
    units, tasks = inputs.units, inputs.tasks
    digests = _digests(s, months, units, tasks)
    out = {m: Figures.load(k.units) for m, k in kept.items() if k.inputs == digests[m]}
    checked = [str(m) for m in out]
    fresh: list[dict] = []
    carry: dict | None = None  # the newest report per task before the month being counted
    for m in months:
        if m in out:
            carry = None
            continue
        if carry is None:
            carry = _carry_before(s, m, tz, m.prev() in out)
        latest, first_days = _month(s, m, now, tz, carry)
        out[m] = Figures.of(scoring.ranking(s, m, now, tz, config.schedule.report_deadline_day,
                                            digest.weights(config), with_trend=False, units=units, tasks=tasks,
                                            preloaded=(latest, first_days)))
        # kept settled once SETTLE has passed since its end, provisionally before (computed_at tells)
        fresh.append({"month": str(m), "settings": settings, "inputs": digests[m], "report_mark": mark,
                      "checked_at": now, "units": out[m].dump(), "carry": _dump_carry(latest),
                      "computed_at": now})
        carry = latest
    if fresh or checked:
        try:
            with app.session() as w:
                queries.keep_months(w, fresh, checked, mark, now)
        except Exception:  # they are counted again next time
            log.warning("keeping the figures of %s failed", ", ".join(r["month"] for r in fresh), exc_info=True)
    if carry is not None:
        return Finished(out, carry, counted=True)
    return _reuse(Finished(out, counted=bool(fresh)), kept, months, previous)


def _reuse(done: Finished, kept: dict, months: list[Month], previous: Finished | None) -> Finished:
    """`done`, read from the kept months, with the carry `previous` had of the same kept last month."""
    if months and months[-1] in kept:
        done.kept_last = (months[-1], kept[months[-1]].computed_at)
        if previous is not None and previous.kept_last == done.kept_last:
            done.carry = previous.carry
    return done


def trend(s: Session, config, month: Month) -> list[Month]:
    """总览's trend: up to TREND_MONTHS months ending with `month`, the running one, none before
    its campaign year's first month (years.first_month)."""
    first = years.first_month(s, config, month.year)
    out = [month]
    while len(out) < TREND_MONTHS and out[0].prev() >= first:
        out.insert(0, out[0].prev())
    return out


def keep(app, now: datetime) -> bool:
    """The scheduler's, every KEEP_EVERY (jobs/__init__.py): count the running month's ranking so far
    and keep it, with the trend's finished months checked when due and counted when they changed or
    ended (finished()), so that the pages read them. False: nothing counted, for there are no units
    yet, or another process (a replica) kept the ranking so far less than KEPT_BY_ANOTHER ago."""
    with Session(app.engine) as s:
        months = trend(s, app.config, Month.of(now.astimezone(app.config.schedule.tz)))
        kept = queries.so_far_at(s, str(months[-1]))
        if kept is not None and kept[1] == _settings(app.config) and timedelta(0) <= now - kept[0] < KEPT_BY_ANOTHER:
            return False
        inputs = Inputs(s, months[-1].year)
        if not inputs.units:
            return False
        done = finished(s, app, months[:-1], now, inputs)
        so_far(s, app, months[-1], now, done, timedelta(0), inputs)
    return True


def so_far(s: Session, app, month: Month, now: datetime, before: Finished, fresh_for: timedelta,
           inputs: Inputs | None = None) -> tuple[datetime, list]:
    """(when counted, the ranking of the running `month` so far): the one kept in the database if
    it was counted less than `fresh_for` ago with these settings (release.thaw's, read like the live
    one), else counted now (running()) and kept for every process (timedelta(0): counted now)."""
    kept, settings = queries.so_far_at(s, str(month)), _settings(app.config)
    if kept is not None and kept[1] == settings and timedelta(0) <= now - kept[0] < fresh_for:
        data = queries.so_far(s, str(month))
        if data is not None:
            return kept[0], release.thaw(data)
    ranking = running(s, app, month, now, before, inputs)
    try:
        with app.session() as w:
            queries.keep_so_far(w, str(month), settings, release.freeze(ranking), now)
    except Exception:  # it is counted again next time
        log.warning("keeping the ranking of %s so far failed", month, exc_info=True)
    return now, ranking


def running(s: Session, app, month: Month, now: datetime, before: Finished,
            inputs: Inputs | None = None) -> list[UnitScore]:
    """The ranking of `month` so far (scoring.ranking's), counted from the end of `before` (the
    months up to the one before it), with last month's published ranks for its trend."""
    config = app.config
    tz = config.schedule.tz
    inputs = inputs or Inputs(s, month.year)
    units, tasks = inputs.units, inputs.tasks
    if before.carry is None:  # kept with the month before; read once, then held with `before`
        before.carry = _carry_before(s, month, tz, month.prev() in before.figures
                                     and month.prev() not in before.unsettled)
    latest, first_days = _month(s, month, now, tz, before.carry)
    return scoring.ranking(s, month, now, tz, config.schedule.report_deadline_day, digest.weights(config),
                           units=units, tasks=tasks, preloaded=(latest, first_days),
                           prev_ranks=release.published_ranks(s, month.prev()))


def _carry_before(s: Session, m: Month, tz, kept: bool) -> dict:
    """The newest report per task made before `m` began: kept with the month before, else counted."""
    text = queries.kept_carry(s, str(m.prev())) if kept else None
    return _load_carry(text) if text else queries.latest_reports_with_ids(s, m.start_utc(tz))


def _month(s: Session, m: Month, now: datetime, tz, carry: dict) -> tuple[dict, dict]:
    """What scoring.ranking would load for `m` (the newest report per task at its evaluation moment,
    the first day each task was reported on in it), from `carry` and the month's own reports."""
    rows = queries.reports_between(s, m.start_utc(tz), scoring.evaluation_moment(m, now, tz))
    return _advance(carry, rows, str(m))


def _advance(carry: dict, rows: list, month: str) -> tuple[dict, dict]:
    """The newest report per task after `rows` (id, task_id, percent, month, local_day: reports made
    since `carry`), and the first day each task was reported on in `month`."""
    latest, first_days = dict(carry), {}
    Latest, get, first = queries.Latest, latest.get, first_days.get
    for rid, task_id, percent, row_month, day in rows:
        was = get(task_id)
        if was is None or rid > was.id:
            latest[task_id] = Latest(rid, percent, row_month)
        if row_month == month:
            d = first(task_id)
            if d is None or day < d:
                first_days[task_id] = day
    return latest, first_days


def _dump_carry(latest: dict) -> str:
    tasks = list(latest)
    return json.dumps({"task": tasks, "id": [latest[t].id for t in tasks],
                       "percent": [latest[t].percent for t in tasks], "month": [latest[t].month for t in tasks]},
                      separators=(",", ":"))


def _load_carry(text: str) -> dict:
    data = json.loads(text)
    return dict(zip(data["task"], map(queries.Latest, data["id"], data["percent"], data["month"])))


def _settings(config) -> str:
    r, schedule = config.ranking, config.schedule
    return hashlib.blake2b(repr((FIGURES_VERSION, schedule.timezone, schedule.report_deadline_day, r.weight_report,
                                 r.weight_progress, r.weight_supervision, r.overdue_penalty)).encode(),
                           digest_size=20).hexdigest()


def _digests(s: Session, months: list[Month], units: list, tasks: list) -> dict[Month, str]:
    """Per finished month, a digest of what its scores take besides its reports and the settings:
    the units (names order ties), the tasks started by the month's end and the items due in it."""
    if not months:
        return {}
    acc = hashlib.blake2b("\n".join(f"{u.id}\t{u.name}" for u in units).encode(), digest_size=20)
    items: dict[str, list] = {}
    rows = queries.items_due_raw(s, months[0].first_day, months[-1].next().first_day)
    if rows and not isinstance(rows[0][2], str):  # PostgreSQL: dates and times, as SQLite's text would be
        rows = [(i, u, d.isoformat(), a and a.timestamp(), c and c.timestamp()) for i, u, d, a, c in rows]
    for row in rows:
        items.setdefault(row[2][:7], []).append(tuple(row))
    # The tasks by start date: a month takes those started by its last day, the ones before and more.
    ordered = sorted((t.start_date.toordinal(), t.id, t.unit_id, t.due_date.toordinal()) for t in tasks)
    starts = [t[0] for t in ordered]
    flat = memoryview(array("q", [v for t in ordered for v in t]))
    out, done = {}, 0
    for m in months:
        k = bisect_right(starts, m.last_day.toordinal())
        acc.update(flat[4 * done:4 * k])
        done = k
        month = acc.copy()
        month.update(repr(items.get(str(m), [])).encode())
        out[m] = month.hexdigest()
    return out
