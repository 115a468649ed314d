"""The callback's writer (bot/writer.py): one thread, batches in one transaction, a savepoint a message.

What a user feels, on SQLite and PostgreSQL: a person's messages are handled in the order they came;
a job or a long command holding the database does not stop the server answering; a failed
message leaves none of its writes; a MsgId handled by two writers at once (two replicas) is
stored once and answered alike; `duban serve` killed in the middle of a burst loses nothing that
was answered and stores nothing twice when WeCom retries."""
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
from bot.reply import Reply
from bot.router import Dispatcher, Router
from bot.text import _normalize_each, normalize_map
from bot.wecom.callback import build_asgi
from bot.writer import MessageWriter
from conftest import ServerThread, make_config, seed
from db import queries
from db.month import Month
from db.models import Problem, ProcessedMessage, Report, Task
from db.session import write_lock
from handlers import ROUTERS
from handlers.common import fail
from test_kill import Serve, write_config
from serving import free_port
from wecom_client import WeComSide


def t1_versions(app) -> list[tuple[int, int]]:
    with Session(app.engine) as s:
        task = s.exec(select(Task).where(Task.code == "T1")).one()
        return [(r.version, r.percent) for r in s.exec(select(Report).where(Report.task_id == task.id)
                                                       .order_by(Report.version))]


def test_one_persons_messages_are_handled_in_the_order_they_came(app):
    """li's reports arrive together with all-units commands and someone else's report: each of li's
    is a new version after the one before, and each reply names its own percent."""
    writer = MessageWriter(app, max_batch=7)  # batches that cut across each round
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

    replies = asyncio.run(burst())
    for (user, text, _), reply in zip(sent, replies):
        if text.startswith("汇报"):
            assert text.split()[2] in reply, (text, reply)
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
            wecom = WeComSide(server.base, clock=clock)
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


