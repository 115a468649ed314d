"""The writer process (bot/writer_process.py): `duban serve` answers WeCom in one process and handles
the messages in a child process. Killing the child in the middle of a message loses nothing and
stores nothing twice; a message that kills every child is answered with an error instead of killing
children forever; killing or stopping the server takes the child with it."""
from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from bot.app import Application
from bot.wire import build_asgi
from bot.writer_process import ProcessWriter
from conftest import ROOT, ServerThread, make_config, seed
from db.models import ProcessedMessage, Report, Unit
from serving import child_pids, free_port, proc_stat, wait_healthy
from test_kill import wait_for, write_config
from wecom_client import WeComSide

BUSY = "系统繁忙"  # bot/templates/server_error.j2


class PausingApp(Application):
    """Stops for a minute on a message containing 停 — before handling its batch or after
    committing it — and says so by creating `marker`. Only the first child stops: a later child
    finds the marker there."""

    def __init__(self, config, clock, marker: str, when: str):
        super().__init__(config, clock=clock)
        self.marker, self.when = Path(marker), when
        self.pause = not self.marker.exists()

    def _stop_here(self, messages, when: str) -> None:
        if self.pause and self.when == when and any("停" in text for _, text, _ in messages):
            self.marker.write_text(str(os.getpid()))
            time.sleep(60)

    def handle_batch(self, messages):
        self._stop_here(messages, "before commit")
        results = super().handle_batch(messages)
        self._stop_here(messages, "after commit")
        return results


def pausing_app(config, clock, marker: str, when: str) -> Application:
    return PausingApp(config, clock, marker, when)


class PoisonedApp(Application):
    """Dies on a message containing 毒, as a crash in a C library would."""

    def handle_batch(self, messages):
        if any("毒" in text for _, text, _ in messages):
            os._exit(3)
        return super().handle_batch(messages)


def poisoned_app(config, clock) -> Application:
    return PoisonedApp(config, clock=clock)


def broken_app(config, clock) -> Application:
    raise ValueError("数据库地址不可用")


def stored(app) -> tuple[list[tuple[str, int, str]], int]:
    with Session(app.engine) as s:
        reports = sorted((r.userid, r.percent, r.text) for r in s.exec(select(Report)))
        processed = s.exec(select(func.count()).select_from(ProcessedMessage)).one()
    return reports, processed


@pytest.mark.parametrize("when", ["before commit", "after commit"])
def test_a_writer_process_killed_mid_message_loses_nothing_and_stores_nothing_twice(db_url, clock, fake,
                                                                                     tmp_path, when):
    """li's 汇报 is in the child when the child is killed: before its batch is handled, or after
    the batch is committed but before the replies went back. Either way li gets the right answer,
    from the next child, the report is stored once, and WeCom's retry gets the same words. Messages
    that came meanwhile are answered too."""
    app = Application(make_config(db_url, api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    marker = tmp_path / "paused"
    writer = ProcessWriter(app, factory=functools.partial(pausing_app, app.config, clock, str(marker), when))
    try:
        with ServerThread(build_asgi(app, writer=writer)) as server, ThreadPoolExecutor(8) as pool:
            wecom = WeComSide(server.base)
            first = writer.pid
            paused = pool.submit(wecom.say, "li", "汇报 T1 40% 停在这里", "8001")
            wait_for(marker.exists, 20, "the child to stop on li's message")
            assert int(marker.read_text()) == first
            others = [pool.submit(wecom.say, "zhao", f"汇报 T3 {p}% 后来的", str(8100 + p)) for p in (10, 20, 30)]
            time.sleep(0.2)  # they reach the stopped child, or wait in the server for it
            os.kill(first, signal.SIGKILL)

            reply = paused.result(timeout=30)
            assert "40%" in reply and BUSY not in reply
            for p, other in zip((10, 20, 30), others):
                assert f"{p}%" in other.result(timeout=30)
            assert writer.pid not in (None, first)
            assert wecom.say("li", "汇报 T1 40% 停在这里", "8001") == reply  # WeCom's retry
    finally:
        app.engine.dispose()
    reports, processed = stored(app)
    assert reports == [("li", 40, "停在这里"), ("zhao", 10, "后来的"), ("zhao", 20, "后来的"), ("zhao", 30, "后来的")]
    assert processed == 4


def test_a_stuck_writer_process_is_replaced_and_the_message_answered(tmp_path, clock, fake):
    """The child stops answering (a hung call) with li's 汇报 in hand: after stall_seconds it is
    killed, the next child answers li, and the report is stored once."""
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}", api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    marker = tmp_path / "paused"
    writer = ProcessWriter(app, factory=functools.partial(pausing_app, app.config, clock, str(marker),
                                                          "before commit"), stall_seconds=1.5)
    try:
        with ServerThread(build_asgi(app, writer=writer)) as server:
            first = writer.pid
            started = time.monotonic()
            reply = WeComSide(server.base).say("li", "汇报 T1 45% 停住不动", "8501")
            assert "45%" in reply and time.monotonic() - started >= 1.5
            assert writer.pid not in (None, first) and gone(first)
    finally:
        app.engine.dispose()
    assert stored(app) == ([("li", 45, "停住不动")], 1)


def test_a_message_that_kills_every_writer_process_gets_an_error_and_the_rest_go_on(tmp_path, clock, fake):
    """A message on which the child dies (a crash, not an exception) is tried by a second child; when
    that dies too, the person is told to try again later, nothing of it is stored, and the third
    child answers everyone else."""
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}", api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    writer = ProcessWriter(app, factory=functools.partial(poisoned_app, app.config, clock))
    try:
        with ServerThread(build_asgi(app, writer=writer)) as server:
            wecom = WeComSide(server.base)
            first = writer.pid
            assert BUSY in wecom.say("li", "汇报 T1 50% 有毒", "9001")
            assert "60%" in wecom.say("zhao", "汇报 T3 60% 照常", "9002")
            assert writer.pid not in (None, first)
    finally:
        app.engine.dispose()
    assert stored(app) == ([("zhao", 60, "照常")], 1)


