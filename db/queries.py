"""Small query functions. Handlers and jobs read and write only through these."""
from __future__ import annotations

import json
import re
from collections import namedtuple
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import String, bindparam, delete, func, insert, literal, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.month import Month
from db.models import (
    ATTACH_FETCHING,
    ATTACH_HELD,
    ATTACH_PENDING,
    ROLE_ADMIN,
    ROLE_OVERSEER,
    AttachIntent,
    Attachment,
    Highlight,
    ITEM_ANSWERED,
    PROGRESS_ASK,
    PROGRESS_NOTE,
    ITEM_DONE,
    EVENT_FEEDBACK,
    ItemEvent,
    JobRun,
    LeaderUnit,
    Member,
    MonthFigures,
    RankingSoFar,
    Outbox,
    Problem,
    ProblemProgress,
    ProcessedMessage,
    Report,
    ReviewComment,
    SupervisionItem,
    Task,
    Unit,
    WebLink,
)


def _plain(s: Session, stmt, **params) -> list:
    """Run a column query on the session's connection, past the ORM layer: plain row tuples, at a
    third of the cost per row (bulk reads of a year's reports go through here)."""
    return s.connection().execute(stmt, params).all()


# ---------------------------------------------------------------- units, members


def get_member(s: Session, userid: str) -> Member | None:
    return s.get(Member, userid)


def all_units(s: Session) -> list[Unit]:
    return list(s.exec(select(Unit).order_by(Unit.name)))


def find_unit(s: Session, name: str) -> Unit | None:
    """Exact name, else the single unit whose name contains `name`."""
    name = name.strip()
    if not name:
        return None
    unit = s.exec(select(Unit).where(Unit.name == name)).first()
    if unit:
        return unit
    hits = list(s.exec(select(Unit).where(col(Unit.name).contains(name)).limit(2)))
    return hits[0] if len(hits) == 1 else None


def members_by_id(s: Session) -> dict[str, Member]:
    return {m.userid: m for m in s.exec(select(Member))}


def admins(s: Session) -> list[Member]:
    return list(s.exec(select(Member).where(Member.role == ROLE_ADMIN).order_by(Member.userid)))


# A 责任领导 cell may name several people: 李明、王强 / 李明,王强.
LEADER_SEPARATORS = re.compile(r"[、,，;；/\s]+")


def leader_names(cell: str) -> list[str]:
    return [x for x in LEADER_SEPARATORS.split(cell) if x]


def oversight(s: Session, leaders: list[Member]) -> dict[str, set[int]]:
    """userid -> the ids of the units each of these 分管领导 is over: the roster's 分管单位 (LeaderUnit),
    and the unit of every task whose 责任领导 names their userid or their name. Computed when asked,
    so a task added or changed (新增任务 … 责任领导=…, a new import) counts at once."""
    out: dict[str, set[int]] = {m.userid: set() for m in leaders}
    if not out:
        return out
    for userid, unit_id in _plain(s, select(LeaderUnit.userid, LeaderUnit.unit_id)
                                  .where(col(LeaderUnit.userid).in_(list(out)))):
        out[userid].add(unit_id)
    by_word: dict[str, list[str]] = {}
    for m in leaders:
        by_word.setdefault(m.userid, []).append(m.userid)
        by_word.setdefault(m.name, []).append(m.userid)
    for cell, unit_id in _plain(s, select(Task.leader_in_charge, Task.unit_id).distinct()
                                .where(Task.leader_in_charge != "")):
        for word in leader_names(cell):
            for userid in by_word.get(word, ()):
                out[userid].add(unit_id)
    return out


def overseen_units(s: Session, member: Member) -> set[int]:
    """The units a 分管领导 is over (none for anyone else)."""
    return oversight(s, [member])[member.userid] if member.role == ROLE_OVERSEER else set()


