"""A database that hangs or goes away, with the bot on real HTTP: a callback is answered before
WeCom gives up (5 s), its reply follows as an app message and WeCom's retry is handled once; pages
answer a short Chinese 503; the log says once that the database is away and once that it is back,
with no traceback, while the sender keeps polling (less and less often)."""
from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlmodel import Session, select

from bot.app import Application
from bot.wecom.callback import build_asgi
from bot.wecom.sender import ConsoleTransport, OutboxWorker
from conftest import ServerThread, content, make_config, outbox, seed
from db.models import Report
from test_web import SECRET, signed_in
from wecom_client import WeComSide

WECOM_WAITS = 5.0  # WeCom gives up on a callback after 5 s (and sends it again)


@pytest.fixture
def served(db_url, clock, fake):
    app = Application(make_config(db_url, api_base=fake.base, web={"session_secret": SECRET}), clock=clock)
    app.migrate()
    seed(app)
    with ServerThread(build_asgi(app)) as server:
        app.config.web.base_url = server.base
        wecom = WeComSide(server.base, clock=clock)
        wecom.http = httpx.Client(timeout=WECOM_WAITS)  # an answer later than WeCom waits fails the test
        yield app, server, wecom
    app.engine.dispose()


def _admin_engine(url: str):
    return create_engine(make_url(url).set(drivername="postgresql+psycopg", database="postgres"),
                         isolation_level="AUTOCOMMIT")


@contextmanager
def held(url: str):
    """Another process's write transaction holds the database (SQLite's write lock; on PostgreSQL,
    the table of answered MsgIds, which every chat message reads first)."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(make_url(url).database, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()
        return
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with engine.connect() as con:
        con.execute(text("LOCK TABLE processedmessage IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            con.rollback()
    engine.dispose()


@contextmanager
def away(app: Application, url: str):
    """The database stops answering: SQLite's file is gone (a folder in its place), PostgreSQL no
    longer takes connections and drops the open ones; then it is back."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        app.engine.dispose()
        names = [path + suffix for suffix in ("", "-wal", "-shm") if shutil.os.path.exists(path + suffix)]
        for name in names:
            shutil.move(name, name + ".away")
        shutil.os.mkdir(path)
        try:
            yield
        finally:
            shutil.os.rmdir(path)
            for name in names:
                shutil.move(name + ".away", name)
        return
    name = make_url(url).database
    admin = _admin_engine(url)
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
    try:
        yield
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def wait_for(cond, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_callback_is_answered_in_time_while_the_database_hangs_and_its_retry_is_handled_once(served, db_url):
    app, server, wecom = served
    late_note = app.renderer.render("reply_later")
    with held(db_url):
        # The message and WeCom's retry of it, while the database keeps the writer waiting.
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: wecom.say("li", "汇报 T1 30% 完成方案论证", "7001"), range(2)))
        assert answers == [late_note, late_note]
        with Session(app.engine) as s:
            assert not s.exec(select(Report)).all()
    wait_for(lambda: outbox(app, "reply:li:7001:late"), "the reply, as an app message")
    with Session(app.engine) as s:
        assert [(r.userid, r.percent) for r in s.exec(select(Report))] == [("li", 30)]  # handled once
    late = outbox(app, ":7001")
    assert [(r.key, r.channel, r.target) for r in late] == [("reply:li:7001:late", "app", "li")]
    assert content(late[0]).startswith("✅ 已收到 T1 汇报：进度 30%")
    assert wecom.say("li", "汇报 T1 30% 完成方案论证", "7001") == content(late[0])  # a later retry: the same
    assert len(outbox(app, ":7001")) == 1


def test_while_the_database_is_away_pages_say_so_in_chinese_and_the_log_has_one_line_each_way(
        served, db_url, fake, caplog):
    app, server, wecom = served
    admin = signed_in(server, fake, "admin")
    assert admin.get("/web/").status_code == 200
    worker = OutboxWorker(app.engine, ConsoleTransport(out=lambda _: None), app.clock, app.config.sender)
    caplog.set_level(logging.INFO)
    try:
        with away(app, db_url):
            worker.start()  # (once it is away: a pass begun before might still end well on SQLite)
            for path in ("/web/", "/web/me", "/web/unit/2", "/web/admin", "/web/"):
                resp = admin.get(path)
                assert resp.status_code == 503 and "暂时无法访问" in resp.text and "数据库" in resp.text, path
                assert "Internal Server Error" not in resp.text
            assert wecom.say("li", "汇报 T1 40% 推进", "7002") == app.renderer.render("server_error")
            time.sleep(1.0)  # the sender polls on meanwhile (every 0.05 s when all is well)
        wait_for(lambda: admin.get("/web/").status_code == 200, "the pages back")
        assert wecom.say("li", "汇报 T1 40% 推进", "7003").startswith("✅ 已收到 T1 汇报")
        wait_for(lambda: any("available again" in r.getMessage() for r in caplog.records), "the outage's end")
    finally:
        worker.stop()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("duban") and r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].startswith("database unavailable: ") and lines[1].startswith("database available again after")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_the_senders_polling_backs_off_up_to_30_s_while_the_database_is_away(tmp_path, clock, caplog):
    """The sender's background loop against a database that is not there: each poll waits twice as
    long as the one before, up to 30 s, and the log has one line (not a traceback a poll)."""
    from bot.config import SenderConfig
    from db.session import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'duban.db'}")  # a folder that does not exist
    worker = OutboxWorker(engine, ConsoleTransport(out=lambda _: None), clock, SenderConfig(poll_seconds=1.0))
    waits: list[float] = []

    class Waits:  # the loop's stop event, recording how long each poll waits instead of waiting
        def is_set(self) -> bool:
            return len(waits) >= 9

        def wait(self, seconds: float) -> bool:
            waits.append(seconds)
            return False

    worker._stop = Waits()
    caplog.set_level(logging.INFO)
    worker._loop()
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    lines = [r for r in caplog.records if r.name.startswith("duban")]
    assert len(lines) == 1 and lines[0].getMessage().startswith("database unavailable") and not lines[0].exc_info
    worker.pool.shutdown()
    engine.dispose()
