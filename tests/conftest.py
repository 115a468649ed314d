"""Fixtures: a fresh database per test (SQLite always; PostgreSQL when DUBAN_TEST_POSTGRES_URL is set),
a seeded organisation, an app on a fixed clock, the bot on real HTTP, and the fake WeCom API."""
from __future__ import annotations

import itertools
import json
import os
import secrets
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bot.app import Application  # noqa: E402
from bot.clock import FixedClock  # noqa: E402
from bot.config import Config  # noqa: E402
from db.models import Member, Outbox, Task, Unit  # noqa: E402
from fake_wecom import FakeWeCom  # noqa: E402
from serving import free_port  # noqa: E402
from wecom_client import AES_KEY, CORP_ID, TOKEN  # noqa: E402

PG_ENV = "DUBAN_TEST_POSTGRES_URL"
TZ = ZoneInfo("Asia/Shanghai")


def outbox(app: Application, like: str = "") -> list[Outbox]:
    """The outbox rows whose key contains `like`, in the order they were added."""
    with Session(app.engine) as s:
        return [r for r in s.exec(select(Outbox).order_by(Outbox.id)) if like in r.key]


def content(row: Outbox) -> str:
    return json.loads(row.payload)["content"]


_said = itertools.count(1)


def say(app: Application, userid: str, words: str, when: datetime | None = None) -> str:
    """A chat message from `userid` (at `when`, the clock set there), answered by the app."""
    if when is not None:
        app.clock.set(when)
    return app.handle_message(userid, words, msg_id=f"said{next(_said)}")


def run_job(app: Application, job: str, when: datetime):
    """The scheduler's run of `job` at `when`, the clock set there."""
    from jobs import JobQueue

    app.clock.set(when)
    return JobQueue(app).run(job, when)


def at(*args) -> datetime:
    """A moment in Beijing time: at(2026, 3, 20, 10)."""
    return datetime(*args, tzinfo=TZ)


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _pg_database():
    base = pg_base_url()
    if not base:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL variant skipped (.ci/run sets it)")
    name = f"duban_t_{secrets.token_hex(6)}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    return url, admin, name


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'duban.db'}"
        return
    url, admin, name = _pg_database()
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url():
    url, admin, name = _pg_database()
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_config(db_url: str, api_base: str | None = None, **sections) -> Config:
    fast = {"backoff_seconds": 0.05, "backoff_max_seconds": 0.2, "rate_limit_retry_seconds": 0.05, "poll_seconds": 0.05,
            "quiet_hours": ""}  # tests on the system clock must not depend on the hour they run at
    data: dict = {"database": {"url": db_url}, "sender": fast}
    if api_base:
        data["wecom"] = {"corp_id": CORP_ID, "secret": "fakesecret", "token": TOKEN, "encoding_aes_key": AES_KEY,
                         "api_base": api_base, "timeout_seconds": 1.0}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Config.model_validate(data)


def add_units(app: Application, count: int, name: str) -> None:
    """`count` more units, each with an app chat and one task for the whole campaign.
    `name` is a format string taking the unit's number, e.g. "第{:03d}党支部"."""
    d = datetime(2026, 3, 1).date()
    with app.session() as s:
        for i in range(count):
            unit = Unit(name=name.format(i), chat_id=f"c{i}")
            s.add(unit)
            s.flush()
            s.add(Task(code=f"X{i}", unit_id=unit.id, line="深学争优", content="学习", start_date=d,
                       due_date=d.replace(month=12, day=31)))


def seed(app: Application) -> None:
    """A small college: an admin office, two departments and a library."""
    with app.session() as s:
        office = Unit(name="党政办公室", category="处室", webhook_key="key-office")
        jd = Unit(name="机电工程系", category="系（部、院）", chat_id="chat-jd")
        xx = Unit(name="信息工程系", category="系（部、院）", webhook_key="key-xx")
        lib = Unit(name="图书馆", category="馆", chat_id="chat-lib")
        s.add_all([office, jd, xx, lib])
        s.flush()
        s.add_all([
            Member(userid="admin", name="王管理", unit_id=office.id, role="管理员"),
            Member(userid="zhang", name="张三", unit_id=jd.id, role="负责人"),
            Member(userid="li", name="李四", unit_id=jd.id, role="成员"),
            Member(userid="wang", name="王五", unit_id=xx.id, role="负责人"),
            Member(userid="zhao", name="赵六", unit_id=xx.id, role="成员"),
            Member(userid="sun", name="孙七", unit_id=lib.id, role="负责人"),
        ])
        s.flush()
        jd.leader_userid, xx.leader_userid, lib.leader_userid = "zhang", "wang", "sun"
        s.add_all([jd, xx, lib])
        d = lambda m, day: datetime(2026, m, day).date()  # noqa: E731
        s.add_all([
            Task(code="T1", unit_id=jd.id, line="敢为争先", content="建成智能制造实训中心", owner_userid="li",
                 leader_in_charge="李副校长", start_date=d(3, 1), due_date=d(12, 31)),
            Task(code="T2", unit_id=jd.id, line="深学争优", content="开展党的二十大精神专题学习", owner_userid="zhang",
                 start_date=d(3, 1), due_date=d(6, 30)),
            Task(code="T3", unit_id=xx.id, line="实干争效", content="上线一站式学生服务大厅", owner_userid="zhao",
                 start_date=d(3, 1), due_date=d(4, 30)),
            Task(code="T4", unit_id=xx.id, line="敢为争先", content="完成双高校中期自评报告", owner_userid="wang",
                 start_date=d(2, 1), due_date=d(3, 15)),
            Task(code="T5", unit_id=lib.id, line="实干争效", content="延长自习室开放时间", owner_userid="sun",
                 start_date=d(3, 1), due_date=d(12, 31)),
        ])


def add_overseer(app: Application, userid: str = "vp", name: str = "刘副校长") -> None:
    """A 分管领导 (on 党政办公室's roll) over 机电工程系 by the roster's 分管单位, and over 图书馆 because
    T5's 责任领导 names them; not over 信息工程系."""
    from db.models import LeaderUnit
    from sqlmodel import select

    with app.session() as s:
        units = {u.name: u for u in s.exec(select(Unit))}
        s.add(Member(userid=userid, name=name, unit_id=units["党政办公室"].id, role="分管领导"))
        s.flush()
        s.add(LeaderUnit(userid=userid, unit_id=units["机电工程系"].id))
        t5 = s.exec(select(Task).where(Task.code == "T5")).one()
        t5.leader_in_charge = name
        s.add(t5)


@pytest.fixture
def clock():
    return FixedClock(at(2026, 3, 20, 10, 0))


@pytest.fixture
def app(db_url, clock):
    application = Application(make_config(db_url), clock=clock)
    application.migrate()
    seed(application)
    yield application
    application.engine.dispose()


@pytest.fixture
def fake():
    f = FakeWeCom().start()
    yield f
    f.stop()


class ServerThread:
    """The bot's real ASGI app on a real socket, in this process."""

    def __init__(self, asgi, **options):
        self.port = free_port()
        # Idle keep-alive connections are kept for a minute, not uvicorn's 5 s: a test's client that
        # waited longer than that on a loaded machine could send on a connection being closed.
        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **{"timeout_keep_alive": 60, **options}))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "server did not start"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
