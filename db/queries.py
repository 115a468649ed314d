"""Small query functions. Handlers and jobs read and write only through these."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, literal_column, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.clock import Month
from db.models import (
    ROLE_ADMIN,
    Feedback,
    JobRun,
    Member,
    Outbox,
    Problem,
    ProblemProgress,
    ProcessedMessage,
    Report,
    SupervisionItem,
    Task,
    Unit,
)
from db.prepared import Prepared, Qualified


def _plain(s: Session, stmt, **params) -> list:
    """Run a column query on the session's connection, past the ORM layer: plain row tuples, at a
    third of the cost per row (bulk reads of a year's reports go through here)."""
    return s.connection().execute(stmt, params).all()


# ---------------------------------------------------------------- units, members


class MemberRow(NamedTuple):
    userid: str
    name: str
    unit_id: int
    role: str


class UnitRow(NamedTuple):
    id: int
    name: str
    category: str
    leader_userid: str
    chat_id: str
    webhook_key: str


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
_TASK_BY_CODE = Prepared(_TASK_ROWS.where(Task.code == bindparam("code")))
_TASK_BY_CODE_LOCKED = Prepared(_TASK_BY_CODE.statement.with_for_update())


def all_tasks(s: Session) -> list[TaskRow]:
    return [TaskRow(*row) for row in _plain(s, _TASK_ROWS)]


def get_task(s: Session, code: str, lock: bool = False) -> TaskRow | None:
    """The task with this code. `lock`: for a report on it (add_report), the task's row stays locked
    until the transaction ends (PostgreSQL's FOR UPDATE, in the same statement; SQLite serialises
    writers anyway and has no row locks)."""
    rows = (_TASK_BY_CODE_LOCKED if lock else _TASK_BY_CODE).run(s, code=code)
    return TaskRow(*rows[0]) if rows else None


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
    """A report as written by add_report()."""

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


# Reports on one task are serialised on its row so a version number cannot be taken twice: the
# caller reads the task with get_task(lock=True), a statement of its own before the insert. On
# PostgreSQL that matters: a statement that waited for the lock still reads from the snapshot it
# began with and would miss the version the other writer just committed, while the next statement
# reads a new snapshot. (Were the lock missed, the unique (task_id, month, version) turns the race
# into an IntegrityError, and the message is handled again.) The insert takes the next version
# number itself.
_REPORT_VALUES = ("task_id", "unit_id", "userid", "percent", "text", "created_at", "month", "local_day",
                  "supersedes_id")


def _unreported_statement(other_than_task: bool = False):
    """How many of a unit's active tasks have no report in the month. `other_than_task`: leaving out
    the task `task_id`, for the count in add_report's RETURNING, where the new report is not yet
    visible on PostgreSQL (the statement's snapshot) and is on SQLite; the task just reported is
    not unreported either way."""
    r, r2, latest = (Report.__table__.alias(n) for n in ("r", "r2", "latest"))
    reported = select(r.c.id).where(r.c.task_id == Task.id, r.c.month == bindparam("month")).exists()
    last_id = select(func.max(r2.c.id)).where(r2.c.task_id == Task.id).correlate(Task).scalar_subquery()
    finished = select(latest.c.id).where(latest.c.id == last_id, latest.c.percent >= 100).exists()
    q = select(func.count()).select_from(Task).where(
        Task.unit_id == bindparam("unreported_in"), Task.start_date <= bindparam("last_day"), ~reported, ~finished
    )
    return q.where(Task.id != bindparam("task_id")) if other_than_task else q


def _insert_report_statement(counting: bool):
    table, earlier = Report.__table__, Report.__table__.alias("earlier")
    values = [bindparam(name, type_=table.c[name].type) for name in _REPORT_VALUES]
    next_version = func.coalesce(func.max(earlier.c.version), 0) + literal_column("1")
    returning = [Report.id, Report.version]
    if counting:
        returning.append(Qualified(_unreported_statement(other_than_task=True).scalar_subquery()))
    return insert(Report).from_select(
        [*_REPORT_VALUES, "version"],
        select(*values, next_version).where(
            earlier.c.task_id == bindparam("task_id"), earlier.c.month == bindparam("month")),
    ).returning(*returning)


_INSERT_REPORT = Prepared(_insert_report_statement(counting=False))
_INSERT_REPORT_COUNTING = Prepared(_insert_report_statement(counting=True))  # this runs on every 汇报


def add_report(
    s: Session,
    task: TaskRow,
    userid: str,
    percent: int,
    text: str,
    now: datetime,
    tz: ZoneInfo,
    supersedes: Report | None = None,
    unreported_in: int | None = None,
) -> tuple[ReportRow, int | None]:
    """Write the next version of the task's report for the month (earlier versions stay); the task
    was read with get_task(lock=True). With `unreported_in` (a unit id), the same statement also
    counts that unit's tasks left unreported this month, with this task counted as reported (as
    unreported_count() would after it): the reply to every 汇报 says it, and a round trip of its
    own cost as much as the insert. Returns the report and that count (None without)."""
    local_now = now.astimezone(tz)
    month = Month.of(local_now)
    values = {"task_id": task.id, "unit_id": task.unit_id, "userid": userid, "percent": percent, "text": text,
              "created_at": now, "month": str(month), "local_day": local_now.day,
              "supersedes_id": supersedes.id if supersedes else None}
    if unreported_in is None:
        (report_id, version), = _INSERT_REPORT.run(s, **values)
        left = None
    else:
        (report_id, version, left), = _INSERT_REPORT_COUNTING.run(
            s, **values, unreported_in=unreported_in, last_day=month.last_day)
    return ReportRow(id=report_id, version=version, **values), left


_UNREPORTED = Prepared(_unreported_statement())


def unreported_count(s: Session, unit_id: int, month: Month) -> int:
    """How many of the unit's active tasks have no report in `month`: the same rule as
    progress.snapshots (started by the month's end, not finished in an earlier month), in one query."""
    return _UNREPORTED.run(s, unreported_in=unit_id, month=str(month), last_day=month.last_day)[0][0]


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


# ---------------------------------------------------------------- problems


def get_problem(s: Session, code: str) -> Problem | None:
    return s.exec(select(Problem).where(Problem.code == code)).first()


def add_problem_progress(s: Session, problem: Problem, userid: str, text: str, now: datetime) -> ProblemProgress:
    row = ProblemProgress(problem_id=problem.id, userid=userid, text=text, created_at=now)
    s.add(row)
    s.flush()
    return row


# ---------------------------------------------------------------- supervision


def get_item(s: Session, code: str) -> SupervisionItem | None:
    return s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).first()


