"""The smart robot (智能机器人) over real HTTP: JSON callbacks encrypted as WeCom encrypts them (receive
id ""), in a unit's group and 1:1, answered with encrypted stream messages; SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import timedelta
import time

import pytest
from sqlmodel import Session, func, select

from bot.app import Application
from bot.cli import _worker
from bot.wecom.callback import build_asgi
from conftest import ServerThread, make_config, seed
from db.models import Outbox, ProcessedMessage, Report, Unit
from wecom_client import ROBOT_AES_KEY, ROBOT_TOKEN, RobotSide

GROUP = "wrkSFfCgAAjd"  # the smart robot's chatid of 机电工程系's group


def robot_config(db_url, fake):
    return make_config(db_url, api_base=fake.base,
                       aibot={"enabled": True, "token": ROBOT_TOKEN, "encoding_aes_key": ROBOT_AES_KEY})


def serve(db_url, clock, fake, **options):
    application = Application(robot_config(db_url, fake), clock=clock)
    application.migrate()
    seed(application)
    with application.session() as s:
        unit = s.exec(select(Unit).where(Unit.name == "机电工程系")).one()
        unit.aibot_chatid = GROUP
        s.add(unit)
    return application, ServerThread(build_asgi(application, **options))


@pytest.fixture
def robot(db_url, clock, fake):
    application, server = serve(db_url, clock, fake)
    with server:
        yield application, RobotSide(server.base, clock=clock, response_base=fake.base)
    application.engine.dispose()


def count(app, model) -> int:
    with Session(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def deliver(app) -> None:
    worker = _worker(app)
    try:
        worker.drain(10)
    finally:
        worker.stop()


def private_messages(fake, userid: str) -> list[str]:
    return [d.body["text"]["content"] for d in fake.deliveries("message/send")
            if d.target == f"user:{userid}" and d.body["msgtype"] == "text"]


def test_url_verification_answers_the_bare_echostr(robot):
    _, wecom = robot
    resp = wecom.verify_url("1616140317555161061")
    assert resp.status_code == 200 and resp.text == "1616140317555161061"
    params = dict(resp.request.url.params)
    params["msg_signature"] = "0" * 40
    assert wecom.http.get(wecom.url, params=params).status_code == 403


def test_a_report_in_the_group_is_acknowledged_publicly_naming_the_person_and_the_task(robot):
    app, wecom = robot
    reply = wecom.say("li", "汇报 T1 60% 完成实训基地主体验收", chatid=GROUP)
    assert "李四" in reply and "T1" in reply and "60%" in reply
    assert "还有 1 项任务未汇报" in reply
    with Session(app.engine) as s:
        rep = s.exec(select(Report)).one()
    assert (rep.userid, rep.percent, rep.text) == ("li", 60, "完成实训基地主体验收")  # the @-mention is not content


def test_a_report_in_1to1_is_the_same_command(robot):
    app, wecom = robot
    reply = wecom.say("zhao", "汇报 T3 30% 完成需求调研")
    assert reply.startswith("✅ 已收到 T3 汇报：进度 30%")  # 1:1: nobody else reads it, no name
    assert count(app, Report) == 1


def test_a_retried_msgid_is_handled_once_and_answered_identically(robot):
    app, wecom = robot
    msg = wecom.message("li", "汇报 T1 60% 主体验收", msg_id="CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=", chatid=GROUP)
    first, second = (wecom.post(msg) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert wecom.decrypt_reply(first)["stream"]["content"] == wecom.decrypt_reply(second)["stream"]["content"]
    assert count(app, Report) == 1 and count(app, ProcessedMessage) == 1


def test_a_msgid_longer_than_64_characters_is_refused_at_the_wire(robot):
    app, wecom = robot
    resp = wecom.post(wecom.message("li", "汇报 T1 60% x", msg_id="m" * 65, chatid=GROUP))
    assert resp.status_code == 400 and "msgid" in resp.text
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0


@pytest.mark.parametrize("command", ["督办 信息工程系 2026-03-28 报送材料", "提醒 信息工程系",
                                     "新增任务 机电工程系 敢为争先 建设 责任人=li 期限=2026-10-31",
                                     "办结 D1 材料齐全", "退回 D1 请补充", "同意延期 D1", "不同意延期 D1 按期完成",
                                     "确认销号 P1"])
def test_an_admin_command_about_other_units_is_refused_in_a_group(robot, fake, command):
    app, wecom = robot
    reply = wecom.say("admin", command, chatid=GROUP)
    assert "请私聊" in reply and "未做任何操作" in reply
    deliver(app)
    assert fake.deliveries() == []
    with Session(app.engine) as s:
        assert s.exec(select(Outbox)).all() == []


def test_a_long_answer_asked_in_a_group_is_sent_to_the_person_1to1(robot, fake):
    app, wecom = robot
    reply = wecom.say("admin", "状态", chatid=GROUP)
    assert "私聊发送给您" in reply and "党政办公室" not in reply  # no other unit's figures in the group
    deliver(app)
    [private] = private_messages(fake, "admin")
    assert "概况" in private and "机电工程系" in private and "信息工程系" in private
    assert "概况" in wecom.say("admin", "状态")  # 1:1 the answer comes at once, in the chat


def test_bad_signature_is_refused_with_no_side_effect(robot):
    app, wecom = robot
    body, params = wecom.encrypt(wecom.message("li", "汇报 T1 60% x", chatid=GROUP))
    params["msg_signature"] = "f" * 40
    assert wecom.post_raw(body, params).status_code == 403
    other = RobotSide(wecom.url.removesuffix("/wecom/aibot"), token="another-token",
                      clock=None).encrypt(wecom.message("li", "汇报 T1 60% x"))  # signed with another token
    assert wecom.post_raw(*other).status_code == 403
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0


def test_malformed_json_is_refused(robot):
    app, wecom = robot
    _, params = wecom.encrypt(wecom.message("li", "任务"))
    for body in ("not json", "[1, 2]", '{"encrypt": 5}', "{}", "<xml><Encrypt>x</Encrypt></xml>"):
        assert wecom.post_raw(body, params).status_code == 400, body
    for plain in ("not json inside", "[]", {"msgid": "m1", "msgtype": "text", "text": {"content": "任务"}},
                  {"msgid": "m2", "from": {"userid": "li"}, "msgtype": "text", "text": "任务"},
                  {"msgid": "m3", "from": {"userid": "li"}, "chattype": "group", "msgtype": "text",
                   "text": {"content": "任务"}}):
        assert wecom.post(plain).status_code == 400, plain
    assert wecom.http.post(wecom.url, content=b"{}").status_code == 400  # no signature parameters
    assert count(app, ProcessedMessage) == 0


def test_a_replayed_message_outside_the_clock_window_is_refused(robot, clock):
    app, wecom = robot
    old = str(int(clock.now().timestamp()) - 2 * 86400)
    assert wecom.post(wecom.message("li", "汇报 T1 60% 重放", chatid=GROUP), ts=old).status_code == 403
    assert wecom.verify_url(ts=old).status_code == 403
    assert count(app, Report) == 0


def test_an_unbound_group_still_serves_the_sender_for_their_own_unit(robot):
    app, wecom = robot
    reply = wecom.say("zhao", "汇报 T3 40% 联调完成", chatid="wrkUnboundGroup")
    assert "赵六" in reply and "T3" in reply and "信息工程系" in reply
    reply = wecom.say("wang", "汇报 T3 45% 在机电群里说", chatid=GROUP)  # another unit's group: own unit
    assert "王五" in reply and "信息工程系" in reply
    assert count(app, Report) == 2
    with Session(app.engine) as s:
        assert {u.name for u in s.exec(select(Unit).where(Unit.aibot_chatid != ""))} == {"机电工程系"}
    assert "尚未加入争先督办名单" in wecom.say("stranger", "任务", chatid="wrkUnboundGroup")


def test_binding_a_group_to_a_unit(robot):
    app, wecom = robot
    assert "已绑定信息工程系" in wecom.say("admin", "绑定 信息工程系", chatid="wrkXxGroup")
    reply = wecom.say("admin", "绑定 图书馆", chatid="wrkXxGroup")  # a group belongs to one unit
    assert "已绑定图书馆" in reply and "信息工程系" in reply
    with Session(app.engine) as s:
        bound = {u.name: u.aibot_chatid for u in s.exec(select(Unit))}
    assert bound == {"党政办公室": "", "机电工程系": GROUP, "信息工程系": "", "图书馆": "wrkXxGroup"}
    assert "仅限管理员" in wecom.say("li", "绑定 机电工程系", chatid="wrkXxGroup")
    assert "单位群里" in wecom.say("admin", "绑定 图书馆")  # 1:1 there is no group to bind
    assert "没有找到单位" in wecom.say("admin", "绑定 火星系", chatid="wrkXxGroup")


def test_prompts_of_a_bound_unit_say_at_the_robot_in_the_group(robot, fake):
    app, wecom = robot
    wecom.say("admin", "提醒 机电工程系")
    wecom.say("admin", "提醒 信息工程系")
    deliver(app)
    by_target = {d.target: json.dumps(d.body, ensure_ascii=False) for d in fake.deliveries()}
    assert "在群里 @争先督办 或私聊" in by_target["chat:chat-jd"]
    assert "在群里 @争先督办" not in by_target["robot:key-xx"]


def test_entering_the_1to1_chat_gets_a_welcome_and_help_once_a_day(robot, clock):
    app, wecom = robot
    resp = wecom.post(wecom.event("li"))
    answer = wecom.decrypt_reply(resp)
    assert answer["msgtype"] == "text"
    assert "欢迎" in answer["text"]["content"] and "汇报" in answer["text"]["content"]
    again = wecom.post(wecom.event("li"))
    assert again.status_code == 200 and again.text == ""
    clock.set(clock.now() + timedelta(days=1))
    assert "欢迎" in wecom.decrypt_reply(wecom.post(wecom.event("li")))["text"]["content"]
    assert wecom.post(wecom.event("li", "feedback_event")).text == ""


def test_an_answer_not_ready_in_time_goes_to_the_response_url(db_url, clock, fake):
    app, server = serve(db_url, clock, fake, aibot_reply_timeout=0)
    with server:
        wecom = RobotSide(server.base, clock=clock, response_base=fake.base)
        msg = wecom.message("li", "汇报 T1 70% 设备进场", chatid=GROUP)
        reply = wecom.decrypt_reply(wecom.post(msg))["stream"]["content"]
        assert "正在处理" in reply
        deadline = time.monotonic() + 10  # the answer is enqueued once the writer has it
        while count(app, Outbox) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        deliver(app)
    [late] = fake.deliveries("aibot/response")
    assert late.target == f"response:{msg['msgid']}"
    assert late.body["msgtype"] == "markdown" and "李四" in late.body["markdown"]["content"]
    assert "T1" in late.body["markdown"]["content"] and count(app, Report) == 1
    app.engine.dispose()


def test_config_names_a_missing_smart_robot_key(tmp_path):
    from bot.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text('[aibot]\nenabled = true\ntoken = "t"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^config error: aibot.encoding_aes_key: required when aibot.enabled"):
        load_config(path, env={})
    cfg = load_config(path, env={"DUBAN_AIBOT_ENCODING_AES_KEY": ROBOT_AES_KEY})
    assert cfg.aibot.callback_path == "/wecom/aibot" and cfg.aibot.encoding_aes_key == ROBOT_AES_KEY
    path.write_text('[aibot]\nencoding_aes_key = "short"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="aibot.encoding_aes_key: must be 43 characters"):
        load_config(path, env={})


def test_a_passive_reply_is_signed_with_the_callback_urls_nonce(robot):
    """WeCom checks a reply against the nonce of the callback it answers (tests/wecom_json_check.py,
    the JSON sample's checks written independently): a reply and a welcome both pass."""
    from wecom_json_check import open_reply

    _, wecom = robot
    body, params = wecom.encrypt(wecom.message("li", "汇报 T1 60% 主体验收", chatid=GROUP))
    resp = wecom.post_raw(body, params)
    answer = open_reply(resp.content, ROBOT_TOKEN, ROBOT_AES_KEY, params["nonce"])
    assert answer["msgtype"] == "stream" and "T1" in answer["stream"]["content"]
    body, params = wecom.encrypt(wecom.event("zhao"))
    answer = open_reply(wecom.post_raw(body, params).content, ROBOT_TOKEN, ROBOT_AES_KEY, params["nonce"])
    assert "欢迎" in answer["text"]["content"]


def test_deeply_nested_json_is_refused_with_one_log_line_signed_or_not(robot, caplog):
    """Unsigned, the body is refused before it is parsed (403); with a valid signature replayed on
    a deeply nested body, it is refused as malformed (400): never a 500 or a traceback."""
    app, wecom = robot
    caplog.set_level("INFO")
    nested = "[" * 20000 + "]" * 20000
    body, params = wecom.encrypt(wecom.message("li", "汇报 T1 60% x", chatid=GROUP))
    resp = wecom.post_raw(body[:-1] + ', "y": ' + nested + "}", {**params, "msg_signature": "f" * 40})
    assert resp.status_code == 403
    resp = wecom.post_raw(body[:-1] + ', "y": ' + nested + "}", params)
    assert resp.status_code == 400
    lines = [r for r in caplog.records if r.name.startswith("duban")]
    assert len(lines) == 2 and all("refused" in r.getMessage() and r.exc_info is None for r in lines)
    too_large = wecom.post_raw(body[:-1] + ', "y": "' + "x" * 100_000 + '"}', params)
    assert too_large.status_code == 413
    assert count(app, Report) == 0 and count(app, ProcessedMessage) == 0
    assert "T1" in wecom.say("li", "汇报 T1 60% x", chatid=GROUP)
