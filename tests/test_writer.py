"""The callback's writer (bot/writer.py) and the hot path under it (db/prepared.py, bot/text.py).

On SQLite most messages are handled on the event loop and a few kinds go to a thread; on
PostgreSQL every message goes to one of a few threads. Either way a person's messages must be
handled in the order they came, a job writing must not freeze the server, and the shortcuts on the
message path must give what the ORM and the slow path give."""
from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import Session, select

from bot.app import Application
from bot.clock import Month
from bot.reply import Reply
from bot.router import Dispatcher, Router
from bot.text import _normalize_each, normalize_map
from bot.wire import build_asgi
from bot.writer import MessageWriter
from bot.writer_process import ProcessWriter
from conftest import ServerThread, make_config, seed
from db import queries
from db.models import Problem, ProcessedMessage, Report, Task
from db.session import write_lock
from handlers import ROUTERS
from handlers.common import fail
from wecom_client import WeComSide


def t1_versions(app) -> list[tuple[int, int]]:
    with Session(app.engine) as s:
        task = s.exec(select(Task).where(Task.code == "T1")).one()
        return [(r.version, r.percent) for r in s.exec(select(Report).where(Report.task_id == task.id)
                                                       .order_by(Report.version))]


@pytest.mark.parametrize("in_child", [False, True], ids=["in the server", "writer process"])
def test_one_persons_messages_are_handled_in_the_order_they_came(app, in_child):
    """li's reports arrive together with an all-units command and someone else's report: each of
    li's is a new version after the one before, whichever path (loop or thread) each one took, in
    the server process or in its writer process (bot/writer_process.py)."""
    writer = ProcessWriter(app) if in_child else MessageWriter(app)
    sent = []
    for round_ in range(10):
        sent += [("li", f"汇报 T1 {round_ * 8 + 1}% 第一条", f"o{round_}a"),
                 ("admin", "状态", f"o{round_}b"),
                 ("li", f"汇报 T1 {round_ * 8 + 2}% 第二条", f"o{round_}c"),
                 ("zhao", f"汇报 T3 {round_ * 8 + 3}% 别人的", f"o{round_}d"),
                 ("li", "排名", f"o{round_}e"),
                 ("li", f"汇报 T1 {round_ * 8 + 4}% 第三条", f"o{round_}f")]

    async def burst():
        writer.start()
        try:
            return await asyncio.gather(*(writer.handle(*m) for m in sent))
        finally:
            writer.stop()

    outcomes = asyncio.run(burst())
    for (user, text, _), outcome in zip(sent, outcomes):
        if text.startswith("汇报"):
            assert text.split()[2] in outcome.reply, (text, outcome.reply)
    li_percents = [int(t.split()[2][:-1]) for u, t, _ in sent if u == "li" and t.startswith("汇报")]
    assert t1_versions(app) == [(v, p) for v, p in enumerate(li_percents, 1)]


def test_a_job_writing_does_not_freeze_the_server(tmp_path, clock, fake):
    """While a job holds SQLite's write lock, a 汇报 waits for it, and meanwhile the server still
    answers (health checks, WeCom's URL check); when the job is done, the 汇报 is answered."""
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}", api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    lock = write_lock(app.engine)
    try:
        with ServerThread(build_asgi(app)) as server, ThreadPoolExecutor(1) as pool:
            wecom = WeComSide(server.base)
            with lock:
                waiting = pool.submit(wecom.say, "li", "汇报 T1 30% 等作业写完", "9001")
                time.sleep(0.3)  # the callback has reached the writer by now
                health = httpx.get(server.base + "/healthz", timeout=5)
                check = wecom.verify_url("still-here")
                assert health.status_code == 200
                assert check.status_code == 200 and check.text == "still-here"
                assert not waiting.done()
                assert t1_versions(app) == []
            assert "30%" in waiting.result(timeout=10)
        assert t1_versions(app) == [(1, 30)]
    finally:
        app.engine.dispose()


