"""Outbound delivery through the fake WeCom API: retries, token refresh, limits, splitting, files."""
from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from bot.app import Application
from bot.cli import _worker
from bot.reply import Push, Target
from conftest import make_config, seed
from db.models import Outbox


@pytest.fixture
def wired(db_url, clock, fake):
    """An app pointed at the fake WeCom API, with its outbox worker (real clock for backoff)."""
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base), clock=SystemClock())
    app.migrate()
    seed(app)
    worker = _worker(app)
    yield app, worker, fake
    worker.stop()
    app.engine.dispose()


def push(app, target: Target, template="supervision_push", key="k", markdown=True, **data):
    from datetime import date

    from db.models import SupervisionItem, Unit

    with app.session() as s:
        unit = s.exec(select(Unit).where(Unit.name == "机电工程系")).one()
        item = SupervisionItem(code="D1", unit_id=unit.id, content=data.get("content", "报送进度"),
                               deadline=date(2026, 3, 28), month="2026-03", created_by="admin",
                               created_at=app.clock.now())
        return app.enqueue_push(s, Push(target, template, {"item": item, "unit": unit, "mentions": []},
                                        markdown=markdown), key)


def outbox(app) -> list[Outbox]:
    with Session(app.engine) as s:
        return list(s.exec(select(Outbox).order_by(Outbox.id)))


def test_app_appchat_and_robot_messages_are_delivered_once(wired):
    app, worker, fake = wired
    push(app, Target("app", "li"), key="a", markdown=False)
    push(app, Target("appchat", "chat-jd"), key="b")
    push(app, Target("webhook", "key-xx"), key="c")
    worker.drain(10)
    assert fake.counts_by_target() == {"user:li": 1, "chat:chat-jd": 1, "robot:key-xx": 1}
    app_msg = fake.deliveries("message/send")[0].body
    assert app_msg["agentid"] == 1000002 and app_msg["enable_duplicate_check"] == 1
    assert "D1" in app_msg["text"]["content"]
    assert fake.deliveries("appchat/send")[0].body["msgtype"] == "markdown"
    assert {r.status for r in outbox(app)} == {"sent"}
    worker.drain(1)
    assert len(fake.deliveries()) == 3  # nothing is sent twice


def test_enqueueing_the_same_key_twice_sends_once(wired):
    app, worker, fake = wired
    assert push(app, Target("appchat", "chat-jd"), key="same") == 1
    assert push(app, Target("appchat", "chat-jd"), key="same") == 0
    worker.drain(5)
    assert len(fake.deliveries()) == 1


def test_an_expired_token_is_refreshed_and_the_message_sent(wired):
    app, worker, fake = wired
    push(app, Target("app", "li"), key="a")
    worker.drain(5)
    fake.expire_token()
    push(app, Target("app", "zhang"), key="b")
    worker.drain(5)
    assert fake.counts_by_target() == {"user:li": 1, "user:zhang": 1}
    assert fake.state.token_requests == 2


@pytest.mark.parametrize("fault", [dict(errcode=45009), dict(http=500), dict(http=502, times=3), dict(errcode=-1)])
def test_rate_limits_server_errors_and_busy_answers_are_retried_with_backoff(wired, fault):
    app, worker, fake = wired
    fake.fail("appchat/send", **fault)
    push(app, Target("appchat", "chat-jd"), key="a")
    first = worker.run_once()
    assert first.retried == 1 and not fake.deliveries()
    row = outbox(app)[0]
    assert row.status == "pending" and row.last_error and row.next_attempt_at > row.created_at
    worker.drain(10)
    assert fake.counts_by_target() == {"chat:chat-jd": 1}
    # a rate limit is not held against the message; other failures count as attempts
    failures = 0 if fault.get("errcode") == 45009 else fault.get("times", 1)
    assert outbox(app)[0].attempts == failures + 1


def test_a_slow_answer_to_an_app_message_times_out_and_is_retried_and_shown_once(wired):
    app, worker, fake = wired
    fake.fail("message/send", delay=1.5)  # the client gives up after 1 s; WeCom carries it out anyway
    push(app, Target("app", "li"), key="a")
    result = worker.run_once()
    assert result.retried == 1 and "Timeout" in outbox(app)[0].last_error
    worker.drain(10)
    assert outbox(app)[0].status == "sent"
    assert fake.counts_by_target() == {"user:li": 1}  # WeCom's duplicate check


