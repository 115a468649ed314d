"""The WeCom callback over real HTTP with messages encrypted as WeCom encrypts them."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, func, select

from bot.app import Application
from bot.wecom.callback import build_asgi
from conftest import ServerThread, make_config, seed
from db.models import ProcessedMessage, Report
from wecom_client import WeComSide, text_xml


@pytest.fixture
def bot(db_url, clock, fake):
    application = Application(make_config(db_url, api_base=fake.base), clock=clock)
    application.migrate()
    seed(application)
    with ServerThread(build_asgi(application)) as server:
        yield application, WeComSide(server.base, clock=clock)
    application.engine.dispose()


def count(app, model) -> int:
    with Session(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_url_verification_answers_the_bare_echostr_fast(bot):
    _, wecom = bot
    started = time.monotonic()
    resp = wecom.verify_url("1616140317555161061")
    assert resp.status_code == 200
    assert resp.text == "1616140317555161061"  # no quotes, no newline
    assert time.monotonic() - started < 1.0


def test_url_verification_with_a_wrong_signature_is_refused(bot):
    _, wecom = bot
    good = wecom.verify_url()
    assert good.status_code == 200
    params = dict(good.request.url.params)
    params["msg_signature"] = "0" * 40
    assert wecom.http.get(wecom.url, params=params).status_code == 403


def test_report_gets_an_encrypted_passive_reply_and_is_stored(bot):
    app, wecom = bot
    resp = wecom.send_text("li", "汇报 T1 60% 完成实训基地主体验收\n下月完成设备进场", "5001")
    assert resp.status_code == 200
    assert "<Encrypt>" in resp.text  # the reply itself is encrypted
    reply = wecom.decrypt_reply(resp)
    assert reply["ToUserName"] == "li"
    assert "T1" in reply["Content"] and "60%" in reply["Content"]
    assert "还有 1 项任务未汇报" in reply["Content"]  # T2 of 机电工程系 is still open
    with Session(app.engine) as s:
        rep = s.exec(select(Report)).one()
    assert rep.percent == 60 and rep.text == "完成实训基地主体验收\n下月完成设备进场"


def test_a_retried_msgid_is_handled_once_and_answered_identically(bot):
    app, wecom = bot
    first = wecom.say("li", "汇报 T1 60% 主体验收", msg_id="7001")
    second = wecom.say("li", "汇报 T1 60% 主体验收", msg_id="7001")
    assert first == second
    assert count(app, Report) == 1
    assert count(app, ProcessedMessage) == 1


def test_parallel_retries_of_one_msgid_store_one_report(bot):
    app, wecom = bot
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 70% 并发重试", "7002"))
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: wecom.post_raw(body, params), range(4)))
    assert {r.status_code for r in replies} == {200}
    assert len({wecom.decrypt_reply(r)["Content"] for r in replies}) == 1
    assert count(app, Report) == 1


def test_bad_signature_is_refused_with_no_side_effect(bot):
    app, wecom = bot
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 60% x", "8001"))
    params["msg_signature"] = "f" * 40
    assert wecom.post_raw(body, params).status_code == 403
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0


def test_undecryptable_and_malformed_bodies_are_refused(bot):
    app, wecom = bot
    from wechatpy.crypto import _get_signature

    junk = "bm90IHJlYWxseSBlbmNyeXB0ZWQ="
    ts, nonce = "1700000000", "abc"
    sig = _get_signature(wecom.token, ts, nonce, junk)
    resp = wecom.post_raw(f"<xml><Encrypt><![CDATA[{junk}]]></Encrypt></xml>",
                          {"msg_signature": sig, "timestamp": ts, "nonce": nonce})
    assert resp.status_code == 400
    assert wecom.post_raw("this is not xml", {"msg_signature": sig, "timestamp": ts, "nonce": nonce}).status_code == 400
    assert wecom.post_raw("<xml><Other>1</Other></xml>",
                          {"msg_signature": sig, "timestamp": ts, "nonce": nonce}).status_code == 400
    assert wecom.http.post(wecom.url, content="<xml/>").status_code == 400  # no signature parameters
    assert count(app, ProcessedMessage) == 0
    body, params = wecom.encrypt(text_xml("li", "任务", "not-a-number"))
    assert wecom.post_raw(body, params).status_code == 400


@pytest.mark.parametrize("age", [-2 * 86400, 86400 + 60, 7 * 86400, None], ids=["future", "a day old", "a week old", "2000"])
def test_a_replayed_message_outside_the_clock_window_is_refused(bot, clock, age):
    """A validly signed message whose timestamp is more than max_clock_skew (a day) away from now
    is a replay: refused before anything is stored, whatever its MsgId; so is URL verification."""
    app, wecom = bot
    ts = "946684800" if age is None else str(int(clock.now().timestamp()) - age)  # 2000-01-01
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 60% 重放", "8101"), ts=ts)
    resp = wecom.post_raw(body, params)
    assert resp.status_code == 403 and "timestamp" in resp.text
    assert wecom.verify_url("echo", ts=ts).status_code == 403
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0
    fresh = str(int(clock.now().timestamp()) - 3600)  # an hour's skew is accepted
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 60% 正常", "8102"), ts=fresh)
    assert "60%" in wecom.decrypt_reply(wecom.post_raw(body, params))["Content"]


@pytest.mark.parametrize("msg_id", ["1" * 65, str(2 ** 64), "-5", "12ab"])
def test_a_msgid_that_is_not_a_64_bit_integer_is_refused_at_the_wire(bot, msg_id):
    app, wecom = bot
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 60% x", msg_id))
    resp = wecom.post_raw(body, params)
    assert resp.status_code == 400 and "MsgId" in resp.text
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0


def test_the_same_msgid_from_two_people_is_two_messages(bot):
    """Dedupe is by sender and MsgId: another person's message that happens to carry the same
    MsgId is handled, not answered with the first person's reply."""
    app, wecom = bot
    first = wecom.say("li", "汇报 T1 60% 李四的", msg_id="8201")
    second = wecom.say("zhao", "汇报 T3 30% 赵六的", msg_id="8201")
    assert "T1" in first and "T3" in second
    assert count(app, Report) == 2 and count(app, ProcessedMessage) == 2
    assert wecom.say("zhao", "汇报 T3 30% 赵六的", msg_id="8201") == second


