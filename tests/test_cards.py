"""Decision cards (issue 25): a decision asked 1:1 comes as a WeCom template card (button_interaction)
that the fake WeCom checks against the documented fields and limits; a signed, encrypted
template_card_event for a button does what the typed command does; a button whose command needs
words asks for them and the person's next message completes it (within 10 minutes); the tapped card
is updated by the passive reply and every other by message/update_template_card. On SQLite and
PostgreSQL."""
from __future__ import annotations

import json
import re
import pytest
from sqlmodel import Session, select

from bot.app import Application
from bot.excel.export import generate
from bot.wecom.api import WeComTransport
from bot.wecom.callback import build_asgi
from bot.wecom.sender import ConsoleTransport, OutboxWorker
from conftest import ServerThread, at, make_config, seed
from db.models import Appeal, DecisionCard, ItemEvent, Member, Outbox, Problem, ProblemProgress, RankingRelease, SupervisionItem
from fake_wecom import card_error
from jobs import JobQueue
from wecom_client import WeComSide


class Bot:
    def __init__(self, app: Application, wecom: WeComSide, fake):
        self.app, self.wecom, self.fake = app, wecom, fake
        self.worker = OutboxWorker(app.engine, WeComTransport(app.config.wecom), app.clock, app.config.sender,
                                   tz=app.config.schedule.tz,
                                   file_source=lambda s, row: generate(s, app.config, json.loads(row.payload)))

    def say(self, userid: str, text: str) -> str:
        return self.wecom.say(userid, text)

    def deliver(self) -> None:
        """Send what the outbox holds to the fake WeCom; nothing may be left or failed."""
        self.worker.run_once()
        with Session(self.app.engine) as s:
            left = [(r.key, r.status, r.last_error) for r in s.exec(select(Outbox)) if r.status != "sent"]
        assert left == []

    def card(self, userid: str, title: str) -> dict:
        """The last card delivered to `userid` whose title has `title` in it."""
        self.deliver()
        found = [c for c in self.fake.cards(userid) if title in c["main_title"]["title"]]
        assert found, f"no card {title!r} for {userid}: {[c['main_title']['title'] for c in self.fake.cards()]}"
        return found[-1]

    def tap(self, userid: str, card: dict, label: str) -> str | None:
        """Tap the button `label`; the card's new button text from the passive reply, or None."""
        (key,) = [b["key"] for b in card["button_list"] if b["text"] == label]
        reply = self.wecom.tap(userid, card["task_id"], key, self.fake.click_code(card["task_id"]))
        if reply is None:
            return None
        assert reply["MsgType"] == "update_button"
        return reply["Button"]["ReplaceName"]

    def told(self, userid: str) -> list[str]:
        """What the bot said to `userid` 1:1 about their taps."""
        with Session(self.app.engine) as s:
            return [json.loads(r.payload)["content"] for r in s.exec(select(Outbox).order_by(Outbox.id))
                    if r.target == userid and r.msgtype == "text" and r.key.startswith(f"reply:{userid}:card:")]


@pytest.fixture
def bot(db_url, clock, fake):
    app = Application(make_config(db_url, api_base=fake.base), clock=clock)
    app.migrate()
    seed(app)
    with app.session() as s:
        office = s.exec(select(Member).where(Member.userid == "admin")).one().unit_id
        s.add(Member(userid="admin2", name="陈静", unit_id=office, role="管理员"))
    with ServerThread(build_asgi(app)) as server:
        yield Bot(app, WeComSide(server.base, clock=clock), fake)
    app.engine.dispose()


def events(app, code: str) -> list[tuple[str, str, str]]:
    """An item's timeline, its code written X (to compare two items' traces)."""
    with Session(app.engine) as s:
        item = s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).one()
        return [(e.kind, e.userid, e.text) for e in s.exec(select(ItemEvent).where(ItemEvent.item_id == item.id)
                                                             .order_by(ItemEvent.id))]


def item(app, code: str) -> SupervisionItem:
    with Session(app.engine) as s:
        return s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).one()