@pytest.mark.parametrize("target", [Target("appchat", "chat-jd"), Target("webhook", "key-xx")], ids=["appchat", "robot"])
def test_a_group_send_wecom_carries_out_but_answers_slowly_is_waited_for_and_seen_once(wired, target):
    """App chats and robots have no duplicate check: a send whose answer comes after
    wecom.timeout_seconds (1 s here) is waited for (group_timeout_seconds), not sent again."""
    app, worker, fake = wired
    fake.fail("appchat/send" if target.channel == "appchat" else "webhook/send", delay=1.5)
    push(app, target, key="a")
    result = worker.run_once()
    assert result.sent == 1 and result.retried == 0
    worker.drain(2)
    assert list(fake.counts_by_target().values()) == [1]
    (row,) = outbox(app)
    assert row.status == "sent" and row.attempts == 1


def test_a_late_smart_robot_answer_answered_slowly_is_sent_once(wired):
    app, worker, fake = wired
    fake.fail("aibot/response", delay=1.5)
    app.enqueue_late("response_url:li:m1", "response_url", f"{fake.base}/cgi-bin/aibot/response?response_code=r1",
                     "markdown", "答复")
    assert worker.run_once().sent == 1
    assert fake.counts_by_target() == {"response:r1": 1}


def test_the_group_timeout_must_end_within_the_senders_lease():
    from bot.config import Config

    with pytest.raises(ValueError, match="group_timeout_seconds must be less than sender.lease_seconds"):
        Config.model_validate({"wecom": {"group_timeout_seconds": 60}, "sender": {"lease_seconds": 60}})


def test_a_permanent_error_fails_and_shows_in_the_outbox_listing(wired):
    app, worker, fake = wired
    fake.fail("message/send", errcode=40003)  # invalid userid
    push(app, Target("app", "ghost"), key="a")
    worker.drain(5)
    (row,) = outbox(app)
    assert row.status == "failed" and "40003" in row.last_error


def test_robot_messages_keep_to_twenty_a_minute(db_url, fake):
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base, sender={"webhook_per_minute": 20}),
                      clock=SystemClock())
    app.migrate()
    seed(app)
    for i in range(25):
        push(app, Target("webhook", "key-xx"), key=f"m{i}")
    worker = _worker(app)
    worker.run_once()
    worker.run_once()
    worker.stop()
    assert len(fake.deliveries("webhook/send")) == 20
    rows = outbox(app)
    assert sum(r.status == "sent" for r in rows) == 20
    waiting = [r for r in rows if r.status == "pending"]
    assert len(waiting) == 5 and all(r.attempts == 0 for r in waiting)  # deferred, never tried
    # order is kept: the first twenty went first
    assert [r.key for r in rows if r.status == "sent"] == [f"m{i}" for i in range(20)]


def test_long_markdown_is_split_at_line_breaks_within_4096_bytes(wired):
    app, worker, fake = wired
    lines = [f"第{i:03d}行 " + "进度说明" * 20 for i in range(120)]
    content = "\n".join(lines)
    added = push(app, Target("appchat", "chat-jd"), key="long", content=content)
    assert added > 1
    worker.drain(10)
    parts = [d.body["markdown"]["content"] for d in fake.deliveries("appchat/send")]
    assert len(parts) == added
    assert all(len(p.encode()) <= 4096 for p in parts)
    got = [line for p in parts for line in p.split("\n")]
    assert got[2] == "事项：" + lines[0]  # the template's first content line
    assert [line for line in got if line.startswith("第")] == lines[1:]  # every other line whole, in order


def test_text_to_a_user_is_split_within_2048_bytes(wired):
    app, worker, fake = wired
    content = "\n".join(f"{i:03d} " + "汇报内容" * 30 for i in range(40))
    push(app, Target("app", "li"), key="long", content=content, markdown=False)
    worker.drain(10)
    parts = [d.body["text"]["content"] for d in fake.deliveries("message/send")]
    assert len(parts) > 1 and all(len(p.encode()) <= 2048 for p in parts)


def test_export_file_is_generated_uploaded_and_sent(wired):
    import io

    from openpyxl import load_workbook

    app, worker, fake = wired
    reply = app.handle_message("admin", "导出 2026-03", "42")
    assert "争先督办-2026-03.xlsx" in reply
    worker.drain(10)
    (sent,) = fake.deliveries("message/send")
    assert sent.body["msgtype"] == "file" and sent.body["touser"] == "admin"
    filename, data = fake.state.uploads[sent.body["file"]["media_id"]]
    assert filename == "争先督办-2026-03.xlsx"
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames[:2] == ["2026-03排名", "任务进度"]
    units = [row[1] for row in wb["2026-03排名"].iter_rows(min_row=2, values_only=True)]
    assert sorted(units) == ["信息工程系", "党政办公室", "图书馆", "机电工程系"]