def test_a_writer_process_that_cannot_start_stops_the_server_starting_with_its_reason(tmp_path, clock):
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}"), clock=clock)
    writer = ProcessWriter(app, factory=functools.partial(broken_app, app.config, clock), start_timeout=30)

    async def start():
        writer.start()

    with pytest.raises(RuntimeError, match="writer process could not start: ValueError: 数据库地址不可用"):
        asyncio.run(start())
    assert writer.pid is None


def gone(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is None or fields[0] == "Z"  # a zombie has exited; init reaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_writer_process_ends_with_duban_serve(db_url, fake, tmp_path, how):
    """`duban serve` answers through its writer process; when serve is stopped (SIGTERM) or killed
    (SIGKILL), the writer process ends too: nothing is left running."""
    app = Application(make_config(db_url))
    app.migrate()
    seed(app)
    app.engine.dispose()
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config, db_url, fake.base, port)
    with (tmp_path / "serve.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--config", str(config)], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_healthy(port, proc, timeout=30), (tmp_path / "serve.log").read_text(errors="replace")
        writers = child_pids(proc.pid)
        assert len(writers) == 1, writers
        assert "30%" in WeComSide(f"http://127.0.0.1:{port}").say("li", "汇报 T1 30% 经子进程", "7001")
        proc.send_signal(how)
        proc.wait(20)
        wait_for(lambda: gone(writers[0]), 20, "the writer process to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if how == signal.SIGTERM:  # a clean shutdown (uvicorn ends by raising the signal it caught)
        log_text = (tmp_path / "serve.log").read_text(errors="replace")
        assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in log_text, log_text


def test_a_job_writing_holds_up_only_the_messages_not_the_server(tmp_path, clock, fake):
    """A job in the server process holds SQLite's write lock: the writer process's 汇报 waits for
    it, the server meanwhile answers health checks and WeCom's URL check, and once the job commits
    the 汇报 is answered and stored after the job's own write."""
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}", api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    try:
        with ServerThread(build_asgi(app, writer_process=True)) as server, ThreadPoolExecutor(1) as pool:
            wecom = WeComSide(server.base)
            with app.session() as s:  # the job's write transaction
                s.add(Unit(name="作业新增单位"))
                s.flush()
                waiting = pool.submit(wecom.say, "li", "汇报 T1 30% 等作业写完", "9101")
                time.sleep(0.5)
                assert not waiting.done()
                assert wecom.http.get(server.base + "/healthz").status_code == 200
                assert wecom.verify_url().status_code == 200
            assert "30%" in waiting.result(timeout=10)
    finally:
        app.engine.dispose()
    assert stored(app) == ([("li", 30, "等作业写完")], 1)
    with Session(app.engine) as s:
        assert s.exec(select(Unit).where(Unit.name == "作业新增单位")).one()