def pushes(app, code: str) -> list[tuple[str, str]]:
    """The text pushes about a code to others than the one who acted (units, admins), code written X."""
    with Session(app.engine) as s:
        rows = s.exec(select(Outbox).where(Outbox.msgtype != "card_update").order_by(Outbox.id))
        return [(r.target, re.sub(rf"\b{code}\b", "X", json.loads(r.payload)["content"]))
                for r in rows if r.key.startswith("push:") and re.search(rf"\b{code}\b", r.payload)]


def test_a_tap_on_each_button_of_an_item_does_what_its_typed_command_does(bot, clock):
    app = bot.app
    bot.say("admin", "督办 图书馆 3月28日 报送开放时间方案")  # D1: by taps
    bot.say("admin", "督办 图书馆 3月28日 报送开放时间方案")  # D2: typed
    sign = bot.card("sun", "督办单 D1")
    assert [b["text"] for b in sign["button_list"]] == ["签收", "反馈", "申请延期"]
    assert sign["quote_area"]["quote_text"] == "报送开放时间方案"

    assert bot.tap("sun", sign, "签收") == "已签收 · 孙七 03-20 10:00"
    bot.say("sun", "签收 D2")
    assert events(app, "D1")[1:] == events(app, "D2")[1:] == [("签收", "sun", "")]

    assert bot.tap("sun", sign, "反馈") == "已签收 · 孙七 03-20 10:00"  # signed: the card shows it, nothing asked

    # a new item's 反馈 button asks for the words; the next message is the 反馈
    bot.say("admin", "督办 图书馆 3月28日 报送开放时间方案")  # D3
    clock.set(at(2026, 3, 20, 10, 1))
    assert bot.tap("sun", bot.card("sun", "督办单 D3"), "反馈") is None
    assert bot.told("sun")[-1] == "请回复办理情况，直接发送文字即可（10 分钟内有效）。"
    assert "已报管理员审核" in bot.say("sun", "方案已报送")
    bot.say("sun", "反馈 D2 方案已报送")
    assert events(app, "D3")[1:] == events(app, "D2")[1:] == [("签收", "sun", ""), ("反馈", "sun", "方案已报送")]
    assert pushes(app, "D3") == pushes(app, "D2")  # the group, the 负责人's card, the 反馈 to both admins

    # the admins' card for the 反馈: 退回 asks for words, 办结 is the command
    answer = bot.card("admin", "督办单 D3")
    assert answer["main_title"]["title"] == "督办单 D3 · 反馈待审核" and answer["quote_area"]["quote_text"] == "方案已报送"
    assert bot.tap("admin", answer, "退回") is None
    assert bot.told("admin")[-1] == "请回复退回意见，直接发送文字即可（10 分钟内有效）。"
    assert "已退回" in bot.say("admin", "请补充照片")
    bot.say("admin", "退回 D2 请补充照片")
    assert item(app, "D3").status == item(app, "D2").status == "退回"
    assert events(app, "D3")[-1] == events(app, "D2")[-1] == ("退回", "admin", "请补充照片")
    assert [p for p in pushes(app, "D3") if "请补充照片" in p[1]] == [p for p in pushes(app, "D2") if "请补充照片" in p[1]]

    bot.say("sun", "反馈 D3 已补充")
    bot.say("sun", "反馈 D2 已补充")
    clock.set(at(2026, 3, 21, 9))
    assert bot.tap("admin", bot.card("admin", "督办单 D3"), "办结") == "已办结 · 王管理 03-21 09:00"
    bot.say("admin", "办结 D2")
    assert item(app, "D3").status == item(app, "D2").status == "办结"
    assert events(app, "D3")[1:] == events(app, "D2")[1:]
    assert pushes(app, "D3")[-1] == pushes(app, "D2")[-1] and "已办结" in pushes(app, "D2")[-1][1]