def test_an_xml_entity_bomb_is_refused_fast_and_the_server_keeps_serving(bot):
    _, wecom = bot
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
            + ']><xml><Encrypt>&i;</Encrypt></xml>')
    started = time.monotonic()
    resp = wecom.post_raw(bomb, {"msg_signature": "x", "timestamp": "1", "nonce": "n"})
    assert resp.status_code == 400
    assert time.monotonic() - started < 1.0
    assert "T1" in wecom.say("li", "任务")


def test_an_oversized_body_is_refused(bot):
    _, wecom = bot
    resp = wecom.post_raw("<xml>" + "x" * 200_000 + "</xml>", {"msg_signature": "x", "timestamp": "1", "nonce": "n"})
    assert resp.status_code == 413
    assert "T1" in wecom.say("li", "任务")


def test_unknown_user_is_told_to_ask_an_admin_and_nothing_is_stored(bot):
    app, wecom = bot
    reply = wecom.say("stranger", "汇报 T1 60% x", msg_id="9001")
    assert "管理员" in reply and "stranger" in reply
    assert count(app, ProcessedMessage) == 0 and count(app, Report) == 0


def test_non_text_messages_get_a_hint_and_events_an_empty_answer(bot):
    _, wecom = bot
    voice = text_xml("li", "", "9101").replace("<MsgType><![CDATA[text]]></MsgType>",
                                               "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m]]></MediaId>")
    body, params = wecom.encrypt(voice)
    assert "文字命令和图片" in wecom.decrypt_reply(wecom.post_raw(body, params))["Content"]
    event = ("<xml><ToUserName><![CDATA[wwfakecorp]]></ToUserName><FromUserName><![CDATA[li]]></FromUserName>"
             "<CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[enter_agent]]></Event>"
             "<EventKey><![CDATA[]]></EventKey><AgentID>1000002</AgentID></xml>")
    body, params = wecom.encrypt(event)
    resp = wecom.post_raw(body, params)
    assert resp.status_code == 200 and resp.text == ""


