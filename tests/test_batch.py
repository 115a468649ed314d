"""Group commit: many messages in one write transaction, each kept apart from the others.

The callback hands messages to one writer (bot/writer.py), which handles whatever arrived together
in one transaction, a savepoint a message. These tests make such batches on purpose (handle_batch
directly, and a burst of concurrent callbacks over real HTTP) and check that one message's wrong
form, crash or collision costs the others nothing, on SQLite and PostgreSQL."""
from __future__ import annotations

import time
from datetime import UTC
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot.app import Application
from bot.reply import Reply
from bot.router import Dispatcher, Router
from bot.wecom.callback import build_asgi
from conftest import ServerThread, at, make_config, say, seed
from db import queries
from db.month import Month
from db.models import Outbox, ProcessedMessage, Report
from handlers import ROUTERS
from handlers import common
from wecom_client import WeComSide


def reports(app) -> list[tuple[str, int, str]]:
    with Session(app.engine) as s:
        return [(r.userid, r.percent, r.text) for r in s.exec(select(Report).order_by(Report.id))]


def processed(app) -> dict[str, str]:
    with Session(app.engine) as s:
        return {p.msg_id: p.reply for p in s.exec(select(ProcessedMessage))}


def test_a_batch_keeps_each_message_apart(app):
    results = app.handle_batch([
        ("li", "汇报 T1 30% 第一条", "b1"),
        ("li", "汇报 T1 abc% 进度写错了", "b2"),       # wrong form: a reply, no report
        ("nobody", "汇报 T1 40% 陌生人", "b3"),         # unknown person: told whom to ask, nothing stored
        ("zhao", "汇报 T3 50% 第三条", "b4"),
        ("li", "汇报 T1 30% 第一条", "b1"),             # WeCom's retry of b1 inside the same batch
        ("zhao", "汇报 T1 60% 不是本单位的任务", "b5"),  # someone else's task
    ])
    texts = list(results)
    assert "T1" in texts[0] and "30%" in texts[0]
    assert "abc%" in texts[1] and "汇报" in texts[1]
    assert "nobody" in texts[2]
    assert "T3" in texts[3] and "50%" in texts[3]
    assert texts[4] == texts[0]
    assert "T1" in texts[5] and "50%" not in texts[5]
    assert reports(app) == [("li", 30, "第一条"), ("zhao", 50, "第三条")]
    # the answers to wrong forms are remembered too, so a retry gets the same words
    assert set(processed(app)) == {"b1", "b2", "b4", "b5"}
    assert processed(app)["b2"] == texts[1]


def test_each_report_of_a_batch_sees_the_ones_before_it(app):
    """A batch reads its 汇报's tasks in one query (Dispatcher.read_ahead); each answer still counts
    the reports before it in the same batch: its unit's tasks left, its task's version."""
    results = app.handle_batch([
        ("li", "汇报 T1 30% 第一版", "a1"),
        ("zhao", "汇报 T3 40% 信息系", "a2"),
        ("zhang", "汇报 T2 50% 同一单位", "a3"),
        ("li", "汇报 T1 60% 第二版", "a4"),
    ])
    assert "机电工程系 本月还有 1 项任务未汇报" in results[0]  # T2, not yet
    assert "信息工程系 本月还有 1 项任务未汇报" in results[1]  # T4
    assert "机电工程系 本月任务已全部汇报" in results[2]
    assert "第 2 次汇报" in results[3] and "第 2 次" not in results[0]
    assert "机电工程系 本月任务已全部汇报" in results[3]
    with Session(app.engine) as s:
        assert s.exec(select(Report.text, Report.version).order_by(Report.id)).all() == [
            ("第一版", 1), ("信息系", 1), ("同一单位", 1), ("第二版", 2)]