@pytest.mark.parametrize("together", [True, False], ids=["one_batch", "one_by_one"])
@pytest.mark.parametrize("flushed", [True, False])
@pytest.mark.parametrize("how", ["wrong_form", "crash"])
def test_orm_writes_of_a_failed_message_are_not_kept(db_url, clock, how, flushed, together):
    """A handler that changed a loaded object and added a new one (sent to the database or still
    only in the session), then failed: neither write is kept, the messages around it (in the same
    batch, or each in its own transaction) are, and the session still works for them."""
    extra = Router("test")

    @extra.command("改坏")
    def spoil(ctx) -> Reply:
        task = ctx.session.exec(select(Task).where(Task.code == "T1")).one()
        task.content = "不该留下的内容"
        ctx.session.add(Problem(code="PX", unit_id=task.unit_id, description="不该留下", created_at=ctx.now))
        if flushed:
            ctx.session.flush()
        if how == "crash":
            raise RuntimeError("a bug in a handler")
        raise fail("问题", "missing_args")

    app = Application(make_config(db_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    app.migrate()
    seed(app)
    try:
        sent = [("li", "汇报 T1 10% 之前", "s1"), ("li", "改坏", "s2"), ("li", "汇报 T1 20% 之后", "s3"),
                ("li", "任务", "s4")]
        results = app.handle_batch(sent) if together else [app.handle_batch([m])[0] for m in sent]
        assert "10%" in results[0].reply and "20%" in results[2].reply
        assert "建成智能制造实训中心" in results[3].reply  # the task list shows the real content
        if how == "crash":
            assert isinstance(results[1], RuntimeError)
        else:
            assert "格式不完整" in results[1].reply
        with Session(app.engine) as s:
            assert s.exec(select(Task.content).where(Task.code == "T1")).one() == "建成智能制造实训中心"
            assert s.exec(select(Problem)).all() == []
            kept = {p.msg_id for p in s.exec(select(ProcessedMessage))}
        assert kept == ({"s1", "s3", "s4"} if how == "crash" else {"s1", "s2", "s3", "s4"})
        assert t1_versions(app) == [(1, 10), (2, 20)]
    finally:
        app.engine.dispose()


def test_plain_row_queries_give_the_values_the_orm_gives(app):
    """The prepared statements on the message path convert values as SQLAlchemy does: dates come
    back as dates (SQLite stores text), datetimes and numbers as the ORM reads them."""
    with app.session() as s:
        task = queries.get_task(s, "T1", lock=True)
        orm = s.exec(select(Task).where(Task.code == "T1")).one()
        assert tuple(task) == tuple(getattr(orm, f) for f in task._fields)
        row, left = queries.add_report(s, task, "li", 40, "对照", app.clock.now(), app.config.schedule.tz,
                                       unreported_in=task.unit_id)
        assert left == queries.unreported_count(s, task.unit_id, Month.parse(row.month))
        queries.record_processed(s, "p1", "li", "回复", app.clock.now())
    with Session(app.engine) as s:
        stored = s.get(Report, row.id)
        assert tuple(row) == tuple(getattr(stored, f) for f in row._fields)
        seen, member, unit = queries.incoming(s, "li", "p1")
        assert (seen, member.name, unit.name) == ("回复", "李四", "机电工程系")
        assert queries.incoming(s, "nobody", "p1") == ("回复", None, None)
        assert queries.incoming(s, "li", "p2").seen is None


def test_normalising_takes_the_short_way_only_where_it_changes_nothing():
    """Messages that need no change skip the per-character pass; for any text the result (and the
    map back to what the user typed) is the same as the per-character pass gives."""
    rng = random.Random(7)
    alphabet = ("汇报T1 30%进度，；：、ａＢ１２３％　\r\n\t/#"
                "e\u0301\u0316\u1100\u1161\u11a8가각ﬁ①㈱ｶﾞ\u2003")
    samples = ["汇报 T1 30% 已完成", "汇报　Ｔ１　３０％", "状态\r\n", "", "ﬁ", "가\u11a8", "e\u0301"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    for text in samples:
        assert normalize_map(text) == _normalize_each(text), repr(text)


def two_batches_at_once(pg_url, clock, extra: Router, batch_a: list, batch_b: list) -> tuple[Application, list, list]:
    """The real commands plus `extra` on PostgreSQL; the two batches handled at the same moment, as the
    two writer threads (or two replicas) do. Returns the app (disposed by the caller) and the results."""
    app = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    app.migrate()
    seed(app)
    barrier = threading.Barrier(2)

    def batch(messages):
        barrier.wait()
        return app.handle_batch(messages)

    try:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.submit(batch, batch_a), pool.submit(batch, batch_b)
            return app, a.result(timeout=30), b.result(timeout=30)
    except BaseException:
        app.engine.dispose()
        raise


def test_a_msgid_in_two_batches_at_once_is_stored_once_and_answered_alike(pg_url, clock):
    """WeCom's retry of a slow message can reach the other writer thread (or another replica) while
    the first is still at work. Both batches handle it, neither sees the other's answer yet; the
    second to commit finds the MsgId taken, is rolled back and run again, and answers it from the
    first's record: one report, the same words twice, and the rest of both batches stored."""
    extra = Router("test")
    calls = []

    @extra.command("慢")
    def slow(ctx, args) -> Reply:
        calls.append(ctx.msg_id)
        task = queries.get_task(ctx.session, "T1", lock=True)
        rep, _ = queries.add_report(ctx.session, task, ctx.member.userid, 10, "慢", ctx.now, ctx.tz)
        time.sleep(0.3)  # the other batch reaches the same MsgId meanwhile
        return Reply("report_ok", {"task": task, "report": rep, "left": 0, "unit": ctx.unit})

    app, (a_dup, a2), (b_dup, b2) = two_batches_at_once(
        pg_url, clock, extra,
        [("li", "慢", "dup"), ("li", "汇报 T1 30% 甲", "a2")], [("li", "慢", "dup"), ("zhao", "汇报 T3 50% 乙", "b2")])
    try:
        assert a_dup.reply == b_dup.reply and "10%" in a_dup.reply
        assert "30%" in a2.reply and "50%" in b2.reply
        assert calls == ["dup", "dup"]  # both tried it; the second batch's run again answered from the record
        with Session(app.engine) as s:
            texts = sorted(r.text for r in s.exec(select(Report)))
            processed = {p.msg_id: p.reply for p in s.exec(select(ProcessedMessage))}
        assert texts == sorted(["慢", "甲", "乙"])
        assert processed == {"dup": a_dup.reply, "a2": a2.reply, "b2": b2.reply}
    finally:
        app.engine.dispose()


def test_two_batches_that_deadlock_on_postgresql_both_finish(pg_url, clock):
    """PostgreSQL runs two writer threads, each a batch at a time. Two batches that take the same two
    rows in opposite order deadlock; PostgreSQL cancels one statement, its batch is rolled back and
    run again (with savepoints) after the other commits: every message is answered and stored
    once, none fails."""
    extra = Router("test")
    calls = []

    @extra.command("占")
    def take(ctx, args) -> Reply:
        calls.append(ctx.msg_id)
        # Read-modify-write, so the row is locked as it is read (until the batch commits).
        task = ctx.session.exec(select(Task).where(Task.code == args.strip()).with_for_update()).one()
        task.milestone = f"{task.milestone}{ctx.msg_id};"
        ctx.session.flush()
        time.sleep(0.3)  # the other batch takes its first row meanwhile
        return Reply("text_only")

    app, a, b = two_batches_at_once(pg_url, clock, extra, [("li", "占 T1", "a1"), ("li", "占 T3", "a2")],
                                    [("zhao", "占 T3", "b1"), ("zhao", "占 T1", "b2")])
    try:
        results = a + b
        assert not [r for r in results if isinstance(r, Exception)], results
        twice = sorted(m for m, n in Counter(calls).items() if n == 2)
        assert len(calls) == 6 and twice in (["a1", "a2"], ["b1", "b2"])  # the victim's batch, again
        with Session(app.engine) as s:
            marks = {t.code: t.milestone for t in s.exec(select(Task).where(Task.code.in_(["T1", "T3"])))}
            assert {p.msg_id for p in s.exec(select(ProcessedMessage))} == {"a1", "a2", "b1", "b2"}
        assert sorted(marks["T1"].split(";")[:-1]) == ["a1", "b2"]
        assert sorted(marks["T3"].split(";")[:-1]) == ["a2", "b1"]
    finally:
        app.engine.dispose()