def overseers(s: Session) -> dict[int, list[Member]]:
    """unit id -> the 分管领导 over it."""
    leaders = list(s.exec(select(Member).where(Member.role == ROLE_OVERSEER).order_by(Member.userid)))
    by_id = {m.userid: m for m in leaders}
    out: dict[int, list[Member]] = {}
    for userid, units in oversight(s, leaders).items():
        for unit_id in units:
            out.setdefault(unit_id, []).append(by_id[userid])
    return out


def leader_units(s: Session) -> dict[str, set[int]]:
    """userid -> unit ids of the roster's 分管单位 (LeaderUnit rows only)."""
    out: dict[str, set[int]] = {}
    for userid, unit_id in _plain(s, select(LeaderUnit.userid, LeaderUnit.unit_id)):
        out.setdefault(userid, set()).add(unit_id)
    return out


def set_leader_units(s: Session, userid: str, unit_ids: set[int]) -> None:
    """Replace the person's 分管单位 with these."""
    s.exec(delete(LeaderUnit).where(LeaderUnit.userid == userid))  # type: ignore[call-overload]
    s.add_all(LeaderUnit(userid=userid, unit_id=u) for u in sorted(unit_ids))


# ---------------------------------------------------------------- tasks


def unit_tasks(s: Session, unit_id: int) -> list[Task]:
    return sorted(s.exec(select(Task).where(Task.unit_id == unit_id)), key=lambda t: code_key(t.code))


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


_TASK_ROWS = select(*(getattr(Task, f) for f in TaskRow._fields))


def all_tasks(s: Session) -> list[TaskRow]:
    return [TaskRow(*row) for row in _plain(s, _TASK_ROWS)]


_TASK_BY_CODE = _TASK_ROWS.where(Task.code == bindparam("code"))


def get_task(s: Session, code: str) -> TaskRow | None:
    row = s.connection().execute(_TASK_BY_CODE, {"code": code}).first()
    return TaskRow(*row) if row else None


# A task about to be reported on: its row, and how many of its unit's other active tasks have no
# report in the month yet (after this report, the unit's count of tasks still to report).
ReportTarget = namedtuple("ReportTarget", (*TaskRow._fields, "others_unreported"))


def task_to_report(s: Session, code: str, month: Month):
    """The task with this code as ReportTarget, in one query. Nothing is locked: two replicas
    reporting on one task at once would take the same version number, which the unique
    (task_id, month, version) refuses, and that message is handled again (add_report)."""
    row = s.connection().execute(_TASK_TO_REPORT, {"code": code, "month": str(month),
                                                    "last_day": month.last_day}).first()
    return ReportTarget(*row) if row else None


def code_key(code: str) -> tuple:
    m = re.fullmatch(r"([A-Za-z]*)(\d+)", code)
    return (m.group(1), int(m.group(2)), "") if m else (code, 0, code)


def next_code(s: Session, model, prefix: str) -> str:
    """The next free code with this prefix, e.g. T13 after T12."""
    numbers = [0]
    for code in s.exec(select(model.code).where(col(model.code).startswith(prefix))):
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


class ReportRow(NamedTuple):
    """A report as add_report() wrote it (no ORM object: building one costs more than the insert)."""

    id: int
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


def add_report(
    s: Session,
    task: TaskRow,
    userid: str,
    percent: int,
    text: str,
    now: datetime,
    tz: ZoneInfo,
    supersedes: Report | None = None,
) -> ReportRow:
    """Write the next version of the task's report for the month; earlier versions stay.

    The version is the month's last plus one, taken in the INSERT itself. Two replicas reporting on
    one task at once would both take the same one: the unique (task_id, month, version) refuses
    the second (IntegrityError), and its message is handled again after its batch commits."""
    local_now = now.astimezone(tz)
    values = {"task_id": task.id, "unit_id": task.unit_id, "userid": userid, "percent": percent, "text": text,
              "created_at": now, "month": str(Month.of(local_now)), "local_day": local_now.day,
              "supersedes_id": supersedes.id if supersedes else None}
    report_id, version = s.connection().execute(_INSERT_REPORT, values).one()
    return ReportRow(id=report_id, version=version, **values)