def test_a_task_voided_earlier_in_the_batch_is_not_reported(app):
    """What a batch read ahead is not used once something else was written: a task 作废 by an
    earlier message of the same batch refuses its 汇报, also after another unit's 汇报 in between."""
    results = app.handle_batch([
        ("admin", "作废 T3 重复录入", "w1"),
        ("li", "汇报 T1 30% 照常", "w2"),
        ("zhao", "汇报 T3 50% 已作废的任务", "w3"),
    ])
    assert "30%" in results[1]
    assert "作废" in results[2] and "50%" not in results[2]
    assert reports(app) == [("li", 30, "照常")]


def test_a_report_withdrawn_earlier_in_the_batch_counts_as_withdrawn(app):
    """A 撤回 in the batch: the reports after it count the task as not reported, and its next
    report is the month's first version."""
    assert "T1" in say(app, "li", "汇报 T1 30% 第一版")
    results = app.handle_batch([
        ("li", "撤回 T1", "x1"),
        ("zhao", "汇报 T3 40% 信息系", "x2"),
        ("zhang", "汇报 T2 50% 同一单位", "x3"),
        ("li", "汇报 T1 60% 重报", "x4"),
    ])
    assert "机电工程系 本月还有 1 项任务未汇报" in results[2]  # T1, withdrawn
    assert "第 2 次" not in results[3] and "机电工程系 本月任务已全部汇报" in results[3]
    with Session(app.engine) as s:
        assert s.exec(select(Report.text, Report.version).order_by(Report.id)).all() == [
            ("信息系", 1), ("同一单位", 1), ("重报", 1)]


class _MonthTurns:
    """A clock read first at the last moment of March, and at the first of April ever after."""

    def __init__(self):
        self.moments = [at(2026, 3, 31, 23, 59, 59), at(2026, 4, 1, 0, 0, 1)]

    def now(self):
        return (self.moments.pop(0) if len(self.moments) > 1 else self.moments[0]).astimezone(UTC)


def test_a_batch_that_crosses_midnight_into_a_new_month_reports_in_the_new_month(app):
    """A batch read its tasks ahead in March; its messages are handled in April: each is April's
    first report, not the next version of March's."""
    assert "T3" in say(app, "zhao", "汇报 T3 40% 三月", at(2026, 3, 30, 9))
    app.clock = _MonthTurns()
    results = app.handle_batch([("li", "汇报 T1 30% 四月一", "m1"), ("zhao", "汇报 T3 50% 四月三", "m2")])
    assert "第 2 次" not in results[0] and "第 2 次" not in results[1]
    assert "信息工程系 本月还有" in results[1]  # T4 (its March report does not count in April)
    with Session(app.engine) as s:
        assert s.exec(select(Report.text, Report.month, Report.version).order_by(Report.id)).all() == [
            ("三月", "2026-03", 1), ("四月一", "2026-04", 1), ("四月三", "2026-04", 1)]


