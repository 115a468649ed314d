"""Engine and sessions. One session per request or job step; migrations run at start."""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Keyed by the engine itself and forgotten with it: a new engine never inherits a dead one's lock.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
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
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def write_lock(engine: Engine) -> threading.RLock | None:
    """The lock this process's SQLite writers queue on (None for PostgreSQL)."""
    return _WRITE_LOCKS.get(engine)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest version (versioned Alembic migrations)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several replicas starting at once: one migrates, the others wait.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


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


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A write transaction: committed when the block ends, rolled back on any exception."""
    with write_lock(engine) or nullcontext():
        with Session(engine.execution_options(sqlite_immediate=True), expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
