"""Engine and sessions. One session per request or job step; migrations run at start.

Nothing waits on the database without a limit: a lock (SQLite's busy timeout and this process's
write lock, PostgreSQL's lock_timeout) for LOCK_WAIT, a connection for CONNECT_WAIT, a PostgreSQL
statement for STATEMENT_LIMIT. What fails for want of the database (`unavailable`) is an outage,
logged once when it starts and once when it ends (`outage(engine)`), not a traceback a request.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

log = logging.getLogger("duban.db")

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_WAIT = 10.0  # seconds a writer waits for a lock before its transaction fails
CONNECT_WAIT = 3.0  # seconds to open a connection, or to get one from the pool
STATEMENT_LIMIT = 30.0  # seconds a PostgreSQL statement may run (the year's largest take well under 1)
MIGRATE_WAIT = 300.0  # a replica starting waits this long for another one's migration
# Keyed by the engine itself and forgotten with it: a new engine never inherits a dead one's lock.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": LOCK_WAIT})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            _set_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            # A write transaction (session_scope) takes the write lock at BEGIN, so concurrent
            # writers queue on busy_timeout instead of failing to upgrade a read lock; reads
            # stay deferred and, with WAL, never block a writer.
            immediate = conn.get_execution_options().get("sqlite_immediate")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        # pysqlite's own transaction handling must be off for the BEGIN above to be ours.
        @event.listens_for(engine, "connect", insert=True)
        def _no_pysqlite_begin(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None

        # SQLite has one writer at a time. Queue this process's writers on a lock, which wakes the
        # next one at once, instead of on SQLite's busy handler, which sleeps up to 100 ms a try.
        _WRITE_LOCKS[engine] = threading.RLock()
    else:
        limits = f"-c lock_timeout={int(LOCK_WAIT * 1000)} -c statement_timeout={int(STATEMENT_LIMIT * 1000)}"
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_timeout=CONNECT_WAIT,
                               connect_args={"connect_timeout": max(1, round(CONNECT_WAIT)), "options": limits})
    event.listen(engine, "before_cursor_execute", _count_writes)  # (writes())
    event.listen(engine, "after_cursor_execute", _answer_now)  # (pipeline())
    return engine


def _count_writes(conn, _cursor, _statement, _params, context, _many) -> None:  # noqa: ANN001
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        conn.info["writes"] = conn.info.get("writes", 0) + 1


def writes(s: Session) -> int:
    """How many INSERT, UPDATE and DELETE statements the session's connection has run so far, what
    the session holds unwritten written first: a message that changed nothing moves it not."""
    s.flush()
    return s.connection().info.get("writes", 0)


@contextmanager
def pipeline(s: Session) -> Iterator[None]:
    """On PostgreSQL, an INSERT that returns nothing goes out without waiting for its answer: it
    travels with the next statement that returns rows, or with the end of the block, in one round
    trip (psycopg's pipeline mode). Its failure then shows up there instead of at the INSERT. On
    SQLite (no round trips) nothing changes."""
    conn = s.connection()
    dbapi = conn.connection.dbapi_connection
    if not hasattr(dbapi, "pipeline"):
        yield
        return
    info = conn.info  # (kept: a connection lost meanwhile no longer gives its info)
    mode = dbapi.pipeline()
    info["pipeline"] = mode.__enter__()
    try:
        yield
    except BaseException:
        try:  # what is still on its way fails with the transaction, which is rolled back: said already
            mode.__exit__(None, None, None)
        except Exception:
            pass
        raise
    else:
        try:
            mode.__exit__(None, None, None)
        except conn.dialect.loaded_dbapi.Error as exc:  # the last INSERTs' failure, as SQLAlchemy says it
            raise sa_exc.DBAPIError.instance(None, None, exc, conn.dialect.loaded_dbapi.Error,
                                             dialect=conn.dialect) from exc
    finally:
        info.pop("pipeline", None)


def _answer_now(conn, _cursor, _statement, _params, context, _many) -> None:  # noqa: ANN001
    """In pipeline(), wait for the answers of every statement but an INSERT without RETURNING before
    SQLAlchemy reads them (its rows, or its row count for an UPDATE or DELETE)."""
    sent = conn.info.get("pipeline")
    if sent is not None and not (context is not None and context.isinsert and not context.compiled.effective_returning):
        sent.sync()


def _set_wal(cur) -> None:  # noqa: ANN001
    """Switch to WAL. SQLite takes an exclusive lock for it without waiting on busy_timeout, so two
    processes opening one fresh file at once (replicas starting together) retry instead of failing."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_lock(engine: Engine) -> threading.RLock | None:
    """The lock this process's SQLite writers queue on (None for PostgreSQL)."""
    return _WRITE_LOCKS.get(engine)


# SQLite's primary result codes that mean the file is busy or out of reach: BUSY, LOCKED, IOERR,
# CANTOPEN, PROTOCOL
SQLITE_AWAY = frozenset({5, 6, 10, 14, 15})


# PostgreSQL's SQLSTATEs for a conflict with another writer (a deadlock, a serialization failure):
# the transaction is to be tried again, the database is not away.
CONFLICT_STATES = ("40P01", "40001")


class DatabaseBusy(Exception):
    """A writer waited LOCK_WAIT for this process's write lock (held by a writer the database keeps waiting)."""


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable or did not answer in time, rather than a bug in
    what was asked of it or a conflict with another writer (a deadlock, a serialization failure)."""
    if isinstance(exc, (DatabaseBusy, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:  # SQLite's OperationalError also says "no such table" (a bug, not an outage)
        return code & 0xFF in SQLITE_AWAY
    return getattr(exc.orig, "sqlstate", None) not in CONFLICT_STATES


class Outage:
    """Whether the database is away: one warning when an outage starts (with its reason), one line
    when something reaches the database again, nothing in between."""

    def __init__(self):
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("database unavailable: %s: %s", type(exc).__name__, reason[0] if reason else "")

    def ok(self) -> None:
        if self._since is None:  # the usual case: no lock taken
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning("database available again after %.0f s", time.monotonic() - since)


_OUTAGES: weakref.WeakKeyDictionary[Engine, Outage] = weakref.WeakKeyDictionary()
_OUTAGES_LOCK = threading.Lock()


def outage(engine: Engine) -> Outage:
    """The engine's outage state, shared by everything in this process that uses it."""
    found = _OUTAGES.get(engine)
    if found is None:
        with _OUTAGES_LOCK:
            found = _OUTAGES.setdefault(engine, Outage())
    return found


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest version (versioned Alembic migrations). Several processes
    starting at once: one migrates, the others wait for it and then find the schema at head."""
    cfg = _alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.execution_options(sqlite_immediate=True).connect() as conn:
        if sqlite:  # wait for another replica's migration longer than for a lock (before BEGIN)
            conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout={int(MIGRATE_WAIT * 1000)}")
        try:
            # SQLite: BEGIN IMMEDIATE takes the write lock before Alembic reads the current revision.
            with conn.begin():
                if not sqlite:  # no time limit for another replica's migration, or for a long one
                    conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")


def check_database(engine: Engine) -> str | None:
    """None if the database answers a query; else a short reason. A SQLite file deleted under a
    running server still answers through the connections that have it open (and takes writes that
    are lost with it), so the file must also still be where the URL says."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        return "database file missing"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1 FROM alembic_version")
    except Exception as exc:  # unreachable, dropped, unreadable, ...
        return f"database error: {type(exc).__name__}"
    return None


def schema_head() -> str:
    """The newest schema revision this code knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a database never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A write transaction: committed when the block ends, rolled back on any exception. Waits
    LOCK_WAIT at most for this process's other writers (DatabaseBusy)."""
    lock = write_lock(engine)
    if lock is not None and not lock.acquire(timeout=LOCK_WAIT):
        raise DatabaseBusy(f"another writer of this process held the database for over {LOCK_WAIT:.0f} s")
    try:
        with Session(engine.execution_options(sqlite_immediate=True), expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if lock is not None:
            lock.release()


def sqlite_backup(source: Path, target: Path) -> None:
    """Copy a live SQLite database with SQLite's online backup API: one consistent snapshot, taken
    as a reader, so writers (WAL) go on meanwhile. The copy is one self-contained file, written
    beside `target` and renamed onto it, so a failed backup leaves no partial file."""
    partial = target.with_name(f".{target.name}.partial")
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30)  # never creates `source`
    try:
        partial.unlink(missing_ok=True)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: nothing written meanwhile is half-copied
            dst.execute("PRAGMA journal_mode=DELETE")  # a plain file, readable even from read-only media
        finally:
            dst.close()
        partial.replace(target)
    finally:
        src.close()
        partial.unlink(missing_ok=True)