def test_extension_and_closing_buttons_do_what_their_commands_do(bot, clock):
    app = bot.app
    bot.say("admin", "督办 图书馆 3月28日 报送方案")  # D1: taps
    bot.say("admin", "督办 图书馆 3月28日 报送方案")  # D2: typed
    assert bot.tap("sun", bot.card("sun", "督办单 D1"), "申请延期") is None
    assert "新期限和理由" in bot.told("sun")[-1]
    assert "待管理员审批" in bot.say("sun", "4月10日 等待批复")
    bot.say("sun", "延期 D2 4月10日 等待批复")
    ask = bot.card("admin2", "督办单 D1")
    assert ask["main_title"]["title"] == "督办单 D1 · 申请延期" and ask["quote_area"]["quote_text"] == "等待批复"
    assert {"keyname": "申请延至", "value": "2026-04-10"} in ask["horizontal_content_list"]
    assert bot.tap("admin2", ask, "同意延期") == "已同意延期至 04-10 · 陈静 03-20 10:00"
    bot.say("admin2", "同意延期 D2")
    assert item(app, "D1").deadline == item(app, "D2").deadline and str(item(app, "D1").deadline) == "2026-04-10"
    assert events(app, "D1")[1:] == events(app, "D2")[1:]
    assert pushes(app, "D1") == pushes(app, "D2")

    bot.say("sun", "延期 D1 4月20日 还要等")
    bot.say("sun", "延期 D2 4月20日 还要等")
    assert bot.tap("admin", bot.card("admin", "督办单 D1 · 申请延期"), "不同意") is None
    assert bot.told("admin")[-1] == "请回复不同意的理由，直接发送文字即可（10 分钟内有效）。"
    bot.say("admin", "请按期完成")
    bot.say("admin", "不同意延期 D2 请按期完成")
    assert item(app, "D1").ask_deadline is None and events(app, "D1")[1:] == events(app, "D2")[1:]
    assert pushes(app, "D1") == pushes(app, "D2")

    # 销号: 确认销号 by a tap, 退回 by a tap and words
    for _ in range(4):
        bot.say("sun", "问题 开放时间不足 时限=4月30日")
    for code in ("P1", "P2", "P3", "P4"):
        bot.say("sun", f"销号 {code} 已延长开放时间")
    close = bot.card("admin", "问题 P1")
    assert [b["text"] for b in close["button_list"]] == ["确认销号", "退回"]
    assert bot.tap("admin", close, "确认销号").startswith("已确认销号 · 王管理")
    bot.say("admin", "确认销号 P2")
    bot.tap("admin", bot.card("admin", "问题 P3"), "退回")
    bot.say("admin", "照片不清楚")
    bot.say("admin", "退回 P4 照片不清楚")
    with Session(app.engine) as s:
        status = {p.code: p.status for p in s.exec(select(Problem))}
        notes = {(p.problem_id, p.kind, p.userid, p.text) for p in s.exec(select(ProblemProgress))}
    assert status == {"P1": "已销号", "P2": "已销号", "P3": "整改中", "P4": "整改中"}
    assert len(notes) == 8  # four asks, and what the admin did to each (P1/P2 and P3/P4 the same)
    assert pushes(app, "P1") == pushes(app, "P2") and pushes(app, "P3") == pushes(app, "P4")


def test_the_ranking_preview_card_publishes_or_holds(bot, clock):
    app = bot.app
    app.config.broadcast.chat_id = "chat-all"
    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run_at("monthly_ranking", clock.now())
    preview = bot.card("admin", "2026-03 排名预览")
    assert [b["text"] for b in preview["button_list"]] == ["发布", "暂缓"]
    assert bot.tap("admin", preview, "暂缓") is None
    bot.say("admin", "等申诉核实")
    with Session(app.engine) as s:
        release = s.exec(select(RankingRelease)).one()
        assert (release.status, release.hold_reason) == ("held", "等申诉核实")
    bot.deliver()
    assert ("user:admin2", "已暂缓 · 王管理 04-01 10:00") in bot.fake.card_updates()
    assert bot.tap("admin2", bot.card("admin2", "2026-03 排名预览"), "发布") == "已暂缓 · 王管理 04-01 10:00"
    bot.say("admin", "发布 2026-03")  # typed: published; the cards were settled by the hold already
    with Session(app.engine) as s:
        assert s.exec(select(RankingRelease)).one().status == "published"