def crashing_app(db_url, clock, fail: str) -> Application:
    """The real commands plus one that writes a report and then fails: `fail` = 'crash' raises a bug,
    'collide' raises IntegrityError the first two times (a concurrent replica took the same row),
    'refuse' answers with a wrong-form reply (UserError) after writing; 'notice' puts a notice to
    the admins in the outbox (not yet written: the outbox writes at commit) and then refuses."""
    extra = Router("test")
    calls = []

    @extra.command("写坏")
    def broken(ctx) -> Reply:
        if fail == "notice":
            queries.enqueue(ctx.session, f"push:{ctx.msg_id}", "app", "admin1", "text", {"content": "不该发出"}, ctx.now)
            raise common.fail("汇报", "task_not_yours", code="T9")
        task = queries.task_to_report(ctx.session, "T1", Month.of(ctx.now.astimezone(ctx.tz)))
        queries.add_report(ctx.session, task, ctx.member.userid, 99, "不该留下", ctx.now, ctx.tz)
        calls.append(1)
        if fail == "crash":
            raise RuntimeError("a bug in a handler")
        if fail == "refuse":
            raise common.fail("汇报", "task_not_yours", code="T9")
        if len(calls) <= 2:
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return Reply("report_ok", {"task": task, "report": queries.latest_report(ctx.session, task.id),
                                   "left": 0, "unit": ctx.unit})

    application = Application(make_config(db_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    application.migrate()
    seed(application)
    return application


def test_a_crashing_handler_fails_only_its_own_message(db_url, clock):
    app = crashing_app(db_url, clock, "crash")
    try:
        results = app.handle_batch([
            ("li", "汇报 T1 30% 之前", "c1"),
            ("li", "写坏", "c2"),
            ("zhao", "汇报 T3 50% 之后", "c3"),
        ])
        assert isinstance(results[1], RuntimeError)
        assert "30%" in results[0] and "50%" in results[2]
        assert reports(app) == [("li", 30, "之前"), ("zhao", 50, "之后")]  # the 99 % is gone
        assert set(processed(app)) == {"c1", "c3"}  # c2 is not remembered: WeCom's retry tries again
        with pytest.raises(RuntimeError):
            app.handle_message("li", "写坏", "c2")
    finally:
        app.engine.dispose()


def test_a_colliding_message_is_handled_again_after_the_others_commit(db_url, clock):
    app = crashing_app(db_url, clock, "collide")
    try:
        results = app.handle_batch([("li", "写坏", "d1"), ("zhao", "汇报 T3 50% 同批", "d2")])
        assert "T1" in results[0] and "99%" in results[0]
        assert "50%" in results[1]
        # The first try (in the batch) and the second (alone, after d2 was committed) are rolled
        # back to their savepoints; the third is kept.
        assert sorted(reports(app)) == [("li", 99, "不该留下"), ("zhao", 50, "同批")]
        assert set(processed(app)) == {"d1", "d2"}
    finally:
        app.engine.dispose()


def test_a_message_refused_after_it_wrote_leaves_nothing_and_the_others_stay(db_url, clock):
    """A handler that wrote and then refused (a wrong form found late): its write goes, its answer
    is remembered, and the messages around it stay, each stored once."""
    app = crashing_app(db_url, clock, "refuse")
    try:
        results = app.handle_batch([
            ("li", "汇报 T1 30% 之前", "r1"),
            ("li", "写坏", "r2"),
            ("zhao", "汇报 T3 50% 之后", "r3"),
        ])
        assert not isinstance(results[1], Exception), results[1]
        assert "T9" in results[1] and "99%" not in results[1]
        assert "30%" in results[0] and "50%" in results[2]
        assert reports(app) == [("li", 30, "之前"), ("zhao", 50, "之后")]  # the 99 % is gone
        assert processed(app) == {"r1": results[0], "r2": results[1], "r3": results[2]}
    finally:
        app.engine.dispose()


def test_a_message_refused_after_it_queued_a_notice_sends_nothing(db_url, clock):
    """What a refused command put in the outbox goes with its other writes: nobody is told of a
    command that was refused, and the messages around it stay."""
    app = crashing_app(db_url, clock, "notice")
    try:
        results = app.handle_batch([("li", "汇报 T1 30% 之前", "n1"), ("li", "写坏", "n2"),
                                    ("zhao", "汇报 T3 50% 之后", "n3")])
        assert "T9" in results[1] and "30%" in results[0] and "50%" in results[2]
        assert reports(app) == [("li", 30, "之前"), ("zhao", 50, "之后")]
        with Session(app.engine) as s:
            assert s.exec(select(Outbox)).all() == []
        assert processed(app) == {"n1": results[0], "n2": results[1], "n3": results[2]}
    finally:
        app.engine.dispose()


def test_a_report_whose_version_another_replica_took_meanwhile_is_handled_again(pg_url, clock):
    """On PostgreSQL a report's INSERT is sent without waiting for its answer (db/session.py
    pipeline), so its failure shows up only at a later statement. Another replica stores T1's
    report between this one's reading T1 and writing its own: the unique version refuses the
    write, and the batch is handled again, that message with the next version; each message is
    answered once and each report stored once."""
    from sqlalchemy import create_engine
    from db.models import Task

    replica = create_engine(pg_url)
    raced = []

    def other_replica_reports_first(ctx) -> Reply:
        month = Month.of(ctx.now.astimezone(ctx.tz))
        task = queries.task_to_report(ctx.session, "T1", month)
        raced.append(1)
        if len(raced) == 1:  # the first time only: the other replica commits T1's first report now
            with Session(replica) as other:
                other.add(Report(task_id=task.id, unit_id=task.unit_id, userid="zhao", percent=5, text="另一副本",
                                 created_at=ctx.now, month=str(month), local_day=20, version=1))
                other.commit()
        rep = queries.add_report(ctx.session, task, ctx.member.userid, 40, "抢先", ctx.now, ctx.tz)
        return Reply("report_ok", {"task": task, "report": rep, "left": 0, "unit": ctx.unit})

    extra = Router("test")
    extra.command("抢")(other_replica_reports_first)
    app = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    app.migrate()
    seed(app)
    try:
        results = app.handle_batch([("zhao", "汇报 T3 50% 之前", "v1"), ("li", "抢", "v2"), ("li", "汇报 T1 30% 之后", "v3")])
        assert not [r for r in results if isinstance(r, Exception)], results
        assert "50%" in results[0] and "第" not in results[0]
        assert "40%" in results[1] and "第 2 次" in results[1]  # after the other replica's
        assert "30%" in results[2] and "第 3 次" in results[2]
        with Session(app.engine) as s:
            t1 = s.exec(select(Task.id).where(Task.code == "T1")).one()
            rows = s.exec(select(Report.text, Report.version).where(Report.task_id == t1).order_by(Report.version)).all()
        assert rows == [("另一副本", 1), ("抢先", 2), ("之后", 3)]
        assert processed(app) == {"v1": results[0], "v2": results[1], "v3": results[2]}
        assert len(raced) == 2  # refused once, handled again
    finally:
        app.engine.dispose()
        replica.dispose()


def test_two_replicas_reporting_one_task_at_once_both_keep_their_report(pg_url, clock):
    """Replica A has written T1's report and not yet committed; replica B's 汇报 on T1 comes alone
    (a batch of one) and takes the same version: B's INSERT waits for A and is refused once A
    commits. B's message is handled again, with the next version, and answered as usual."""
    import threading

    extra = Router("test")
    written = threading.Event()

    @extra.command("慢报")
    def slow(ctx) -> Reply:
        task = queries.task_to_report(ctx.session, "T1", Month.of(ctx.now.astimezone(ctx.tz)))
        rep = queries.add_report(ctx.session, task, ctx.member.userid, 10, "慢", ctx.now, ctx.tz)
        queries.task_to_report(ctx.session, "T1", Month.of(ctx.now.astimezone(ctx.tz)))  # the INSERT is in
        written.set()
        time.sleep(0.6)
        return Reply("report_ok", {"task": task, "report": rep, "left": 0, "unit": ctx.unit})

    a = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    a.migrate()
    seed(a)
    b = Application(make_config(pg_url), clock=clock)

    def b_reports():
        assert written.wait(10)
        return b.handle_batch([("li", "汇报 T1 30% 乙", "b1")])

    try:
        with ThreadPoolExecutor(2) as pool:
            ra, rb = pool.submit(a.handle_batch, [("li", "慢报", "a1")]), pool.submit(b_reports)
            ra, rb = ra.result(60), rb.result(60)
        assert not isinstance(ra[0], Exception) and not isinstance(rb[0], Exception), (ra, rb)
        assert "30%" in rb[0] and "第 2 次" in rb[0]
        with Session(a.engine) as s:
            assert sorted((r.text, r.version) for r in s.exec(select(Report))) == [("乙", 2), ("慢", 1)]
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_a_wrong_form_retried_on_two_replicas_at_once_gets_the_same_words(pg_url, clock):
    """WeCom's retry of a slow message reaches another replica while the first is still at work;
    the message is refused and writes nothing but its answer. Both replicas answer alike."""
    import threading

    extra = Router("test")

    @extra.command("慢读")
    def slow(ctx) -> Reply:
        time.sleep(0.5)
        raise common.fail("汇报", "task_not_yours", code="T9")

    a = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    a.migrate()
    seed(a)
    b = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    together = threading.Barrier(2, timeout=30)

    def handle(app):
        together.wait()
        return app.handle_batch([("li", "慢读", "dup")])[0]

    try:
        with ThreadPoolExecutor(2) as pool:
            fa, fb = pool.submit(handle, a), pool.submit(handle, b)
            ra, rb = fa.result(60), fb.result(60)
        assert not isinstance(ra, Exception) and not isinstance(rb, Exception), (ra, rb)
        assert ra == rb and "T9" in ra
        assert processed(a) == {"dup": ra}
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_the_connection_lost_in_the_middle_of_a_batch_is_an_outage(pg_url, clock, caplog):
    """PostgreSQL goes away while a batch is at work: every message of the batch fails alike as
    the database's unavailability (logged once as an outage), not as a fault of one message."""
    from sqlalchemy import create_engine, text
    from db.session import outage, unavailable

    killer = create_engine(pg_url)
    extra = Router("test")

    @extra.command("断")
    def cut(ctx) -> Reply:
        pid = ctx.session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with killer.connect() as k:
            k.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        time.sleep(0.2)
        queries.task_to_report(ctx.session, "T1", Month.of(ctx.now.astimezone(ctx.tz)))
        return Reply("text_only")

    app = Application(make_config(pg_url), clock=clock, dispatcher=Dispatcher(ROUTERS + [extra]))
    app.migrate()
    seed(app)
    try:
        results = app.handle_batch([("li", "断", "c1"), ("zhao", "汇报 T3 50% 之后", "c2")])
        assert all(isinstance(r, Exception) and unavailable(r) for r in results), results
        assert outage(app.engine).down
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        assert "50%" in app.handle_batch([("zhao", "汇报 T3 50% 之后", "c2")])[0]  # back once it answers
    finally:
        app.engine.dispose()
        killer.dispose()


def test_a_burst_of_callbacks_is_answered_and_stored_once_each(db_url, clock, fake):
    """48 callbacks at once over real HTTP (they reach the writer together and share batches):
    good reports, wrong forms, an unknown user and WeCom's retries of the same MsgId."""
    app = Application(make_config(db_url, api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    sent = []
    for i in range(40):
        user, task = ("li", "T1") if i % 2 else ("zhao", "T3")
        text = f"汇报 {task} {i}% 第{i}次" if i % 5 else f"汇报 {task} 百分之{i} 写错"
        sent.append((user, text, str(70000 + i)))
    sent += [("stranger", "汇报 T1 1% 谁", "70100")] + [sent[i] for i in range(1, 8)]  # 7 retries
    try:
        with ServerThread(build_asgi(app)) as server:
            wecom = WeComSide(server.base, clock=clock)
            with ThreadPoolExecutor(24) as pool:
                replies = list(pool.map(lambda m: wecom.say(m[0], m[1], msg_id=m[2]), sent))
        by_id: dict[str, set[str]] = {}
        for (user, text, msg_id), reply in zip(sent, replies):
            by_id.setdefault(msg_id, set()).add(reply)
            if "写错" in text:
                assert "百分之" in reply, reply
            elif user == "stranger":
                assert "stranger" in reply
            else:
                assert text.split()[2] in reply, (text, reply)
        assert all(len(r) == 1 for r in by_id.values())  # a retry gets the first answer, word for word
        good = sorted((u, int(t.split()[2][:-1]), t.split()[3]) for u, t, _ in sent[:40] if "写错" not in t)
        assert sorted(reports(app)) == good
        with Session(app.engine) as s:
            assert s.exec(select(Outbox)).all() == []
    finally:
        app.engine.dispose()