def test_console_mode_prints_pushes_and_keeps_them_in_the_outbox(db_url, clock, capsys):
    app = Application(make_config(db_url), clock=clock)
    app.migrate()
    seed(app)
    app.handle_message("admin", "督办 图书馆 2026-03-28 延长开放时间方案", "1")
    worker = _worker(app)
    worker.drain(5)
    worker.stop()
    out = capsys.readouterr().out
    assert "[推送 → appchat:chat-lib]" in out and "延长开放时间方案" in out
    assert "[卡片 → app:sun]" in out and "[签收] [反馈] [申请延期]" in out  # its 负责人's card, as text
    assert [r.status for r in outbox(app)] == ["sent", "sent"]
    assert json.loads(outbox(app)[0].payload)["content"] in out


def test_two_replicas_sending_from_one_postgres_deliver_each_message_once(pg_url, fake):
    import threading

    from bot.clock import SystemClock

    apps = [Application(make_config(pg_url, api_base=fake.base), clock=SystemClock()) for _ in range(2)]
    for a in apps:
        a.migrate()
    with apps[0].session() as s:
        for i in range(120):
            apps[0].enqueue_push(s, Push(Target("appchat", f"chat-{i:03d}"), "server_error"), f"job:t:p:{i}")
    workers = [_worker(a) for a in apps]
    threads = [threading.Thread(target=w.drain, args=(20,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        w.stop()
    assert fake.counts_by_target() == {f"chat:chat-{i:03d}": 1 for i in range(120)}
    assert {r.status for r in outbox(apps[0])} == {"sent"}
    for a in apps:
        a.engine.dispose()


# ---------------------------------------------------------------- secrets stay out of everything written

SECRET = "fakesecret"


def assert_no_secrets(text: str, keys=("key-xx",)) -> None:
    assert SECRET not in text
    assert "tok-" not in text and "access_token=" not in text  # the fake's tokens are tok-1, tok-2, ...
    for key in keys:
        assert key not in text


def test_secrets_stay_out_of_logs_outbox_and_cli_when_the_api_is_unreachable(db_url, caplog, capsys):
    import logging

    from click.testing import CliRunner

    from bot.cli import main
    from bot.clock import SystemClock
    from serving import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = Application(make_config(db_url, api_base=closed), clock=SystemClock())
    app.migrate()
    seed(app)
    caplog.set_level(logging.DEBUG)
    push(app, Target("app", "li"), key="a")
    push(app, Target("webhook", "key-xx"), key="b")
    worker = _worker(app)
    try:
        result = worker.run_once()
    finally:
        worker.stop()
    assert result.retried == 2
    rows = outbox(app)
    assert all(r.status == "pending" and "ConnectionError" in r.last_error for r in rows)
    assert any("gettoken" in r.last_error for r in rows)  # what failed is still named
    for r in rows:
        assert_no_secrets(r.last_error)
    assert "webhook:…y-xx" in caplog.text  # a robot key is shown by its last 4 characters
    assert_no_secrets(caplog.text)
    config = app.config.model_dump(mode="json")
    app.engine.dispose()
    listing = CliRunner().invoke(main, ["outbox", "--config", _write_config(config)])
    assert listing.exit_code == 0, listing.output
    assert "webhook:…y-xx" in listing.output and "ConnectionError" in listing.output
    assert_no_secrets(listing.output)


def _write_config(config: dict) -> str:
    import tempfile

    lines = []
    for section in ("wecom", "database", "sender"):
        lines.append(f"[{section}]")
        for k, v in config[section].items():
            lines.append(f"{k} = {json.dumps(v)}")
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write("\n".join(lines) + "\n")
    f.close()
    return f.name


def test_secrets_and_tokens_stay_out_of_debug_logs_while_sending(wired, caplog):
    import logging

    app, worker, fake = wired
    caplog.set_level(logging.DEBUG)
    push(app, Target("app", "li"), key="a")
    worker.drain(5)
    fake.expire_token()
    fake.fail("webhook/send", http=500)
    fake.fail("appchat/send", errcode=40003)
    push(app, Target("app", "zhang"), key="b")
    push(app, Target("webhook", "key-xx"), key="c")
    push(app, Target("appchat", "chat-jd"), key="d")
    worker.drain(10)
    assert fake.counts_by_target() == {"user:li": 1, "user:zhang": 1, "robot:key-xx": 1}
    assert fake.state.token_requests == 2
    assert "webhook:…y-xx" in caplog.text and "40003" in caplog.text
    assert_no_secrets(caplog.text)
    assert_no_secrets(" ".join(r.last_error for r in outbox(app)))


# ---------------------------------------------------------------- tokens: refreshed, shared, retried


@pytest.mark.parametrize("code", [40014, 42001, 42009, 41001])
def test_a_token_rejected_twice_in_a_row_is_refreshed_again_and_the_message_sent(wired, code):
    app, worker, fake = wired
    fake.fail("message/send", errcode=code, times=2)
    push(app, Target("app", "li"), key="a")
    worker.drain(10)
    assert fake.counts_by_target() == {"user:li": 1}
    assert outbox(app)[0].status == "sent"


def test_a_token_rejected_again_and_again_keeps_the_message_for_a_later_try(wired):
    app, worker, fake = wired
    fake.fail("message/send", errcode=42001, times=10)
    push(app, Target("app", "li"), key="a")
    result = worker.run_once()
    assert result.retried == 1 and result.failed == 0
    assert outbox(app)[0].status == "pending"
    worker.drain(10)
    assert fake.counts_by_target() == {"user:li": 1}


@pytest.mark.parametrize("fault", [dict(errcode=-1), dict(errcode=45009), dict(http=500), dict(http=503, times=2),
                                   dict(delay=1.5)])
def test_gettoken_busy_rate_limited_or_down_is_retried_with_backoff(wired, fault):
    app, worker, fake = wired
    fake.fail("gettoken", **fault)
    push(app, Target("app", "li"), key="a")
    first = worker.run_once()
    assert first.retried == 1 and first.failed == 0 and not fake.deliveries()
    row = outbox(app)[0]
    assert row.status == "pending" and "gettoken" in row.last_error
    worker.drain(10)
    assert fake.counts_by_target() == {"user:li": 1}
    assert outbox(app)[0].status == "sent"


def test_a_wrong_secret_fails_the_message_and_says_why(db_url, fake):
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base, wecom={"secret": "wrong-secret"}), clock=SystemClock())
    app.migrate()
    seed(app)
    push(app, Target("app", "li"), key="a")
    worker = _worker(app)
    worker.drain(5)
    worker.stop()
    (row,) = outbox(app)
    assert row.status == "failed" and "gettoken" in row.last_error and "40001" in row.last_error
    assert "wrong-secret" not in row.last_error
    app.engine.dispose()


def test_concurrent_senders_fetch_and_refresh_the_token_once(wired):
    app, worker, fake = wired
    fake.state.latency = 0.05  # the eight sending threads overlap
    users = ["admin", "zhang", "li", "wang", "zhao", "sun"]
    for i in range(16):
        push(app, Target("app", f"{users[i % 6]}{i}"), key=f"first{i}")
    worker.run_once()
    assert fake.state.token_requests == 1
    fake.expire_token()
    for i in range(16):
        push(app, Target("app", f"{users[i % 6]}-b{i}"), key=f"second{i}")
    worker.run_once()
    assert fake.state.token_requests == 2
    assert len(fake.deliveries("message/send")) == 32
    assert {r.status for r in outbox(app)} == {"sent"}


def test_quiet_hours_hold_pushes_but_never_replies(db_url, fake):
    """[sender] quiet_hours (22:00-07:30 local): a reminder waits for the morning; the answer to a
    person's own message goes out at once."""
    from bot.clock import FixedClock
    from conftest import at

    clock = FixedClock(at(2026, 3, 20, 23, 0))
    app = Application(make_config(db_url, api_base=fake.base, sender={"quiet_hours": "22:00-07:30"}), clock=clock)
    app.migrate()
    seed(app)
    worker = _worker(app)
    try:
        reply = app.handle_message("admin", "督办 机电工程系 3月28日 报送进度", "late1")  # pushes to the unit's group
        assert "D1" in reply
        app.handle_message("admin", "状态", "late2")
        with app.session() as s:  # a long answer's follow-up parts are replies, too
            from db import queries
            queries.enqueue(s, "reply:admin:late2:part2", "app", "admin", "text", {"content": "第二部分"}, clock.now())
        worker.run_once()
        by_key = {r.key: r for r in outbox(app)}
        assert by_key["reply:admin:late2:part2"].status == "sent"
        assert by_key["push:admin:late1:D1:2"].status == "pending"  # the 督办 push to the group waits
        assert fake.deliveries("/cgi-bin/appchat/send") == []
        clock.set(at(2026, 3, 21, 7, 29))
        worker.run_once()
        assert by_key["push:admin:late1:D1:2"].key in {r.key for r in outbox(app) if r.status == "pending"}
        clock.set(at(2026, 3, 21, 7, 30))
        worker.run_once()
        assert all(r.status == "sent" for r in outbox(app))
    finally:
        worker.stop()
        app.engine.dispose()


# ---------------------------------------------------------------- only WeCom's errcode 0 is delivered


@pytest.mark.parametrize("answer", ["<html><body>请先登录上网认证</body></html>", "OK", {"ok": 1}, {"errcode": "0"}],
                         ids=["html page", "plain text", "json without errcode", "errcode a string"])
@pytest.mark.parametrize("target", [Target("app", "li"), Target("appchat", "chat-jd"), Target("webhook", "key-xx")],
                         ids=["app", "appchat", "robot"])
def test_an_answer_that_is_not_wecoms_json_is_a_failure_retried_with_backoff(wired, answer, target):
    """HTTP 200 with a proxy's or captive portal's page is not a delivery: the message stays
    pending with the reason, is sent once the API answers again, and reaches the group once."""
    app, worker, fake = wired
    fake.fail({"app": "message/send", "appchat": "appchat/send", "webhook": "webhook/send"}[target.channel],
              answer=answer)
    push(app, target, key="a", markdown=target.channel != "app")
    first = worker.run_once()
    assert first.retried == 1 and first.sent == 0 and not fake.deliveries()
    row = outbox(app)[0]
    assert row.status == "pending" and "HTTP 200" in row.last_error and row.next_attempt_at > row.created_at
    worker.drain(10)
    assert len(fake.deliveries()) == 1 and outbox(app)[0].status == "sent"


def test_a_send_never_answered_with_wecoms_json_is_listed_failed_after_max_attempts(db_url, fake):
    from click.testing import CliRunner

    from bot.cli import main
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base, sender={"max_attempts": 3}), clock=SystemClock())
    app.migrate()
    seed(app)
    fake.fail("appchat/send", answer="<html>portal</html>", times=10)
    push(app, Target("appchat", "chat-jd"), key="a")
    worker = _worker(app)
    try:
        worker.drain(10)
    finally:
        worker.stop()
    (row,) = outbox(app)
    assert row.status == "failed" and row.attempts == 3 and "not WeCom's JSON" in row.last_error
    config = app.config.model_dump(mode="json")
    app.engine.dispose()
    listing = CliRunner().invoke(main, ["outbox", "--config", _write_config(config)])
    assert "[failed]" in listing.output and "not WeCom's JSON" in listing.output


