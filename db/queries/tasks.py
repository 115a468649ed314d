"""Tasks and their monthly reports (the hot path's statements are built once, here)."""
from __future__ import annotations

import re
from collections import namedtuple
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    bindparam,
    delete,
    func,
    insert,
)
from sqlmodel import Session, col, select

from db.models import (
    Report,
    Task,
    Unit,
)
from db.month import Month
from db.session import writes
from db.queries._shared import _plain, in_year

# ---------------------------------------------------------------- tasks


def unit_tasks(s: Session, unit_id: int, year: int | None = None) -> list[Task]:
    """The unit's tasks of `year` (None: the current campaign year's), as every task query here."""
    return sorted(s.exec(select(Task).where(Task.unit_id == unit_id, in_year(Task, year))),
                  key=lambda t: code_key(t.code))


def year_tasks(s: Session, year: int | None = None) -> list[Task]:
    """Every task of `year` (None: the current campaign year's) as ORM rows, for an import to update."""
    return list(s.exec(select(Task).where(in_year(Task, year))))


class TaskRow(NamedTuple):
    """A task as plain data, for computations over every task (ORM objects cost 10x to build)."""

    id: int
    code: str
    unit_id: int
    line: str
    content: str
    milestone: str
    leader_in_charge: str
    owner_userid: str
    start_date: date
    due_date: date
    voided_at: datetime | None = None  # 作废: out of the lists, and of the scores of the months it ended after
    void_reason: str = ""


def live(tasks: list, month_end: datetime) -> list:
    """The tasks (TaskRow, TaskDates or Task) that count in a month ending at `month_end`: those not
    作废, or 作废 only after it (a published month changes only through 更正)."""
    return [t for t in tasks if t.voided_at is None or t.voided_at >= month_end]


_TASK_ROWS = select(*(getattr(Task, f) for f in TaskRow._fields))


def all_tasks(s: Session, year: int | None = None) -> list[TaskRow]:
    return [TaskRow(*row) for row in _plain(s, _TASK_ROWS.where(in_year(Task, year)))]


_TASK_BY_CODE = _TASK_ROWS.where(Task.code == bindparam("code"), in_year(Task))


def get_task(s: Session, code: str) -> TaskRow | None:
    row = s.connection().execute(_TASK_BY_CODE, {"code": code}).first()
    return TaskRow(*row) if row else None


# A task about to be reported on: its row, and how many of its unit's other active tasks have no
# report in the month yet (after this report, the unit's count of tasks still to report).
# `month_version`: the task's latest report version in that month (0: none yet).
ReportTarget = namedtuple("ReportTarget", (*TaskRow._fields, "others_unreported", "month_version"))


def task_to_report(s: Session, code: str, month: Month):
    """The task with this code as ReportTarget, in one query, or as a batch read it ahead. Nothing
    is locked: two replicas reporting on one task at once would take the same version number, which
    the unique (task_id, month, version) refuses, and that message is handled again (add_report)."""
    ahead = s.info.get("targets")
    if ahead is not None and ahead[0] == (str(month), writes(s)) and code in ahead[1]:
        return ahead[1][code]
    row = s.connection().execute(_TASK_TO_REPORT, {"code": code, "month": str(month),
                                                    "last_day": month.last_day}).first()
    return ReportTarget(*row) if row else None


def read_ahead_targets(s: Session, codes: list[str], month: Month) -> None:
    """The ReportTargets of a batch's 汇报 in one query, for task_to_report while nothing else is
    written (a 作废, a 撤回); a report drops its own unit's (their counts and versions change)."""
    if len(set(codes)) > 1:
        stamp = (str(month), writes(s))
        rows = s.connection().execute(_TASKS_TO_REPORT, {"codes": sorted(set(codes)), "month": str(month),
                                                          "last_day": month.last_day})
        s.info["targets"] = (stamp, {row.code: ReportTarget(*row) for row in rows})


def example_codes(s: Session, userid: str, unit_id: int) -> dict[str, str]:
    """What the examples of help and of a format error name for this person: their own first task
    (else their unit's, else any), their unit if it has tasks and another unit that has (else the
    first two units with tasks). Empty values where the college has none."""
    rows = sorted(s.exec(select(Task.code, Task.unit_id, Task.owner_userid)), key=lambda r: code_key(r[0]))
    task = next((r for r in rows if r[2] == userid), None) or next((r for r in rows if r[1] == unit_id), None) \
        or (rows[0] if rows else None)
    with_tasks = {r[1] for r in rows}
    names = [u.name for u in s.exec(select(Unit).order_by(Unit.id)) if u.id in with_tasks]
    own = s.get(Unit, unit_id)
    if own is not None and own.name in names:
        names.remove(own.name)
        names.insert(0, own.name)
    return {"task": task[0] if task else "", "unit": names[0] if names else "",
            "unit2": names[1] if len(names) > 1 else ""}


