"""Versioned migrations: a fresh database reaches head, again is a no-op, and matches the models."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from db.session import make_engine, migrate, schema_head


def test_migrations_reach_head_and_match_the_models(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # a second start changes nothing
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == schema_head()
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert {"unit", "member", "task", "report", "problem", "supervisionitem", "itemevent", "processedmessage",
            "outbox", "jobrun", "weblink"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_0006_keeps_answered_items_done_as_of_their_first_answer(db_url):
    """Before 0006 an item was done with its first 反馈: upgraded, it is 办结 as of then (the months
    already ranked keep their scores), and its 下发 and 反馈 are the timeline."""
    from alembic import command

    from db.session import _alembic_config

    engine = make_engine(db_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.execute(text("INSERT INTO unit (id, name, category, leader_userid, chat_id, webhook_key, aibot_chatid) "
                          "VALUES (1, 'u', '', '', '', '', '')"))
        for i in (1, 2):
            conn.execute(text("INSERT INTO supervisionitem (id, code, unit_id, content, deadline, month, created_by, "
                              f"created_at) VALUES ({i}, 'D{i}', 1, 'c{i}', '2026-03-28', '2026-03', 'admin', "
                              "'2026-03-20 02:00:00')"))
        for t in ("2026-03-25 02:00:00", "2026-03-26 02:00:00"):
            conn.execute(text("INSERT INTO feedback (item_id, userid, text, created_at) "
                              f"VALUES (1, 'li', 'answer', '{t}')"))
    migrate(engine)
    with engine.connect() as conn:
        items = conn.execute(text("SELECT code, status, answered_at IS NOT NULL, closed_at IS NOT NULL "
                                  "FROM supervisionitem ORDER BY id")).all()
        kinds = conn.execute(text("SELECT item_id, kind FROM itemevent ORDER BY id")).all()
    assert [tuple(r) for r in items] == [("D1", "办结", True, True), ("D2", "下发", False, False)]
    assert [tuple(r) for r in kinds] == [(1, "下发"), (2, "下发"), (1, "反馈"), (1, "反馈")]
    assert "feedback" not in inspect(engine).get_table_names()
    engine.dispose()
