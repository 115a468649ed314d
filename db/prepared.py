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
one message only needs no savepoint at all (`WholeTransaction`).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import event, orm
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
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

    def run(self, s: Session, **params) -> list[tuple]:
        """Execute with these bind values; the result rows as tuples ([] for a statement without)."""
        dbapi_conn, dialect = _connection(s)
        compiled = self._compiled.get(type(dialect))
        if compiled is None:
            compiled = self._compiled[type(dialect)] = self._compile(dialect)
        if compiled.defaults:
            params = {**compiled.defaults, **params}
        for name, proc in compiled.binds:
            params[name] = proc(params[name])
        args = tuple(params[n] for n in compiled.names) if compiled.positional else params
        rows = _execute(dbapi_conn, dialect, compiled.sql, args)
        if compiled.results is not None:
            procs = compiled.results
            rows = [tuple(v if p is None else p(v) for p, v in zip(procs, row)) for row in rows]
        return rows


def _execute(dbapi_conn, dialect: Dialect, sql: str, args) -> list[tuple]:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql, args)
        return cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as err:
        raise DBAPIError.instance(sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect) from err
    finally:
        cursor.close()


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
        dbapi_conn, dialect = _connection(self.s)
        _execute(dbapi_conn, dialect, sql, ())

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


def _flush(s: Session) -> None:
    """Send what the session holds to the database, skipping the ORM's flush machinery when it
    holds nothing (the usual case on the message path)."""
    if s.new or s.dirty or s.deleted:
        s.flush()


_KEY = "prepared_connection"


def _connection(s: Session):
    """The session's DB-API connection and dialect for its current transaction: one dict lookup
    (`Session.connection()` costs as much as a small statement). Asking the session once per
    transaction is what makes it begin one on the connection (see the events below)."""
    cached = s.info.get(_KEY)
    if cached is None:
        s.connection()  # begins the transaction; after_begin fills the cache
        cached = s.info[_KEY]
    return cached


@event.listens_for(orm.Session, "after_begin")  # every session class, SQLModel's included
def _remember_connection(session: Session, _transaction, connection) -> None:
    session.info[_KEY] = (connection.connection.dbapi_connection, connection.dialect)


@event.listens_for(orm.Session, "after_transaction_end")
def _forget_connection(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: its connection goes back to the pool
        session.info.pop(_KEY, None)