def code_key(code: str) -> tuple:
    m = re.fullmatch(r"([A-Za-z]*)(\d+)", code)
    return (m.group(1), int(m.group(2)), "") if m else (code, 0, code)


def by_code(s: Session, model, code: str):
    """The task, problem, 督办 item or 亮点 (`model`) with this code in the current campaign year
    (亮点: in any year), 作废 or not."""
    q = select(model).where(model.code == code)
    return s.exec(q.where(in_year(model)) if hasattr(model, "year") else q).first()


def next_code(s: Session, model, prefix: str) -> str:
    """The next free code with this prefix in the current campaign year, e.g. T13 after T12
    (a model without a year, 亮点, counts over every year)."""
    numbers = [0]
    q = select(model.code).where(col(model.code).startswith(prefix))
    if hasattr(model, "year"):
        q = q.where(in_year(model))
    for code in s.exec(q):
        tail = code[len(prefix):]
        if tail.isdigit():
            numbers.append(int(tail))
    return f"{prefix}{max(numbers) + 1}"


# ---------------------------------------------------------------- reports


def latest_report(s: Session, task_id: int, month: Month | None = None) -> Report | None:
    q = select(Report).where(Report.task_id == task_id)
    if month is not None:
        q = q.where(Report.month == str(month))
    return s.exec(q.order_by(col(Report.id).desc()).limit(1)).first()


def last_report_id(s: Session, userid: str) -> int:
    """The id of the newest report `userid` made (0: none), to tell whether a form stored one."""
    return s.exec(select(func.max(Report.id)).where(Report.userid == userid)).one() or 0


class ReportRow(NamedTuple):
    """A report as add_report() wrote it (no ORM object: building one costs more than the insert)."""

    id: int | None  # (not read back: see add_report)
    task_id: int
    unit_id: int
    userid: str
    percent: int
    text: str
    created_at: datetime
    month: str
    local_day: int
    version: int
    supersedes_id: int | None
    entered_by: str = ""
    entered_at: datetime | None = None
    appeal_id: int | None = None


def add_report(
    s: Session,
    task: ReportTarget,
    userid: str,
    percent: int,
    text: str,
    now: datetime,
    tz: ZoneInfo,
    supersedes: Report | None = None,
    entered: dict | None = None,
) -> ReportRow:
    """Write the next version of the task's report for the month; earlier versions stay.

    `task` is read for the report's month (task_to_report), with that month's last version: this
    one is the next. Two replicas reporting on one task at once would both take the same one: the
    unique (task_id, month, version) refuses the second (IntegrityError), and its message is
    handled again after its batch commits. The INSERT needs no answer (the row's id is not read):
    on PostgreSQL, in pipeline(), it costs no round trip of its own.
    `entered`: for a 补录, {"entered_by", "entered_at", "appeal_id"} (`now` is then the report's real time)."""
    local_now = now.astimezone(tz)
    values = {"task_id": task.id, "unit_id": task.unit_id, "userid": userid, "percent": percent, "text": text,
              "created_at": now, "month": str(Month.of(local_now)), "local_day": local_now.day,
              "supersedes_id": supersedes.id if supersedes else None, "entered_by": "", "entered_at": None,
              "appeal_id": None, "version": task.month_version + 1, **(entered or {})}
    ahead = s.info.pop("targets", None)  # (read_ahead_targets) still good if nothing was written since
    good = ahead is not None and ahead[0][1] == writes(s)
    s.connection().execute(_ADD_REPORT, values)
    if good:  # but for this report's unit: its count and its task's version change
        s.info["targets"] = ((ahead[0][0], writes(s)), {c: t for c, t in ahead[1].items() if t.unit_id != task.unit_id})
    return ReportRow(id=None, **values)


# The hot path's statements are built once: building one costs far more than running it.
_ADD_REPORT = insert(Report).inline()  # (no RETURNING: nothing to wait for)


def _unreported(task):
    """`task` (a task table or alias) is active by the month's end (bind `last_day`), has no report
    in the month (bind `month`) and was not finished earlier: the rule of scoring.snapshots."""
    r, r2, latest = (Report.__table__.alias(n) for n in ("r", "r2", "latest"))
    reported = select(r.c.id).where(r.c.task_id == task.c.id, r.c.month == bindparam("month")).exists()
    last_id = select(func.max(r2.c.id)).where(r2.c.task_id == task.c.id).correlate(task).scalar_subquery()
    finished = select(latest.c.id).where(latest.c.id == last_id, latest.c.percent >= 100).exists()
    return (task.c.start_date <= bindparam("last_day")) & task.c.voided_at.is_(None) & ~reported & ~finished