# ---------------------------------------------------------------- a failing message holds up no other


def test_a_message_that_keeps_failing_does_not_hold_up_the_targets_later_messages(wired):
    """Per-target order holds among messages that can be sent: one that keeps failing waits for
    its own backoff while the group's later messages go out in order in the same pass."""
    app, worker, fake = wired
    fake.fail("webhook/send", http=500, times=100, match="坏消息")
    push(app, Target("webhook", "key-xx"), key="bad", content="坏消息")
    push(app, Target("webhook", "key-xx"), key="next1", content="第一条")
    push(app, Target("webhook", "key-xx"), key="next2", content="第二条")
    first = worker.run_once()
    assert first.sent == 2 and first.retried == 1
    sent = [d.body["markdown"]["content"] for d in fake.deliveries("webhook/send")]
    assert "第一条" in sent[0] and "第二条" in sent[1]
    by_key = {r.key: r for r in outbox(app)}
    assert by_key["bad"].status == "pending" and "HTTP 500" in by_key["bad"].last_error


def test_a_picture_that_cannot_be_built_fails_once_with_its_reason(wired):
    app, worker, fake = wired
    now = app.clock.now()
    with app.session() as s:
        from db import queries

        queries.enqueue(s, "job:x:image", "webhook", "key-xx", "image",
                        {"kind": "ranking_image", "month": "2026-13", "at": now.isoformat()}, now, "x.png")
    push(app, Target("webhook", "key-xx"), key="after")
    result = worker.run_once()
    assert result.failed == 1 and result.sent == 1 and result.retried == 0
    row = {r.key: r for r in outbox(app)}["job:x:image"]
    assert row.status == "failed" and row.attempts == 1 and "cannot build the image" in row.last_error
    worker.drain(2)
    assert outbox(app)[0].attempts == 1 and len(fake.deliveries()) == 1
