"""Finished months' figures and the running month's ranking, kept for the pages (bot/campaign/months.py)."""
from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import (
    String,
    delete,
    func,
    type_coerce,
    update,
)
from sqlmodel import Session, col, select

from db.models import (
    MonthFigures,
    RankingSoFar,
    Report,
    SupervisionItem,
    Task,
    Unit,
)
from db.queries._shared import _insert, _plain

# ---------------------------------------------------------------- finished months kept (bot/campaign/months.py)


class UnitName(NamedTuple):
    """A unit as the rankings show it (plain data: a page ranks 2,000 of them)."""

    id: int
    name: str
    leader_userid: str


def unit_names(s: Session) -> list[UnitName]:
    """Every unit, by name (as all_units)."""
    return [UnitName(*row) for row in _plain(s, select(Unit.id, Unit.name, Unit.leader_userid).order_by(Unit.name))]


class TaskDates(NamedTuple):
    """What scoring needs of a task."""

    id: int
    unit_id: int
    start_date: date
    due_date: date
    voided_at: datetime | None


def task_dates(s: Session, year: int) -> list[TaskDates]:
    """The tasks of campaign `year`: those its months are scored on (作废 ones with when)."""
    return [TaskDates(*row) for row in _plain(s, select(Task.id, Task.unit_id, Task.start_date, Task.due_date,
                                                        Task.voided_at).where(Task.year == year))]


class Latest(NamedTuple):
    """A task's newest report: its id decides which is newest."""

    id: int
    percent: int
    month: str


def latest_reports_with_ids(s: Session, cutoff: datetime) -> dict[int, Latest]:
    """latest_reports_before(), with the reports' ids."""
    newest = select(func.max(Report.id)).where(Report.created_at < cutoff).group_by(Report.task_id)
    rows = _plain(s, select(Report.task_id, Report.id, Report.percent, Report.month)
                  .where(col(Report.id).in_(newest.scalar_subquery())))
    return {tid: Latest(rid, pct, month) for tid, rid, pct, month in rows}


def reports_between(s: Session, start: datetime, cutoff: datetime) -> list:
    """The reports made from `start` until before `cutoff` as plain rows (id, task_id, percent,
    month, local_day)."""
    q = (select(Report.id, Report.task_id, Report.percent, Report.month, Report.local_day)
         .where(Report.created_at >= start, Report.created_at < cutoff))
    return _plain(s, q)


def report_mark(s: Session) -> int:
    """The newest report's id (0 without reports)."""
    return s.connection().execute(select(func.max(Report.id))).scalar() or 0


def earliest_report_after(s: Session, mark: int) -> datetime | None:
    """The earliest time among the reports with an id above `mark`. (Through a subquery in id
    order: asked directly, SQLite and PostgreSQL walk the whole created_at index instead.)"""
    since = select(Report.created_at.label("t")).where(Report.id > mark).order_by(Report.id).subquery()
    return s.connection().execute(select(func.min(since.c.t))).scalar()


def items_due_raw(s: Session, first_day: date, before: date) -> list:
    """The 督办 items due from `first_day` until before `before`: (id, unit_id, deadline, answered_at,
    closed_at) as the driver gives them (text on SQLite), by id: what a month's scores take of them."""
    q = (select(SupervisionItem.id, SupervisionItem.unit_id,
                *(type_coerce(c, String) for c in (SupervisionItem.deadline, SupervisionItem.answered_at,
                                                  SupervisionItem.closed_at)))
         .where(SupervisionItem.deadline >= first_day, SupervisionItem.deadline < before,
                SupervisionItem.year == first_day.year).order_by(SupervisionItem.id))
    return _plain(s, q)


class Kept(NamedTuple):
    month: str
    settings: str
    inputs: str
    report_mark: int
    checked_at: datetime
    computed_at: datetime
    units: str


def kept_months(s: Session, months: list[str]) -> list[Kept]:
    """The kept months among `months` (without their carry)."""
    q = select(*(getattr(MonthFigures, f) for f in Kept._fields)).where(col(MonthFigures.month).in_(months))
    return [Kept(*row) for row in s.exec(q)]


def kept_carry(s: Session, month: str) -> str | None:
    return s.connection().execute(select(MonthFigures.carry).where(MonthFigures.month == month)).scalar()


def keep_months(s: Session, rows: list[dict], checked: list[str], mark: int, now: datetime) -> None:
    """Store (or replace) months' figures; the `checked` ones were found unchanged up to report
    `mark` at `now`."""
    _upsert(s, MonthFigures, rows)
    if checked:
        s.exec(update(MonthFigures).where(col(MonthFigures.month).in_(checked))
               .values(report_mark=mark, checked_at=now))


def so_far_at(s: Session, month: str) -> tuple[datetime, str] | None:
    """(when, with what settings) the running month's ranking so far was last kept."""
    row = s.connection().execute(select(RankingSoFar.computed_at, RankingSoFar.settings)
                                 .where(RankingSoFar.month == month)).first()
    return (row[0], row[1]) if row else None


def so_far(s: Session, month: str) -> str | None:
    return s.connection().execute(select(RankingSoFar.data).where(RankingSoFar.month == month)).scalar()


def keep_so_far(s: Session, month: str, settings: str, data: str, now: datetime) -> None:
    """Keep the running month's ranking so far (the months before go: they are finished)."""
    _upsert(s, RankingSoFar, [{"month": month, "settings": settings, "data": data, "computed_at": now}])
    s.exec(delete(RankingSoFar).where(RankingSoFar.month != month))


def _upsert(s: Session, model, rows: list[dict]) -> None:
    """Insert rows, replacing those with the same primary key (two processes may write at once)."""
    if not rows:
        return
    table = model.__table__
    stmt = _insert(s, model)
    keys = [c.name for c in table.primary_key.columns]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    s.connection().execute(stmt, rows)