def _task_to_report_statement(which):
    other = Task.__table__.alias("other")
    others = select(func.count()).select_from(other) \
        .where(other.c.unit_id == Task.unit_id, other.c.year == Task.year, other.c.id != Task.id, _unreported(other)) \
        .correlate(Task).scalar_subquery()
    version = select(func.coalesce(func.max(Report.version), 0)) \
        .where(Report.task_id == Task.id, Report.month == bindparam("month")).correlate(Task).scalar_subquery()
    return select(*(getattr(Task, f) for f in TaskRow._fields), others, version).where(which, in_year(Task))


# Built once: building these costs far more than running them.
_UNREPORTED = select(func.count()).select_from(Task.__table__) \
    .where(Task.unit_id == bindparam("unit_id"), in_year(Task), _unreported(Task.__table__))
_TASK_TO_REPORT = _task_to_report_statement(Task.code == bindparam("code"))
_TASKS_TO_REPORT = _task_to_report_statement(col(Task.code).in_(bindparam("codes", expanding=True)))


def unreported_count(s: Session, unit_id: int, month: Month) -> int:
    """How many of the unit's active tasks have no report in `month`: the same rule as
    scoring.snapshots (started by the month's end, not finished in an earlier month), in one query."""
    return s.connection().execute(_UNREPORTED, {"unit_id": unit_id, "month": str(month), "last_day": month.last_day}).scalar()


def open_task_codes(s: Session, userid: str, month: Month) -> list[str]:
    """The codes of the person's own tasks that are open in `month`: started by its end and not
    finished (their latest report is under 100 %)."""
    tasks = s.exec(select(Task.id, Task.code).where(Task.owner_userid == userid, Task.start_date <= month.last_day,
                                                    in_year(Task),
                                                    col(Task.voided_at).is_(None)))
    codes = []
    for task_id, code in tasks:
        last = latest_report(s, task_id)
        if last is None or last.percent < 100:
            codes.append(code)
    return sorted(codes, key=code_key)


def reports_after(s: Session, task_id: int, moment: datetime) -> list[Report]:
    """The task's reports timed after `moment` (a 补录 must not come before one: the newest by id counts)."""
    return list(s.exec(select(Report).where(Report.task_id == task_id, Report.created_at > moment)
                       .order_by(Report.id)))


def withdraw_report(s: Session, report_id: int) -> None:
    """撤回: the person's own latest version, gone as if never sent (the one before counts again)."""
    s.exec(delete(Report).where(Report.id == report_id))  # type: ignore[call-overload]


def report_history(s: Session, task_id: int) -> list[Report]:
    return list(s.exec(select(Report).where(Report.task_id == task_id).order_by(Report.id)))


class LatestReport(NamedTuple):
    percent: int
    month: str


def latest_reports_before(s: Session, cutoff: datetime, unit_id: int | None = None) -> dict[int, LatestReport]:
    """The newest report of every task made before `cutoff` (plain rows: this runs over every task)."""
    newest = select(func.max(Report.id)).where(Report.created_at < cutoff)
    if unit_id is not None:
        newest = newest.where(Report.unit_id == unit_id)
    newest = newest.group_by(Report.task_id)
    rows = _plain(
        s, select(Report.task_id, Report.percent, Report.month).where(col(Report.id).in_(newest.scalar_subquery()))
    )
    return {tid: LatestReport(pct, month) for tid, pct, month in rows}


def year_report_rows(s: Session, cutoff: datetime) -> list:
    """Every report before cutoff as a plain row (task_id, month, percent, local_day), in the order
    the reports were made within each month and task: one pass serves a whole year's rankings.
    (Grouping here in SQL costs more than it saves: the database has to hash 200,000 rows too.)"""
    q = (
        select(Report.task_id, Report.month, Report.percent, Report.local_day)
        .where(Report.created_at < cutoff)
        .order_by(Report.month, Report.task_id, Report.id)
    )
    return _plain(s, q)


def month_report_days(s: Session, month: Month, cutoff: datetime, unit_id: int | None = None) -> dict[int, int]:
    """task_id -> the earliest local day of the month it was reported on (reports before cutoff)."""
    q = select(Report.task_id, func.min(Report.local_day)).where(
        Report.month == str(month), Report.created_at < cutoff
    )
    if unit_id is not None:
        q = q.where(Report.unit_id == unit_id)
    return dict(_plain(s, q.group_by(Report.task_id)))


def unit_last_report_times(s: Session, month: Month, cutoff: datetime) -> dict[int, datetime]:
    """unit_id -> the time of the unit's last report in the month (before cutoff)."""
    q = (
        select(Report.unit_id, func.max(Report.created_at))
        .where(Report.month == str(month), Report.created_at < cutoff)
        .group_by(Report.unit_id)
    )
    return dict(_plain(s, q))
