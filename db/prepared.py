"""The chat-message hot path in plain SQL on the session's DB-API connection, inside the session's
transaction: prepared statements and per-message savepoints.

Every chat message runs the same handful of small statements (dedupe, sender, task, report, count).
Through `Connection.execute` each costs about 25 µs of SQLAlchemy bookkeeping around 3 µs of
SQLite work; here it costs the driver call and the column type conversions SQLAlchemy would apply
(`TypeEngine.bind_processor` / `result_processor`), so values in and out are the same as through
Core. Driver errors are wrapped as SQLAlchemy's own (`DBAPIError.instance`), so callers catch
`IntegrityError` / `OperationalError` either way. Use it for fixed statements on the message path;
everything else goes through the ORM or Core as usual.

`Savepoint` is the same idea for the savepoint each message runs in (bot/app.py): the ORM's
`Session.begin_nested` cost more than all of a 汇报's statements together. A transaction that holds
one message only needs no savepoint at all (`WholeTransaction`), and neither does a message that
never has to be undone (`Unguarded`: a batch is tried without savepoints first).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import event, orm
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]  # bind names, in placeholder order for a positional paramstyle
    positional: bool
    defaults: dict[str, Any]  # values the statement carries itself (constants in it)
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # (name, processor) where one is needed
    results: tuple[Callable[[Any], Any] | None, ...] | None  # per result column; None: no conversions


class Prepared:
    def __init__(self, statement):
        self.statement = statement
        self._writes = bool(getattr(statement, "is_dml", False))
        self._compiled: dict[type, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        c = self.statement.compile(dialect=dialect)
        if c.post_compile_params:
            raise TypeError("Prepared takes fixed statements; an IN list of bound values is not one")
        by_name = {name: bind for bind, name in c.bind_names.items()}
        names = tuple(c.positiontup) if c.positional else tuple(by_name)
        defaults = {name: bind.value for name, bind in by_name.items() if not bind.required}
        binds = []
        for name, bind in by_name.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                binds.append((name, proc))
        results = None
        if getattr(self.statement, "exported_columns", None) is not None:
            procs = tuple(col.type.dialect_impl(dialect).result_processor(dialect, None)
                          for col in self.statement.exported_columns)
            results = procs if any(procs) else None
        return _Compiled(c.string, names, c.positional, defaults, tuple(binds), results)

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(type(dialect))
        if compiled is None:
            compiled = self._compiled[type(dialect)] = self._compile(dialect)
        return compiled

    @staticmethod
    def _args(compiled: _Compiled, params: dict):
        """The driver's arguments for these bind values, converted as SQLAlchemy would."""
        if compiled.defaults:
            params = {**compiled.defaults, **params}
        for name, proc in compiled.binds:
            params[name] = proc(params[name])
        return tuple(params[n] for n in compiled.names) if compiled.positional else params

    def run(self, s: Session, **params) -> list[tuple]:
        """Execute with these bind values; the result rows as tuples ([] for a statement without)."""
        dbapi_conn, dialect, info = _connection(s)
        compiled = self._for(dialect)
        if self._writes:
            _touched(info)
        rows = _execute(dbapi_conn, dialect, compiled.sql, self._args(compiled, params), info, prepare=True)
        if compiled.results is not None:
            procs = compiled.results
            rows = [tuple(v if p is None else p(v) for p, v in zip(procs, row)) for row in rows]
        return rows

    def run_many(self, s: Session, rows: list[dict]) -> None:
        """Execute once for each set of bind values, in one go (a write without result rows): the
        driver's executemany, one round trip for all on PostgreSQL (psycopg's pipeline)."""
        if not rows:
            return
        dbapi_conn, dialect, info = _connection(s)
        compiled = self._for(dialect)
        many = [self._args(compiled, dict(params)) for params in rows]
        _touched(info)
        try:
            _cursor(dbapi_conn, info).executemany(compiled.sql, many)
        except dialect.loaded_dbapi.Error as err:
            raise DBAPIError.instance(compiled.sql, many, err, dialect.loaded_dbapi.Error, dialect=dialect) from err


def _cursor(dbapi_conn, info: dict):
    """One cursor a connection, kept in its `Connection.info` (a new psycopg cursor a statement
    cost a third as much as the statement)."""
    cursor = info.get(_CURSOR)
    if cursor is None or cursor.connection is not dbapi_conn:
        cursor = info[_CURSOR] = dbapi_conn.cursor()
    return cursor


def _execute(dbapi_conn, dialect: Dialect, sql: str, args, info: dict, prepare: bool = False) -> list[tuple]:
    """`prepare`: a fixed statement, run often; psycopg keeps it prepared on the server from the
    first time on (otherwise from the fifth, counting every time). Not for one-off statements
    (savepoint names)."""
    cursor = _cursor(dbapi_conn, info)
    try:
        if dialect.driver == "psycopg":
            cursor.execute(sql, args, prepare=prepare)
        else:
            cursor.execute(sql, args)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as err:
        _touched(info)  # a failed statement aborts a PostgreSQL transaction
        raise DBAPIError.instance(sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect) from err