def test_write_locks_belong_to_their_engine():
    """Each SQLite engine has its own write lock, forgotten with the engine; PostgreSQL has none.
    (Keyed by id(), a new engine could inherit a dead one's lock.)"""
    from db.session import make_engine

    first = make_engine("sqlite://")
    lock = write_lock(first)
    assert lock is not None and write_lock(make_engine("sqlite://")) is not lock
    del first
    import gc

    gc.collect()
    assert all(write_lock(make_engine("sqlite://")) is not lock for _ in range(20))
    assert write_lock(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")) is None


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
        assert "10%" in results[0] and "20%" in results[2]
        assert "建成智能制造实训中心" in results[3]  # the task list shows the real content
        if how == "crash":
            assert isinstance(results[1], RuntimeError)
        else:
            assert "格式不完整" in results[1]
        with Session(app.engine) as s:
            assert s.exec(select(Task.content).where(Task.code == "T1")).one() == "建成智能制造实训中心"
            assert s.exec(select(Problem)).all() == []
            kept = {p.msg_id for p in s.exec(select(ProcessedMessage))}
        assert kept == ({"s1", "s3", "s4"} if how == "crash" else {"s1", "s2", "s3", "s4"})
        assert t1_versions(app) == [(1, 10), (2, 20)]
    finally:
        app.engine.dispose()


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


def two_batches_at_once(db_url, clock, extra: Router, batch_a: list, batch_b: list) -> tuple[Application, list, list]:
    """The real commands plus `extra`; the two batches handled at the same moment by two
    Applications on one database, as two replicas' writers do. Returns the first app (disposed by
    the caller) and the results."""
    app = Application(make_config(db_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    app.migrate()
    seed(app)
    replica = Application(make_config(db_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    barrier = threading.Barrier(2)

    def batch(application, messages):
        barrier.wait()
        return application.handle_batch(messages)

    try:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.submit(batch, app, batch_a), pool.submit(batch, replica, batch_b)
            return app, a.result(timeout=60), b.result(timeout=60)
    except BaseException:
        app.engine.dispose()
        raise
    finally:
        replica.engine.dispose()


def test_a_msgid_in_two_batches_at_once_is_stored_once_and_answered_alike(db_url, clock):
    """WeCom's retry of a slow message can reach another replica while the first is still at work.
    Both handle it; the second to write its answer finds the MsgId taken, rolls that message back
    to its savepoint, and after committing the rest answers it again from the first's record: one
    report, the same words twice, and the rest of both batches stored."""
    extra = Router("test")
    calls = []

    @extra.command("慢")
    def slow(ctx, args) -> Reply:
        calls.append(ctx.msg_id)
        task = queries.task_to_report(ctx.session, "T1", Month.of(ctx.now.astimezone(ctx.tz)))
        rep = queries.add_report(ctx.session, task, ctx.member.userid, 10, "慢", ctx.now, ctx.tz)
        time.sleep(0.3)  # the other batch reaches the same MsgId meanwhile
        return Reply("report_ok", {"task": task, "report": rep, "left": 0, "unit": ctx.unit})

    app, (a_dup, a2), (b_dup, b2) = two_batches_at_once(
        db_url, clock, extra,
        [("li", "慢", "dup"), ("li", "汇报 T1 30% 甲", "a2")], [("li", "慢", "dup"), ("zhao", "汇报 T3 50% 乙", "b2")])
    try:
        assert a_dup == b_dup and "10%" in a_dup
        assert "30%" in a2 and "50%" in b2
        assert calls in (["dup"], ["dup", "dup"])  # SQLite's writers take turns: the second sees the first's record
        with Session(app.engine) as s:
            texts = sorted(r.text for r in s.exec(select(Report)))
            processed = {p.msg_id: p.reply for p in s.exec(select(ProcessedMessage))}
        assert texts == sorted(["慢", "甲", "乙"])
        assert processed == {"dup": a_dup, "a2": a2, "b2": b2}
    finally:
        app.engine.dispose()


def test_two_batches_that_deadlock_on_postgresql_both_finish(pg_url, clock):
    """Two replicas' batches that take the same two rows in opposite order deadlock; PostgreSQL
    cancels one statement, and that batch is handled again (its messages apart, the victim after
    the rest commit): every message is answered and stored once, none fails."""
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
        again = [m for m, n in Counter(calls).items() if n > 1]
        assert sorted(again) in (["a1", "a2"], ["b1", "b2"])  # the victim's batch, handled again
        with Session(app.engine) as s:
            marks = {t.code: t.milestone for t in s.exec(select(Task).where(Task.code.in_(["T1", "T3"])))}
            assert {p.msg_id for p in s.exec(select(ProcessedMessage))} == {"a1", "a2", "b1", "b2"}
        assert sorted(marks["T1"].split(";")[:-1]) == ["a1", "b2"]
        assert sorted(marks["T3"].split(";")[:-1]) == ["a2", "b1"]
    finally:
        app.engine.dispose()


def test_serve_killed_mid_burst_loses_no_answered_report_and_stores_none_twice(db_url, fake, tmp_path):
    """`duban serve` gets a burst of reports and is killed with SIGKILL while it answers them.
    WeCom retries every message it got no answer to; here every message is sent again, after a
    restart: each report is stored exactly once, and a message answered before the kill gets the
    same answer again, word for word."""
    app = Application(make_config(db_url))
    app.migrate()
    seed(app)
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config, db_url, fake.base, port)
    log = tmp_path / "serve.log"
    sent = [(("li", "T1") if i % 2 else ("zhao", "T3")) + (i,) for i in range(300)]
    messages = [(user, f"汇报 {task} {i % 100}% 第{i}次", str(80000 + i)) for user, task, i in sent]
    first: dict[str, str] = {}
    serve = Serve(config, port, log).start()
    try:
        wecom = WeComSide(f"http://127.0.0.1:{port}")

        def send(m):
            try:
                first[m[2]] = wecom.say(*m)
            except Exception:  # the server died under it: WeCom saw no answer
                pass

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, m) for m in messages]
            deadline = time.monotonic() + 30
            while len(first) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
            serve.kill()
            for f in futures:
                f.result(timeout=30)
    finally:
        serve.stop()
    assert 60 <= len(first) < len(messages), "the kill must land in the middle of the burst"
    serve = Serve(config, port, log).start()
    try:
        wecom = WeComSide(f"http://127.0.0.1:{port}")
        with ThreadPoolExecutor(8) as pool:
            again = list(pool.map(lambda m: wecom.say(*m), messages))
    finally:
        serve.stop()
    for (_, _, msg_id), reply in zip(messages, again):
        if msg_id in first:
            assert reply == first[msg_id]
    with Session(app.engine) as s:
        stored = Counter(r.text for r in s.exec(select(Report)))
    assert stored == Counter(text.split()[3] for _, text, _ in messages)
    app.engine.dispose()