def first_feedback_times(s: Session, month: Month) -> dict[int, datetime]:
    """item id -> when its first 反馈 came, for the month's supervision items."""
    q = (
        select(Feedback.item_id, func.min(Feedback.created_at))
        .join(SupervisionItem, SupervisionItem.id == Feedback.item_id)
        .where(SupervisionItem.month == str(month))
        .group_by(Feedback.item_id)
    )
    return dict(_plain(s, q))


def open_items(s: Session, unit_id: int | None = None) -> list[SupervisionItem]:
    """Supervision items nobody has answered yet."""
    answered = select(Feedback.item_id)
    q = select(SupervisionItem).where(col(SupervisionItem.id).not_in(answered))
    if unit_id is not None:
        q = q.where(SupervisionItem.unit_id == unit_id)
    return sorted(s.exec(q), key=lambda i: code_key(i.code))


class ItemRow(NamedTuple):
    id: int
    unit_id: int
    deadline: date


def month_items(s: Session, month: Month) -> list[ItemRow]:
    """The month's supervision items as plain rows (id, unit_id, deadline), for scoring."""
    q = select(SupervisionItem.id, SupervisionItem.unit_id, SupervisionItem.deadline).where(
        SupervisionItem.month == str(month)
    )
    return [ItemRow(*row) for row in _plain(s, q)]


