"""/healthz over real HTTP: 200 "ok" only while the database answers and the sender makes progress."""
from __future__ import annotations

import shutil
import time

import httpx
from sqlalchemy import create_engine, text

from bot.app import Application
from bot.clock import SystemClock
from bot.cli import _worker
from bot.reply import Push, Target
from bot.wecom.callback import build_asgi
from conftest import ServerThread, make_config, pg_base_url, seed
from wecom_client import WeComSide


def health(server) -> httpx.Response:
    return httpx.get(server.base + "/healthz", timeout=10)


def wait_for_status(server, status: int, limit: float = 20.0) -> httpx.Response:
    """Poll /healthz until it answers `status` (the sender's state changes in the background)."""
    deadline = time.monotonic() + limit
    while True:
        resp = health(server)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_healthz_answers_503_when_the_database_is_gone(db_url, tmp_path, clock, fake):
    if db_url.startswith("sqlite"):
        (tmp_path / "data").mkdir()
        db_url = f"sqlite:///{tmp_path / 'data' / 'duban.db'}"
    app = Application(make_config(db_url, api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    worker = _worker(app)
    worker.start()
    try:
        with ServerThread(build_asgi(app, worker)) as server:
            wecom = WeComSide(server.base, clock=clock)
            assert "已收到" in wecom.say("li", "汇报 T1 30% 完成方案", "1")
            ok = health(server)
            assert ok.status_code == 200 and ok.text == "ok"
            if db_url.startswith("sqlite"):
                shutil.rmtree(tmp_path / "data")  # the data directory deleted under the running server
            else:
                name = db_url.rsplit("/", 1)[1]
                admin = create_engine(pg_base_url().replace("postgresql://", "postgresql+psycopg://", 1),
                                      isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()
            gone = health(server)
            assert gone.status_code == 503 and "database" in gone.text
    finally:
        worker.stop()
        app.engine.dispose()


def test_healthz_answers_503_while_the_sender_is_stuck(tmp_path, fake):
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}", api_base=fake.base,
                                  wecom={"timeout_seconds": 60.0}, sender={"stuck_seconds": 0.5}),
                      clock=SystemClock())
    app.migrate()
    seed(app)
    worker = _worker(app)
    worker.start()
    try:
        with ServerThread(build_asgi(app, worker)) as server:
            assert wait_for_status(server, 200).status_code == 200
            fake.freeze_after(0)  # WeCom takes the message and never answers (until released)
            with app.session() as s:
                app.enqueue_push(s, Push(Target("app", "li"), "server_error"), "stuck")
            assert fake.held.wait(10)
            stuck = wait_for_status(server, 503)
            assert stuck.status_code == 503 and "sender" in stuck.text
            fake.release()
            assert wait_for_status(server, 200).text == "ok"
    finally:
        fake.release()
        worker.stop()
        app.engine.dispose()