def _insert_report_statement():
    """INSERT … SELECT: the version is the month's last one plus one, taken in the same statement."""
    given = [c for c in Report.__table__.c if c.name not in ("id", "version")]
    version = func.coalesce(func.max(Report.version), 0) + 1
    latest = select(*(bindparam(c.name, type_=c.type) for c in given), version) \
        .where(Report.task_id == bindparam("task_id"), Report.month == bindparam("month"))
    return insert(Report).from_select([*given, Report.__table__.c.version], latest) \
        .returning(Report.id, Report.version)


# The hot path's statements are built once: building one costs far more than running it.
_INSERT_REPORT = _insert_report_statement()


def _unreported(task):
    """`task` (a task table or alias) is active by the month's end (bind `last_day`), has no report
    in the month (bind `month`) and was not finished earlier: the rule of scoring.snapshots."""
    r, r2, latest = (Report.__table__.alias(n) for n in ("r", "r2", "latest"))
    reported = select(r.c.id).where(r.c.task_id == task.c.id, r.c.month == bindparam("month")).exists()
    last_id = select(func.max(r2.c.id)).where(r2.c.task_id == task.c.id).correlate(task).scalar_subquery()
    finished = select(latest.c.id).where(latest.c.id == last_id, latest.c.percent >= 100).exists()
    return (task.c.start_date <= bindparam("last_day")) & ~reported & ~finished


def _task_to_report_statement():
    other = Task.__table__.alias("other")
    others = select(func.count()).select_from(other) \
        .where(other.c.unit_id == Task.unit_id, other.c.id != Task.id, _unreported(other)) \
        .correlate(Task).scalar_subquery()
    return select(*(getattr(Task, f) for f in TaskRow._fields), others) \
        .where(Task.code == bindparam("code"))


# Built once: building these costs far more than running them.
_UNREPORTED = select(func.count()).select_from(Task.__table__) \
    .where(Task.unit_id == bindparam("unit_id"), _unreported(Task.__table__))
_TASK_TO_REPORT = _task_to_report_statement()


def unreported_count(s: Session, unit_id: int, month: Month) -> int:
    """How many of the unit's active tasks have no report in `month`: the same rule as
    scoring.snapshots (started by the month's end, not finished in an earlier month), in one query."""
    return s.connection().execute(_UNREPORTED, {"unit_id": unit_id, "month": str(month), "last_day": month.last_day}).scalar()


def open_task_codes(s: Session, userid: str, month: Month) -> list[str]:
    """The codes of the person's own tasks that are open in `month`: started by its end and not
    finished (their latest report is under 100 %)."""
    tasks = s.exec(select(Task.id, Task.code).where(Task.owner_userid == userid, Task.start_date <= month.last_day))
    codes = []
    for task_id, code in tasks:
        last = latest_report(s, task_id)
        if last is None or last.percent < 100:
            codes.append(code)
    return sorted(codes, key=code_key)


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


def task_dates(s: Session) -> list[TaskDates]:
    return [TaskDates(*row) for row in _plain(s, select(Task.id, Task.unit_id, Task.start_date, Task.due_date))]


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
         .where(SupervisionItem.deadline >= first_day, SupervisionItem.deadline < before).order_by(SupervisionItem.id))
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
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table)
    keys = [c.name for c in table.primary_key.columns]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    s.connection().execute(stmt, rows)


# ---------------------------------------------------------------- problems


def get_problem(s: Session, code: str) -> Problem | None:
    return s.exec(select(Problem).where(Problem.code == code)).first()


def add_problem_progress(s: Session, problem: Problem, userid: str, text: str, now: datetime,
                         kind: str = PROGRESS_NOTE) -> ProblemProgress:
    row = ProblemProgress(problem_id=problem.id, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def all_problems(s: Session) -> list[Problem]:
    return sorted(s.exec(select(Problem)), key=lambda p: code_key(p.code))


def last_close_request(s: Session, problem_id: int) -> ProblemProgress | None:
    q = select(ProblemProgress).where(ProblemProgress.problem_id == problem_id, ProblemProgress.kind == PROGRESS_ASK)
    return s.exec(q.order_by(col(ProblemProgress.id).desc()).limit(1)).first()


# ---------------------------------------------------------------- supervision


def get_item(s: Session, code: str) -> SupervisionItem | None:
    return s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).first()