def test_half_sent_requests_are_cut_off_and_the_server_keeps_serving(db_url, clock, fake):
    """Clients that send their headers or their body slowly, or not at all, are disconnected when
    the read deadline passes (here 0.5 s; 10 s in `duban serve`), so they cannot hold the
    server's connections; meanwhile and after, WeCom's callbacks are answered."""
    import socket

    from bot.wecom.callback import server_options

    app = Application(make_config(db_url, api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    try:
        with ServerThread(build_asgi(app, body_timeout=0.5), **server_options(header_timeout=0.5)) as server:
            wecom = WeComSide(server.base, clock=clock)
            slow = []
            for i in range(40):
                conn = socket.create_connection(("127.0.0.1", server.port))
                head = f"POST /wecom/callback?msg_signature=x&timestamp=1&nonce=n HTTP/1.1\r\nHost: x\r\n"
                if i % 2:  # whole headers, a tenth of the body
                    head += "Content-Length: 1000\r\n\r\n<xml>"
                conn.sendall(head.encode())
                slow.append(conn)
            assert "T1" in wecom.say("li", "任务")  # served while they hang
            for conn in slow:
                conn.settimeout(10)
                try:
                    while conn.recv(4096):  # a 408 for the slow bodies, then the close
                        pass
                except ConnectionResetError:
                    pass
                conn.close()
            assert "T1" in wecom.say("li", "任务")
    finally:
        app.engine.dispose()


def test_answers_stay_well_inside_five_seconds_under_concurrency(bot):
    _, wecom = bot

    def one(i):
        started = time.monotonic()
        reply = wecom.say("li" if i % 2 else "zhao", f"汇报 {'T1' if i % 2 else 'T3'} {i}% 第{i}次", msg_id=str(90000 + i))
        return time.monotonic() - started, reply

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    assert all("已收到" in r for _, r in results)
    assert max(t for t, _ in results) < 5.0


def test_answered_msgids_are_pruned_once_outside_the_replay_window(bot, clock):
    """The daily prune forgets answers older than the window (a day) and a margin, and keeps the
    rest: a retry inside the window is still answered from its record."""
    from datetime import timedelta

    from jobs import JobQueue

    app, wecom = bot
    start = clock.now()
    wecom.say("li", "汇报 T1 10% 旧的", msg_id="8301")
    clock.set(start + timedelta(hours=20))
    recent = wecom.say("li", "汇报 T1 20% 新的", msg_id="8302")
    clock.set(start + timedelta(days=1, hours=2))
    assert JobQueue(app).prune() == 1
    with Session(app.engine) as s:
        assert [p.msg_id for p in s.exec(select(ProcessedMessage))] == ["8302"]
    body, params = wecom.encrypt(text_xml("li", "汇报 T1 20% 新的", "8302"),
                                 ts=str(int((start + timedelta(hours=20)).timestamp())))
    assert wecom.decrypt_reply(wecom.post_raw(body, params))["Content"] == recent
    assert count(app, Report) == 2


@pytest.mark.parametrize("msg_id", [None, "", "<![CDATA[]]>", "1_000", "+5", "３"],
                         ids=["missing", "empty", "empty CDATA", "underscore", "plus", "full-width digit"])
def test_a_missing_empty_or_malformed_msgid_is_refused_and_never_answered_from_another(bot, msg_id):
    """A text message's MsgId is what dedupe goes by: one that is missing or empty is not MsgId 0,
    and "1_000" is not 1000; such a message is refused and stored nowhere, so a later message of
    the same person is handled, not answered from the first one's record."""
    app, wecom = bot
    xml = text_xml("li", "汇报 T1 60% 第一条", "MSGID")
    xml = xml.replace("<MsgId>MSGID</MsgId>", "" if msg_id is None else f"<MsgId>{msg_id}</MsgId>")
    resp = wecom.post_raw(*wecom.encrypt(xml))
    assert resp.status_code == 400 and "MsgId" in resp.text
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0
    assert "70%" in wecom.say("li", "汇报 T1 70% 第二条", msg_id="1000")
    assert count(app, Report) == 1


def test_bad_requests_are_refused_with_one_log_line_and_no_traceback(bot, caplog):
    _, wecom = bot
    caplog.set_level("INFO")
    resp = wecom.post_raw("<xml>" + "<a>" * 5000 + "</xml>", {"msg_signature": "x", "timestamp": "1", "nonce": "n"})
    assert resp.status_code == 400
    [line] = [r for r in caplog.records if r.name.startswith("duban")]
    assert "refused" in line.getMessage() and "400" in line.getMessage() and line.exc_info is None