class Qualified(ColumnElement):
    """A subquery whose columns are named with their tables wherever it stands. SQLite's RETURNING
    takes bare column names, and SQLAlchemy's SQLite compiler then leaves the table off every column
    inside it, subqueries included, where `task_id = id` silently means something else."""

    inherit_cache = True
    _traverse_internals: ClassVar = [("element", InternalTraversal.dp_clauseelement)]

    def __init__(self, element: ColumnElement):
        self.element = element
        self.type = element.type


@compiles(Qualified)
def _compile_qualified(element: Qualified, compiler, **kw) -> str:
    return compiler.process(element.element, **{**kw, "include_table": True})


class Savepoint:
    """A savepoint in the session's transaction, with the ORM kept in step by hand: what the session
    holds is flushed before the savepoint is taken and when it is released, so rolling back to it
    undoes exactly what was done inside; after a rollback every object is let go of (the session
    re-reads what it needs), and objects added inside are never written."""

    _names = itertools.count()

    def __init__(self, s: Session):
        self.s = s
        _flush(s)
        self.name = f"duban_{next(self._names)}"
        self._run(f"SAVEPOINT {self.name}")

    def _run(self, sql: str) -> None:
        dbapi_conn, dialect, info = _connection(self.s)
        _execute(dbapi_conn, dialect, sql, (), info)

    def release(self) -> None:
        """Keep what was done inside; a write that fails at the flush raises here, inside."""
        _flush(self.s)
        self._run(f"RELEASE SAVEPOINT {self.name}")

    def rollback(self) -> None:
        self._run(f"ROLLBACK TO SAVEPOINT {self.name}")
        self._run(f"RELEASE SAVEPOINT {self.name}")
        self.s.expunge_all()


class WholeTransaction:
    """Savepoint's stand-in where the session's transaction holds one message only: keeping it is
    flushing, undoing it is rolling the transaction back (the session then begins a new one)."""

    def __init__(self, s: Session):
        self.s = s

    def release(self) -> None:
        _flush(self.s)

    def rollback(self) -> None:
        self.s.rollback()


class NeedsSavepoints(Exception):
    """An Unguarded message has to be undone but wrote (or a statement failed): its transaction has
    to be rolled back, and the batch run again with savepoints."""


class Unguarded:
    """Savepoint's stand-in that costs nothing (a savepoint is two round trips a message on
    PostgreSQL): no savepoint is taken, and a message can be undone only while it has written
    nothing, which is what most undone messages are (a wrong form, an unknown code, someone else's
    task: found out by reading). Undoing it then lets go of the objects the session holds, so
    nothing it added or changed is ever written. A message that wrote, or whose statement failed,
    raises NeedsSavepoints instead."""

    def __init__(self, s: Session):
        self.s = s
        _flush(s)  # what earlier messages left pending is theirs
        self.mark = _writes(s)

    def release(self) -> None:
        _flush(self.s)

    def rollback(self) -> None:
        if _writes(self.s) != self.mark:
            raise NeedsSavepoints
        self.s.expunge_all()


def _flush(s: Session) -> None:
    """Send what the session holds to the database, skipping the ORM's flush machinery when it
    holds nothing (the usual case on the message path)."""
    if s.new or s.dirty or s.deleted:
        s.flush()


_KEY = "prepared_connection"
_WRITES = "duban_writes"
_CURSOR = "duban_cursor"


def _touched(info: dict) -> None:
    """Count a statement that wrote or failed on this connection (its `Connection.info`)."""
    info[_WRITES] = info.get(_WRITES, 0) + 1


def _writes(s: Session) -> int:
    """How many statements have written or failed on the session's connection so far."""
    return _connection(s)[2].get(_WRITES, 0)


def _connection(s: Session):
    """The session's DB-API connection, dialect and `Connection.info` for its current transaction:
    one dict lookup (`Session.connection()` costs as much as a small statement). Asking the session
    once per transaction is what makes it begin one on the connection (see the events below)."""
    cached = s.info.get(_KEY)
    if cached is None:
        s.connection()  # begins the transaction; after_begin fills the cache
        cached = s.info[_KEY]
    return cached


@event.listens_for(orm.Session, "after_begin")  # every session class, SQLModel's included
def _remember_connection(session: Session, _transaction, connection) -> None:
    session.info[_KEY] = (connection.connection.dbapi_connection, connection.dialect, connection.info)


@event.listens_for(orm.Session, "after_transaction_end")
def _forget_connection(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: its connection goes back to the pool
        session.info.pop(_KEY, None)


# Statements through SQLAlchemy (the ORM's flush, Core) count as well: all but plain reads.
@event.listens_for(Engine, "after_cursor_execute")
def _count_write(conn, _cursor, statement: str, _parameters, _context, _executemany) -> None:
    if statement.lstrip()[:6].upper() != "SELECT":
        _touched(conn.info)


@event.listens_for(Engine, "handle_error")
def _count_failure(context) -> None:
    if context.connection is not None:
        _touched(context.connection.info)