def _due_in(month: Month):
    """Supervision items whose deadline falls in `month`: the month they are scored in."""
    return SupervisionItem.deadline.between(month.first_day, month.last_day)


class Accepted(NamedTuple):
    answered_at: datetime  # when the answer that was accepted came
    closed_at: datetime  # when it was accepted (办结)


def accepted_answers(s: Session, month: Month) -> dict[int, Accepted]:
    """item id -> its accepted answer, for the items due in the month that are 办结."""
    q = select(SupervisionItem.id, SupervisionItem.answered_at, SupervisionItem.closed_at).where(
        _due_in(month), col(SupervisionItem.closed_at).is_not(None))
    return {item_id: Accepted(answered, closed) for item_id, answered, closed in _plain(s, q)}


def open_items(s: Session, as_of: datetime, unit_id: int | None = None) -> list[SupervisionItem]:
    """Supervision items issued by `as_of` that wait for the unit: not answered (or sent back) and
    not 办结. An item whose 牵头单位 or 配合单位 is `unit_id`, if given."""
    q = select(SupervisionItem).where(col(SupervisionItem.status).not_in((ITEM_ANSWERED, ITEM_DONE)),
                                      SupervisionItem.created_at <= as_of)
    items = sorted(s.exec(q), key=lambda i: code_key(i.code))
    if unit_id is not None:
        items = [i for i in items if i.unit_id == unit_id or unit_id in i.partners]
    return items


def unfinished_items(s: Session) -> list[SupervisionItem]:
    """Every item not yet 办结, for the daily reminders."""
    q = select(SupervisionItem).where(SupervisionItem.status != ITEM_DONE)
    return sorted(s.exec(q), key=lambda i: code_key(i.code))