def test_a_second_tap_a_tap_after_the_typed_command_and_a_tap_without_the_right_change_nothing(bot, clock):
    app = bot.app
    bot.say("admin", "督办 图书馆 3月28日 报送方案")
    bot.say("sun", "延期 D1 4月10日 等待批复")
    mine, theirs = bot.card("admin", "督办单 D1"), bot.card("admin2", "督办单 D1")

    with app.session() as s:  # admin2 is no longer an admin
        s.exec(select(Member).where(Member.userid == "admin2")).one().role = "成员"
    assert bot.tap("admin2", theirs, "同意延期") is None
    assert "仅限管理员" in bot.told("admin2")[-1]
    assert bot.tap("admin2", theirs, "不同意") is None
    assert "仅限管理员" in bot.told("admin2")[-1]
    assert item(app, "D1").ask_deadline is not None and [k for k, _, _ in events(app, "D1")] == ["下发", "延期申请"]

    clock.set(at(2026, 3, 20, 10, 5))
    assert bot.tap("admin", mine, "同意延期") == "已同意延期至 04-10 · 王管理 03-20 10:05"
    done = events(app, "D1")
    clock.set(at(2026, 3, 20, 10, 6))
    assert bot.tap("admin", mine, "同意延期") == "已同意延期至 04-10 · 王管理 03-20 10:05"  # shows it again
    assert bot.tap("admin", mine, "不同意") == "已同意延期至 04-10 · 王管理 03-20 10:05"
    assert events(app, "D1") == done and item(app, "D1").ask_deadline is None

    # typed first: the card shows the typed decision and a tap does nothing again
    bot.say("sun", "延期 D1 4月20日 还要等")
    card = bot.card("admin", "督办单 D1 · 申请延期")
    bot.say("admin", "不同意延期 D1 请按期完成")
    before = events(app, "D1")
    assert bot.tap("admin", card, "同意延期") == "已不同意延期 · 王管理 03-20 10:06"
    assert events(app, "D1") == before and str(item(app, "D1").deadline) == "2026-04-10"

    # WeCom retrying the same tap event is answered the same, and handled once
    key = [b["key"] for b in card["button_list"] if b["text"] == "同意延期"][0]
    for _ in range(2):
        reply = bot.wecom.tap("admin", card["task_id"], key, "rc-x", create_time=1774000000)
        assert reply["Button"]["ReplaceName"] == "已不同意延期 · 王管理 03-20 10:06"
    # a card that is not the tapper's, or a key the bot never made, is nothing
    assert bot.wecom.tap("sun", card["task_id"], key) is None
    assert bot.wecom.tap("admin", "no-such-task", key) is None
    assert events(app, "D1") == before


def test_the_outcome_reaches_every_recipients_card(bot, clock):
    app = bot.app
    bot.say("admin", "督办 图书馆,机电工程系 3月28日 报送方案")
    bot.say("sun", "延期 D1 4月10日 等待批复")
    bot.deliver()
    assert bot.tap("admin2", bot.card("admin2", "申请延期"), "同意延期") == "已同意延期至 04-10 · 陈静 03-20 10:00"
    bot.deliver()
    assert bot.fake.card_updates() == [("user:admin", "已同意延期至 04-10 · 陈静 03-20 10:00")]
    # a typed decision updates the cards it settles: each unit signs its own part, so 签收 by the
    # 配合单位 机电工程系 closes its 负责人's card and leaves the 牵头单位's open
    bot.say("li", "签收 D1")
    bot.deliver()
    assert bot.fake.card_updates()[1:] == [("user:zhang", "已签收 · 李四 03-20 10:00")]
    bot.say("sun", "签收 D1")  # the 牵头单位 signs its own
    bot.deliver()
    assert bot.fake.card_updates()[2:] == [("user:sun", "已签收 · 孙七 03-20 10:00")]
    with Session(app.engine) as s:
        assert all(c.response_code and c.outcome for c in s.exec(select(DecisionCard)))


