"""Versioned migrations: a fresh database reaches head, again is a no-op, and matches the models."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from db.session import make_engine, migrate


def test_migrations_reach_head_and_match_the_models(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # a second start changes nothing
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003_robot"
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert {"unit", "member", "task", "report", "problem", "supervisionitem", "feedback", "processedmessage",
            "outbox", "jobrun"} <= set(inspect(engine).get_table_names())
    engine.dispose()