# ---------------------------------------------------------------- inbound dedupe


def _incoming_statement():
    one_row = select(literal_column("1").label("one")).subquery("one_row")
    seen = select(ProcessedMessage.reply).where(ProcessedMessage.msg_id == bindparam("msg_id")).scalar_subquery()
    return (
        select(seen, *(getattr(Member, f) for f in MemberRow._fields), *(getattr(Unit, f) for f in UnitRow._fields))
        .select_from(one_row)
        .outerjoin(Member, Member.userid == bindparam("userid"))
        .outerjoin(Unit, col(Unit.id) == Member.unit_id)
    )


_INCOMING = Prepared(_incoming_statement())
_RECORD_PROCESSED = Prepared(insert(ProcessedMessage).values(
    {name: bindparam(name) for name in ("msg_id", "userid", "reply", "created_at")}))


class Incoming(NamedTuple):
    seen: str | None  # the answer already given to this MsgId (WeCom retries), if any
    member: MemberRow | None  # None: not on the roster
    unit: UnitRow | None


def incoming(s: Session, userid: str, msg_id: str) -> Incoming:
    """What every message needs first, in one query: whether its MsgId was answered already, and
    who sent it with their unit, as plain rows (ORM objects would cost five times as much, and
    nothing changes the sender while a message is handled)."""
    (seen, *values), = _INCOMING.run(s, msg_id=msg_id, userid=userid)
    if values[0] is None:
        return Incoming(seen, None, None)
    return Incoming(seen, MemberRow(*values[:4]), UnitRow(*values[4:]))


def record_processed(s: Session, msg_id: str, userid: str, reply: str, now: datetime) -> None:
    """Remember the answer to a MsgId; a second record of the same MsgId raises IntegrityError."""
    _RECORD_PROCESSED.run(s, msg_id=msg_id, userid=userid, reply=reply, created_at=now)


def record_processed_many(s: Session, answers: list[tuple[str, str, str, datetime]]) -> None:
    """record_processed() for many (msg_id, userid, reply, now) at once: one round trip."""
    _RECORD_PROCESSED.run_many(s, [{"msg_id": msg_id, "userid": userid, "reply": reply, "created_at": now}
                                   for msg_id, userid, reply, now in answers])


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


def _due(now: datetime):
    """Pending and due, or claimed by a sender whose lease ran out (it crashed or hung)."""
    return ((Outbox.status == "pending") & (col(Outbox.next_attempt_at).is_(None) | (Outbox.next_attempt_at <= now))) | (
        (Outbox.status == "sending") & (Outbox.lease_until < now)
    )


def due_outbox_ids(s: Session, now: datetime, limit: int) -> list[int]:
    q = (
        select(Outbox.id)
        .where(_due(now))
        .order_by(Outbox.id)
        .limit(limit)
    )
    return list(s.exec(q))


def outbox_by_ids(s: Session, ids: list[int]) -> list[Outbox]:
    if not ids:
        return []
    return list(s.exec(select(Outbox).where(col(Outbox.id).in_(ids)).order_by(Outbox.id)))


def claim_outbox(s: Session, outbox_id: int, now: datetime, lease: timedelta) -> bool:
    """Atomically take one due message; False if another sender has it."""
    stmt = (
        update(Outbox)
        .where(Outbox.id == outbox_id, _due(now))
        .values(status="sending", lease_until=now + lease, attempts=Outbox.attempts + 1)
    )
    return s.exec(stmt).rowcount == 1  # type: ignore[call-overload]


def outbox_rows(s: Session, statuses: tuple[str, ...]) -> list[Outbox]:
    return list(s.exec(select(Outbox).where(col(Outbox.status).in_(statuses)).order_by(Outbox.id)))


def outbox_counts(s: Session) -> dict[str, int]:
    return dict(s.exec(select(Outbox.status, func.count()).group_by(Outbox.status)).all())


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