def add_item_event(s: Session, item: SupervisionItem, kind: str, userid: str, text: str, now: datetime) -> ItemEvent:
    row = ItemEvent(item_id=item.id, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def item_events(s: Session, item_id: int) -> list[ItemEvent]:
    return list(s.exec(select(ItemEvent).where(ItemEvent.item_id == item_id).order_by(ItemEvent.id)))


def last_feedback(s: Session, item_id: int) -> ItemEvent | None:
    q = select(ItemEvent).where(ItemEvent.item_id == item_id, ItemEvent.kind == EVENT_FEEDBACK)
    return s.exec(q.order_by(col(ItemEvent.id).desc()).limit(1)).first()


def month_items_full(s: Session, month: Month) -> list[SupervisionItem]:
    """The items due in `month`, for the export."""
    return list(s.exec(select(SupervisionItem).where(_due_in(month)).order_by(SupervisionItem.id)))


class ScoredItem(NamedTuple):
    id: int
    unit_id: int
    deadline: date
    answered_at: datetime | None
    closed_at: datetime | None

    @property
    def accepted(self) -> Accepted | None:
        """Its accepted answer, once it is 办结 (as accepted_answers gives it)."""
        return Accepted(self.answered_at, self.closed_at) if self.closed_at is not None else None


def scored_items(s: Session, month: Month) -> list[ScoredItem]:
    """The items due in `month` with their accepted answer, for scoring."""
    q = select(*(getattr(SupervisionItem, f) for f in ScoredItem._fields)).where(_due_in(month))
    return [ScoredItem(*row) for row in _plain(s, q)]


# ---------------------------------------------------------------- evidence (attachments)


class Act(NamedTuple):
    """Something a person did that the pictures they send next belong to."""

    at: datetime
    code: str  # T3, P3, D3, L3
    what: str  # 汇报 | 整改 | 申请销号 | 反馈 | 亮点 | 附件


def recent_act(s: Session, userid: str, since: datetime) -> Act | None:
    """The person's latest 汇报 (or 修改), 整改 (or 销号), 反馈, 亮点 or 附件 <编号> made at or after
    `since`. At the same moment, 附件 (said on purpose) wins."""
    statements = [
        select(Report.created_at, Task.code, literal("汇报"))
        .join(Task, col(Task.id) == Report.task_id).where(Report.userid == userid, Report.created_at >= since)
        .order_by(col(Report.id).desc()),
        select(ProblemProgress.created_at, Problem.code, ProblemProgress.kind)
        .join(Problem, col(Problem.id) == ProblemProgress.problem_id)
        .where(ProblemProgress.userid == userid, col(ProblemProgress.kind).in_((PROGRESS_NOTE, PROGRESS_ASK)),
               ProblemProgress.created_at >= since).order_by(col(ProblemProgress.id).desc()),
        select(ItemEvent.created_at, SupervisionItem.code, ItemEvent.kind)
        .join(SupervisionItem, col(SupervisionItem.id) == ItemEvent.item_id)
        .where(ItemEvent.userid == userid, ItemEvent.kind == EVENT_FEEDBACK, ItemEvent.created_at >= since)
        .order_by(col(ItemEvent.id).desc()),
        select(Highlight.created_at, Highlight.code, literal("亮点"))
        .where(Highlight.userid == userid, Highlight.created_at >= since).order_by(col(Highlight.id).desc()),
        select(AttachIntent.created_at, AttachIntent.code, literal("附件"))
        .where(AttachIntent.userid == userid, AttachIntent.created_at >= since),
    ]
    acts = []
    for rank, q in enumerate(statements):
        row = s.connection().execute(q.limit(1)).first()
        if row is not None:
            acts.append((row[0], rank, Act(*row)))
    return max(acts)[2] if acts else None


def set_intent(s: Session, userid: str, code: str, now: datetime) -> None:
    """附件 <编号>: the person's pictures go to `code` for a while."""
    row = s.get(AttachIntent, userid) or AttachIntent(userid=userid, code=code, created_at=now)
    row.code, row.created_at = code, now
    s.add(row)


def attach_held(s: Session, userid: str, since: datetime, code: str, unit_id: int) -> int:
    """Give the person's pictures held since `since` to `code`, to be fetched. Returns how many."""
    return s.exec(update(Attachment).where(Attachment.userid == userid, Attachment.status == ATTACH_HELD,
                                           Attachment.created_at >= since)  # type: ignore[call-overload]
                  .values(code=code, unit_id=unit_id, status=ATTACH_PENDING)).rowcount


def prune_held(s: Session, before: datetime) -> int:
    """Forget pictures held since before `before` that nobody attached (附件 came too late, or never)."""
    return s.exec(delete(Attachment).where(Attachment.status == ATTACH_HELD,  # type: ignore[call-overload]
                                           Attachment.created_at < before)).rowcount


def due_attachment_ids(s: Session, now: datetime, limit: int) -> list[int]:
    due = _leased_due(Attachment, ATTACH_PENDING, ATTACH_FETCHING, now)
    return list(s.exec(select(Attachment.id).where(due).order_by(Attachment.id).limit(limit)))


def claim_attachment(s: Session, attachment_id: int, now: datetime, lease: timedelta) -> bool:
    """Atomically take one attachment to fetch; False if another fetcher has it."""
    return _claim(s, Attachment, attachment_id, ATTACH_PENDING, ATTACH_FETCHING, now, lease)


def attachments(s: Session, codes: list[str] | None = None, unit_id: int | None = None) -> list[Attachment]:
    """Attached pictures and files (not those still held), oldest first: of these codes, or this unit."""
    q = select(Attachment).where(Attachment.code != "")
    if codes is not None:
        q = q.where(col(Attachment.code).in_(codes))
    if unit_id is not None:
        q = q.where(Attachment.unit_id == unit_id)
    return list(s.exec(q.order_by(Attachment.id)))


# ---------------------------------------------------------------- 亮点


def get_highlight(s: Session, code: str) -> Highlight | None:
    return s.exec(select(Highlight).where(Highlight.code == code)).first()


def highlights(s: Session, unit_id: int | None = None) -> list[Highlight]:
    """Newest first: every unit's, or one unit's."""
    q = select(Highlight)
    if unit_id is not None:
        q = q.where(Highlight.unit_id == unit_id)
    return list(s.exec(q.order_by(col(Highlight.id).desc())))


def highlights_to_show(s: Session) -> list[Highlight]:
    """Picked (选用) and not yet in a monthly broadcast, in the order they were sent."""
    q = select(Highlight).where(col(Highlight.picked_at).is_not(None), Highlight.shown_month == "")
    return list(s.exec(q.order_by(Highlight.id)))


# ---------------------------------------------------------------- inbound dedupe


def _row_type(model) -> type:
    """A read-only row with the model's column names (a message's sender: no ORM object to build)."""
    return namedtuple(f"{model.__name__}Row", [c.name for c in model.__table__.columns])


MemberRow = _row_type(Member)
UnitRow = _row_type(Unit)


class Sender(NamedTuple):
    member: MemberRow  # type: ignore[valid-type]
    unit: UnitRow  # type: ignore[valid-type]
    reply: str | None  # the answer already given to this MsgId (WeCom retries what got no answer)


def _sender_statement():
    m, u, p = Member.__table__, Unit.__table__, ProcessedMessage.__table__
    seen = (p.c.userid == m.c.userid) & (p.c.msg_id == bindparam("msg_id"))
    return select(*m.c, *u.c, p.c.reply).select_from(m.join(u, u.c.id == m.c.unit_id).outerjoin(p, seen)) \
        .where(m.c.userid == bindparam("userid"))


_SENDER = _sender_statement()
_MEMBER_FIELDS = len(MemberRow._fields)
_RECORD_PROCESSED = insert(ProcessedMessage)


def sender(s: Session, userid: str, msg_id: str = "") -> Sender | None:
    """Who sent a message, with their unit and the answer their MsgId already got, in one query;
    None if they are not on the roster (nothing is ever stored for them)."""
    row = s.connection().execute(_SENDER, {"userid": userid, "msg_id": msg_id}).first()
    if row is None:
        return None
    return Sender(MemberRow(*row[:_MEMBER_FIELDS]), UnitRow(*row[_MEMBER_FIELDS:-1]), row[-1])


def record_processed(s: Session, msg_id: str, userid: str, reply: str, now: datetime) -> None:
    """Remember the answer to a person's MsgId; a second record of the same raises IntegrityError."""
    s.connection().execute(_RECORD_PROCESSED, {"msg_id": msg_id, "userid": userid, "reply": reply, "created_at": now})


def prune_processed(s: Session, before: datetime) -> int:
    """Forget answers given before `before` (older than any retry or replay the wire accepts)."""
    return s.exec(delete(ProcessedMessage).where(ProcessedMessage.created_at < before)).rowcount  # type: ignore[call-overload]


# ---------------------------------------------------------------- outbox


def enqueue(
    s: Session,
    key: str,
    channel: str,
    target: str,
    msgtype: str,
    payload: dict,
    now: datetime,
    filename: str = "",
) -> bool:
    """Add a message to the outbox unless one with this key is already there. True if added.

    Rows are written at commit, in one batch, so a broadcast to 2,000 groups is not 2,000 flushes."""
    added = s.info.setdefault("outbox_keys", set())
    if key in added:
        return False
    with s.no_autoflush:
        if s.exec(select(Outbox.id).where(Outbox.key == key)).first() is not None:
            return False
    added.add(key)
    s.add(
        Outbox(
            key=key,
            channel=channel,
            target=target,
            msgtype=msgtype,
            payload=json.dumps(payload, ensure_ascii=False),
            filename=filename,
            created_at=now,
        )
    )
    return True


def forget_pending_outbox(s: Session) -> None:
    """Forget the keys enqueue() holds for rows not yet written: call it when a savepoint ends
    (released, its rows are in the database for the next lookup; rolled back, they are gone)."""
    s.info.pop("outbox_keys", None)


def _leased_due(model, waiting: str, working: str, now: datetime):
    """Rows of a work queue (the outbox, pictures to fetch) that are `waiting` and due, or `working`
    under a worker whose lease ran out (it crashed or hung)."""
    return ((model.status == waiting) & (col(model.next_attempt_at).is_(None) | (model.next_attempt_at <= now))) | (
        (model.status == working) & (model.lease_until < now)
    )


def _claim(s: Session, model, row_id: int, waiting: str, working: str, now: datetime, lease: timedelta) -> bool:
    """Atomically take one due row of a work queue for `lease`; False if another worker has it."""
    stmt = (update(model).where(model.id == row_id, _leased_due(model, waiting, working, now))
            .values(status=working, lease_until=now + lease, attempts=model.attempts + 1))
    return s.exec(stmt).rowcount == 1  # type: ignore[call-overload]


def _due(now: datetime):
    return _leased_due(Outbox, "pending", "sending", now)


REPLY_KEYS = ("reply:", "response_url:")  # outbox keys of answers to a person's own message


def due_outbox_ids(s: Session, now: datetime, limit: int, replies_only: bool = False) -> list[int]:
    """The due messages, oldest first; `replies_only` (quiet hours): answers to people's messages only."""
    q = select(Outbox.id).where(_due(now))
    if replies_only:
        key = col(Outbox.key)
        q = q.where(key.startswith(REPLY_KEYS[0], autoescape=True) | key.startswith(REPLY_KEYS[1], autoescape=True))
    return list(s.exec(q.order_by(Outbox.id).limit(limit)))


def outbox_by_ids(s: Session, ids: list[int]) -> list[Outbox]:
    if not ids:
        return []
    return list(s.exec(select(Outbox).where(col(Outbox.id).in_(ids)).order_by(Outbox.id)))


def claim_outbox(s: Session, outbox_id: int, now: datetime, lease: timedelta) -> bool:
    """Atomically take one due message; False if another sender has it."""
    return _claim(s, Outbox, outbox_id, "pending", "sending", now, lease)


def outbox_rows(s: Session, statuses: tuple[str, ...]) -> list[Outbox]:
    return list(s.exec(select(Outbox).where(col(Outbox.status).in_(statuses)).order_by(Outbox.id)))


def retry_failed_outbox(s: Session, ids: list[int] | None) -> int:
    """Put failed messages (all, or those with these ids) back to pending, due now, with their
    attempts reset. Returns how many."""
    q = update(Outbox).where(Outbox.status == "failed")
    if ids is not None:
        q = q.where(col(Outbox.id).in_(ids))
    q = q.values(status="pending", attempts=0, next_attempt_at=None, lease_until=None)
    return s.exec(q).rowcount  # type: ignore[call-overload]


def outbox_counts(s: Session) -> dict[str, int]:
    return dict(s.exec(select(Outbox.status, func.count()).group_by(Outbox.status)).all())


# ---------------------------------------------------------------- reviews' comments (点评, 自评)


def add_review_comment(s: Session, unit_id: int, period: str, kind: str, userid: str, text: str,
                       now: datetime) -> ReviewComment:
    row = ReviewComment(unit_id=unit_id, period=period, kind=kind, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


def review_comments(s: Session, periods: list[str], until: datetime | None = None,
                    unit_id: int | None = None) -> list[ReviewComment]:
    """Every 点评 and 自评 of these periods (made by `until`), oldest first."""
    q = select(ReviewComment).where(col(ReviewComment.period).in_(periods))
    if until is not None:
        q = q.where(ReviewComment.created_at <= until)
    if unit_id is not None:
        q = q.where(ReviewComment.unit_id == unit_id)
    return list(s.exec(q.order_by(ReviewComment.id)))


# ---------------------------------------------------------------- job runs


def claim_job_run(s: Session, job: str, period: str, scheduled_for: datetime, now: datetime, by: str) -> bool:
    """Claim (job, period) in its own transaction. False if someone claimed it before."""
    try:
        with s.begin_nested():
            s.add(JobRun(job=job, period=period, scheduled_for=scheduled_for, claimed_at=now, claimed_by=by))
    except IntegrityError:
        return False
    return True


def get_job_run(s: Session, job: str, period: str) -> JobRun | None:
    return s.exec(select(JobRun).where(JobRun.job == job, JobRun.period == period)).first()


# ---------------------------------------------------------------- web pages (read-only, one query each)


def add_web_link(s: Session, token_hash: str, userid: str, expires_at: datetime) -> None:
    s.add(WebLink(token_hash=token_hash, userid=userid, expires_at=expires_at))


def use_web_link(s: Session, token_hash: str, now: datetime) -> str | None:
    """Spend a one-time link: the userid it was made for, or None if it is unknown, used or expired.
    One UPDATE claims it, so two requests with the same link cannot both sign in."""
    claimed = s.exec(update(WebLink).where(WebLink.token_hash == token_hash, col(WebLink.used_at).is_(None),
                                           WebLink.expires_at > now).values(used_at=now)).rowcount  # type: ignore[call-overload]
    return s.get(WebLink, token_hash).userid if claimed == 1 else None


def members_named(s: Session, userids: set[str]) -> dict[str, str]:
    """userid -> name for these userids."""
    if not userids:
        return {}
    return dict(_plain(s, select(Member.userid, Member.name).where(col(Member.userid).in_(userids))))


def unit_reports(s: Session, unit_id: int) -> list[Report]:
    """Every version of every report on the unit's tasks, newest first."""
    return list(s.exec(select(Report).where(Report.unit_id == unit_id).order_by(col(Report.id).desc())))


def unit_problems(s: Session, unit_id: int) -> list[Problem]:
    return sorted(s.exec(select(Problem).where(Problem.unit_id == unit_id)), key=lambda p: code_key(p.code))


def progress_of(s: Session, problem_ids: list[int]) -> list[ProblemProgress]:
    if not problem_ids:
        return []
    return list(s.exec(select(ProblemProgress).where(col(ProblemProgress.problem_id).in_(problem_ids))
                       .order_by(ProblemProgress.id)))


def unit_items(s: Session, unit_id: int) -> list[SupervisionItem]:
    return sorted(s.exec(select(SupervisionItem).where(SupervisionItem.unit_id == unit_id)),
                  key=lambda i: code_key(i.code), reverse=True)


def feedback_of(s: Session, item_ids: list[int]) -> list[ItemEvent]:
    """The 反馈 steps of these items, oldest first."""
    if not item_ids:
        return []
    q = select(ItemEvent).where(col(ItemEvent.item_id).in_(item_ids), ItemEvent.kind == EVENT_FEEDBACK)
    return list(s.exec(q.order_by(ItemEvent.id)))


def outbox_page(s: Session, statuses: tuple[str, ...], limit: int) -> list[Outbox]:
    """The newest `limit` messages in these states."""
    q = select(Outbox).where(col(Outbox.status).in_(statuses)).order_by(col(Outbox.id).desc()).limit(limit)
    return list(s.exec(q))


# ---------------------------------------------------------------- smart robot groups


def bind_group(s: Session, unit: Unit, chatid: str) -> list[Unit]:
    """Make `chatid` the unit's smart-robot group: a group belongs to one unit, so any other unit
    it was bound to loses it. Returns those units."""
    others = list(s.exec(select(Unit).where(Unit.aibot_chatid == chatid, Unit.id != unit.id)))
    for other in others:
        other.aibot_chatid = ""
        s.add(other)
    unit.aibot_chatid = chatid
    s.add(unit)
    s.flush()
    return others


def unit_of_group(s: Session, chatid: str) -> Unit | None:
    return s.exec(select(Unit).where(Unit.aibot_chatid == chatid)).first() if chatid else None