def test_words_asked_by_a_tap_come_with_the_next_message_within_ten_minutes(bot, clock):
    app = bot.app
    bot.say("admin", "督办 图书馆 3月28日 报送方案")
    bot.say("sun", "反馈 D1 已报送")
    card = bot.card("admin", "督办单 D1")
    assert bot.tap("admin", card, "退回") is None
    clock.set(at(2026, 3, 20, 10, 9))
    assert "已退回" in bot.say("admin", "请补充照片")
    assert events(app, "D1")[-1] == ("退回", "admin", "请补充照片")
    bot.deliver()  # its own card too: it was decided by a message, not by the tap's answer
    assert sorted(bot.fake.card_updates()) == [("user:admin", "已退回 · 王管理 03-20 10:09"),
                                               ("user:admin2", "已退回 · 王管理 03-20 10:09"),
                                               ("user:sun", "已签收 · 孙七 03-20 10:00")]  # the 反馈 signed too

    bot.say("sun", "反馈 D1 已补充")
    assert bot.tap("admin", bot.card("admin", "督办单 D1"), "退回") is None
    clock.set(at(2026, 3, 20, 10, 20))  # eleven minutes later: the tap has lapsed
    answer = bot.say("admin", "还是不全")
    assert "超过 10 分钟" in answer and "退回 D1" in answer
    assert item(app, "D1").status == "已反馈" and events(app, "D1")[-1][0] == "反馈"
    assert "已办结" in bot.say("admin", "办结 D1")  # a command after a lapsed tap is the command
    assert item(app, "D1").status == "办结"


def test_cards_fit_wecoms_limits_and_groups_and_config_get_text(bot, clock, db_url, fake):
    app = bot.app
    long = "报送" + "很长的事项内容" * 40
    bot.say("admin", f"督办 信息工程系 3月28日 {long}")  # a group robot: text there, the card to its 负责人
    card = bot.card("wang", "督办单 D1")
    assert card_error(card) is None and len(card["quote_area"]["quote_text"]) <= 160
    with Session(app.engine) as s:
        robot = [r for r in s.exec(select(Outbox)) if r.channel == "webhook"]
    assert len(robot) == 1 and robot[0].msgtype == "markdown" and "签收 D1" in json.loads(robot[0].payload)["content"]
    # what the fake refuses, as WeCom documents it
    assert card_error({**card, "task_id": "含中文"}) is not None
    assert card_error({**card, "button_list": card["button_list"] * 3}) is not None
    assert card_error({**card, "main_title": {"title": "标" * 37}}) is not None
    assert card_error({**card, "button_list": [{"type": 0, "text": "签收", "key": "a"}] * 2}) is not None

    # [wecom] cards = false: today's text
    plain = Application(make_config(db_url, api_base=fake.base, wecom={"cards": False}), clock=clock)
    plain.handle_message("admin", "督办 图书馆 3月28日 报送方案", msg_id="9002")
    plain.handle_message("sun", "延期 D2 4月10日 等待批复", msg_id="9003")
    with Session(plain.engine) as s:
        rows = [r for r in s.exec(select(Outbox)) if "D2" in r.payload]
    assert rows and {r.msgtype for r in rows} <= {"text", "markdown"}
    plain.engine.dispose()


def test_console_mode_prints_the_card_with_the_equivalent_commands(tmp_path, clock):
    app = Application(make_config(f"sqlite:///{tmp_path / 'c.db'}"), clock=clock)
    app.migrate()
    seed(app)
    app.handle_message("admin", "督办 图书馆 3月28日 报送方案", msg_id="1")
    app.handle_message("sun", "延期 D1 4月10日 等待批复", msg_id="2")
    printed: list[str] = []
    OutboxWorker(app.engine, ConsoleTransport(printed.append), clock, app.config.sender).run_once()
    (card,) = [p for p in printed if p.startswith("[卡片 → app:admin]")]
    assert "【督办单 D1 · 申请延期】" in card and "[同意延期] [不同意]" in card
    assert "同意延期 D1" in card and "不同意延期 D1 意见" in card  # the commands that do the same
    app.handle_message("admin", "同意延期 D1", msg_id="3")
    OutboxWorker(app.engine, ConsoleTransport(printed.append), clock, app.config.sender).run_once()
    assert "[卡片更新 → app:admin] 已同意延期至 04-10 · 王管理 03-20 10:00" in printed
    app.engine.dispose()


def test_an_appeal_comes_as_a_card_whose_tap_accepts_it(bot, clock):
    app = bot.app
    app.config.broadcast.chat_id = "chat-all"
    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run_at("monthly_ranking", clock.now())
    clock.set(at(2026, 4, 1, 11))
    bot.say("wang", "申诉 T4 已于3月完成")
    card = bot.card("admin", "排名申诉")
    assert bot.tap("admin", card, "采纳").startswith("已采纳 · 王管理")
    with Session(app.engine) as s:
        (appeal,) = s.exec(select(Appeal)).all()
    assert (appeal.decision, appeal.decided_by) == ("采纳", "admin")  # as `采纳 信息工程系` typed


def test_words_that_do_not_fit_the_command_are_refused_once_with_its_form(bot, clock):
    bot.say("admin", "督办 图书馆 3月28日 报送方案")
    assert bot.tap("sun", bot.card("sun", "督办单 D1"), "申请延期") is None
    assert "日期" in bot.say("sun", "下个月 等待批复")  # no date: refused with the forms that work
    assert item(bot.app, "D1").ask_deadline is None
    assert "待管理员审批" in bot.say("sun", "延期 D1 4月10日 等待批复")  # typed in full, as the refusal shows
    assert str(item(bot.app, "D1").ask_deadline) == "2026-04-10"


def test_a_ranking_published_when_its_window_ends_shows_on_the_preview_cards(bot, clock):
    app = bot.app
    app.config.broadcast.chat_id = "chat-all"
    clock.set(at(2026, 4, 1, 10))
    q = JobQueue(app)
    q.run_at("monthly_ranking", clock.now())
    preview = bot.card("admin", "2026-03 排名预览")
    clock.set(at(2026, 4, 2, 10, 5))
    assert q.publish_due() == ["2026-03"]
    bot.deliver()
    assert sorted(bot.fake.card_updates()) == [("user:admin", "已发布 · 04-02 10:05"), ("user:admin2", "已发布 · 04-02 10:05")]
    assert bot.tap("admin", preview, "暂缓") == "已发布 · 04-02 10:05"  # nothing asked: it is out


def test_a_card_whose_first_send_was_taken_is_delivered_not_failed(bot, clock):
    bot.fake.fail("message/send", errcode=42014)  # WeCom took it before, and its answer was lost
    bot.say("admin", "督办 图书馆 3月28日 报送方案")
    bot.deliver()  # nothing failed: the card is there
    assert bot.fake.cards("sun") == []
    with Session(bot.app.engine) as s:
        (card,) = s.exec(select(DecisionCard)).all()
    assert (card.userid, card.response_code) == ("sun", "")


def test_the_publish_button_publishes_once_as_the_typed_command(bot, clock):
    app = bot.app
    app.config.broadcast.chat_id = "chat-all"
    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run_at("monthly_ranking", clock.now())
    clock.set(at(2026, 4, 1, 11))
    assert bot.tap("admin", bot.card("admin", "2026-03 排名预览"), "发布") == "已发布 · 王管理 04-01 11:00"
    with Session(app.engine) as s:
        release = s.exec(select(RankingRelease)).one()
        out = [r for r in s.exec(select(Outbox)) if r.target == "chat-all"]
    assert (release.status, release.published_at) == ("published", at(2026, 4, 1, 11))
    assert sorted(r.msgtype for r in out) == ["image", "markdown"] and "2026-03" in json.loads(out[0].payload)["content"]
    bot.say("admin", "发布 2026-03")
    with Session(app.engine) as s:
        assert len([r for r in s.exec(select(Outbox)) if r.target == "chat-all"]) == 2  # publishing twice sends once
    bot.deliver()
    assert ("user:admin2", "已发布 · 王管理 04-01 11:00") in bot.fake.card_updates()
