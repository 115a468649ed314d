"""A 督办 item's life in chat (issue 15, point 1): 下发 to a 牵头 and a 配合 unit, 签收, 反馈, 退回,
办结, 延期 asked / agreed / refused, the timeline, the daily yellow / red reminders and the
admins' overdue line, and scoring by the accepted answer. On SQLite and PostgreSQL."""
from __future__ import annotations

import itertools

from sqlmodel import Session, select

from bot.campaign import digest
from conftest import at, content, outbox
from db.models import ItemEvent, SupervisionItem, Unit
from db.month import Month
from jobs import JobQueue

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"sv{next(_ids)}")


def item(app, code: str = "D1") -> SupervisionItem:
    with Session(app.engine) as s:
        return s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).one()


def events(app) -> list[tuple[str, str, str]]:
    with Session(app.engine) as s:
        return [(e.kind, e.userid, e.text) for e in s.exec(select(ItemEvent).order_by(ItemEvent.id))]


def test_an_item_goes_from_issue_to_done_through_a_return(app, clock):
    reply = say(app, "admin", "督办 机电工程系,信息工程系 3月28日 报送实训基地建设进度")
    assert "D1" in reply and "牵头单位 机电工程系" in reply and "配合单位 信息工程系" in reply
    pushed = {(r.channel, r.target): content(r) for r in outbox(app) if r.msgtype != "template_card"}
    assert set(pushed) == {("appchat", "chat-jd"), ("webhook", "key-xx")}
    assert {r.target for r in outbox(app) if r.msgtype == "template_card"} == {"zhang", "wang"}  # 负责人: 签收 cards
    assert "（牵头）" in pushed["appchat", "chat-jd"] and "签收 D1" in pushed["appchat", "chat-jd"]
    assert "（配合）" in pushed["webhook", "key-xx"] and "<@wang>" in pushed["webhook", "key-xx"]

    assert "已签收督办单 D1" in say(app, "li", "签收 D1")
    assert "已签收" in say(app, "zhang", "签收 D1") and item(app).status == "签收"
    assert "已报管理员审核" in say(app, "li", "反馈 D1 已报送建设进度表")
    assert item(app).status == "已反馈"
    (to_admin,) = [r for r in outbox(app) if r.target == "admin"]
    assert "办结 D1" in content(to_admin) and "已报送建设进度表" in content(to_admin)

    # a member may not close or send back; nothing changes
    assert "仅限管理员" in say(app, "li", "办结 D1")
    assert "仅限管理员" in say(app, "zhang", "退回 D1 自己退回")
    assert item(app).status == "已反馈"

    clock.set(at(2026, 3, 24, 10))
    assert "已退回" in say(app, "admin", "退回 D1 请补充现场照片")
    assert item(app).status == "退回"
    back = [content(r) for r in outbox(app, "return")]
    assert len(back) == 2 and all("请补充现场照片" in c and "反馈 D1" in c for c in back)
    assert "还没有待审核的反馈" in say(app, "admin", "办结 D1")  # nothing new to accept

    clock.set(at(2026, 3, 26, 10))
    say(app, "zhao", "反馈 D1 信息系已配合提供数据")  # a 配合单位 answers, too
    say(app, "li", "反馈 D1 已补充照片")
    clock.set(at(2026, 3, 27, 9))
    assert "已办结（按期答复）" in say(app, "admin", "办结 D1 材料齐全")
    done = item(app)
    assert done.status == "办结" and done.answered_at == at(2026, 3, 26, 10) and done.closed_at == at(2026, 3, 27, 9)
    assert "已办结，无需再操作" in say(app, "li", "反馈 D1 再补一句")
    # the 配合单位's first answer signs for its part
    assert [k for k, _, _ in events(app)] == ["下发", "签收", "反馈", "退回", "签收", "反馈", "反馈", "办结"]

    timeline = say(app, "li", "督办 D1")
    steps = ["下发 王管理", "签收 李四（机电工程系）", "反馈 李四（机电工程系）：已报送建设进度表", "退回 王管理：请补充现场照片",
             "反馈 赵六（信息工程系）：信息系已配合提供数据", "反馈 李四（机电工程系）：已补充照片", "办结 王管理：材料齐全"]
    positions = [timeline.index(step) for step in steps]
    assert positions == sorted(positions), timeline
    assert "03-24 10:00 退回" in timeline and "办结" in timeline.splitlines()[0]
    assert "不是下发给您所在单位" in say(app, "sun", "督办 D1")


def test_the_unit_lists_its_open_items_and_help_shows_the_steps(app):
    say(app, "admin", "督办 机电工程系 3月28日 报送材料甲")
    say(app, "admin", "督办 图书馆 3月28日 报送材料乙")
    mine = say(app, "li", "督办")
    assert "D1" in mine and "D2" not in mine and "未办结督办单（1 项）" in mine
    assert "D1" in say(app, "admin", "督办") and "D2" in say(app, "admin", "督办")
    member_help, admin_help = say(app, "li", "帮助"), say(app, "admin", "帮助")
    assert "签收 D5" in member_help and "延期 D5" in member_help and "督办 D5" in member_help
    assert "办结 D5" not in member_help and "办结 <督办编号>" in admin_help and "延期审批：同意延期、不同意延期" in admin_help
    assert "同意延期 <督办编号>" in say(app, "admin", "帮助 同意延期")


def test_an_extension_is_asked_and_agreed_or_refused(app, clock):
    say(app, "admin", "督办 机电工程系 3月25日 报送材料")
    assert "待管理员审批" in say(app, "zhang", "延期 D1 4月10日 等待上级批复")
    assert item(app).ask_deadline.isoformat() == "2026-04-10"
    assert any("同意延期 D1" in content(r) for r in outbox(app) if r.target == "admin")
    assert "期限 2026-03-25 → 2026-04-10" in say(app, "admin", "同意延期 D1")
    it = item(app)
    assert (it.deadline.isoformat(), it.ask_deadline) == ("2026-04-10", None)
    assert any("延期已同意" in content(r) for r in outbox(app, "ext"))
    assert "没有待审批的延期申请" in say(app, "admin", "同意延期 D1")

    say(app, "zhang", "延期 D1 4月20日 还要等")
    assert "已不同意" in say(app, "admin", "不同意延期 D1 请按期完成")
    it = item(app)
    assert (it.deadline.isoformat(), it.ask_deadline) == ("2026-04-10", None)
    assert any("请按期完成" in content(r) and "未获同意" in content(r) for r in outbox(app, "ext"))
    assert [k for k, _, _ in events(app)] == ["下发", "延期申请", "同意延期", "延期申请", "不同意延期"]


def test_an_extension_asked_after_the_deadline_or_not_later_is_refused(app, clock):
    say(app, "admin", "督办 机电工程系 3月25日 报送材料")
    assert "须晚于当前期限 2026-03-25" in say(app, "zhang", "延期 D1 3月24日 理由")
    clock.set(at(2026, 3, 26, 9))
    reply = say(app, "zhang", "延期 D1 4月10日 来不及了")
    assert "已过，不能再申请延期" in reply
    assert item(app).ask_deadline is None and [k for k, _, _ in events(app)] == ["下发"]
    assert "仅限管理员" in say(app, "li", "同意延期 D1")


def _supervision(app, clock) -> tuple[float, int, int]:
    with Session(app.engine) as s:
        scores = digest.rank(s, app.config, Month(2026, 3), clock.now())
    jd = next(sc for sc in scores if sc.unit.name == "机电工程系")
    return jd.supervision, jd.items, jd.items_on_time


def test_an_item_is_on_time_only_if_its_accepted_answer_came_by_the_deadline(app, clock):
    say(app, "admin", "督办 机电工程系 3月25日 甲")  # answered on time, accepted
    say(app, "admin", "督办 机电工程系 3月25日 乙")  # answered on time, sent back, answered late
    say(app, "admin", "督办 机电工程系 3月25日 丙")  # extended to 3月31日, answered after the first deadline
    say(app, "admin", "督办 机电工程系 3月25日 丁")  # answered on time, never accepted
    say(app, "zhang", "延期 D3 3月31日 等待批复")
    say(app, "admin", "同意延期 D3")
    clock.set(at(2026, 3, 24, 9))
    for code in ("D1", "D2", "D4"):
        say(app, "li", f"反馈 {code} 已办理")
    say(app, "admin", "办结 D1")
    say(app, "admin", "退回 D2 不完整")
    clock.set(at(2026, 3, 27, 9))
    say(app, "li", "反馈 D2 已补全")
    say(app, "li", "反馈 D3 已办理")
    say(app, "admin", "办结 D2")
    say(app, "admin", "办结 D3")
    clock.set(at(2026, 4, 1, 10))
    assert _supervision(app, clock) == (0.5, 4, 2)  # D1 and D3 on time; D2 late; D4 not accepted


def _watch(app, day: int):
    app.clock.set(at(2026, 3, day, 8, 30))
    return JobQueue(app).run("item_watch", at(2026, 3, day, 8, 30))


def test_items_turn_yellow_then_red_and_the_admins_get_a_daily_overdue_line(app, clock):
    say(app, "admin", "督办 机电工程系,图书馆 3月26日 报送材料")  # Thursday
    say(app, "admin", "督办 信息工程系 3月26日 已答复的事项")
    say(app, "wang", "反馈 D2 已办理")
    assert _watch(app, 20).messages == 0  # issued today; six workdays left
    assert _watch(app, 23).messages == 2  # Monday: three workdays left -> yellow, to both units
    yellow = [content(r) for r in outbox(app, "item_watch:2026-03-23")]
    assert all("即将到期" in c and "3 个工作日" in c for c in yellow)
    assert any("@张三" in c for c in yellow) and any("@孙七" in c for c in yellow)
    assert _watch(app, 24).messages == 0  # reminded once
    assert "🟡" in say(app, "li", "督办")
    red_run = _watch(app, 27)  # the workday after the deadline
    red = {r.target: content(r) for r in outbox(app, "item_watch:2026-03-27")}
    assert red_run.messages == 3 and set(red) == {"chat-jd", "chat-lib", "admin"}
    assert "已逾期" in red["chat-jd"] and "@张三" in red["chat-jd"]
    assert "D1 机电工程系" in red["admin"] and "逾期 1 天" in red["admin"] and "D2" not in red["admin"]
    assert "🔴" in say(app, "li", "督办 D1")
    _watch(app, 30)
    monday = {r.target: content(r) for r in outbox(app, "item_watch:2026-03-30")}
    assert set(monday) == {"admin"} and "逾期 4 天" in monday["admin"]
    clock.set(at(2026, 3, 30, 10))
    say(app, "li", "反馈 D1 已办理")
    assert _watch(app, 31).messages == 0  # answered: nothing is overdue for the unit any more


def test_the_monthly_prompt_lists_an_item_for_its_lead_and_its_partner_units(app, clock):
    say(app, "admin", "督办 机电工程系,信息工程系 3月28日 报送实训基地建设进度")
    with app.session() as s:
        dues = {d.unit.name: d for d in digest.unit_dues(s, app.config, Month(2026, 3), clock.now())}
    assert [it.code for it in dues["机电工程系"].items] == ["D1"] == [it.code for it in dues["信息工程系"].items]
    assert dues["图书馆"].items == []
    JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 10, 0))
    prompts = {r.target: content(r) for r in outbox(app, "monthly_prompt")}
    assert "📌 D1" in prompts["chat-jd"] and "本单位配合" not in prompts["chat-jd"]
    assert "📌 D1" in prompts["key-xx"] and "本单位配合" in prompts["key-xx"] and "反馈 督办编号" in prompts["key-xx"]


def test_the_issuer_is_told_which_units_got_the_item_in_their_group_and_which_through_their_leader(app):
    with app.session() as s:
        lib = s.exec(select(Unit).where(Unit.name == "图书馆")).one()
        lib.chat_id = ""
    reply = say(app, "admin", "督办 机电工程系,图书馆 3月28日 报送开放时间方案")
    assert "机电工程系：单位群（机电工程系）" in reply and "图书馆：单独发送给 孙七" in reply
    assert {(r.channel, r.target) for r in outbox(app)} == {("appchat", "chat-jd"), ("app", "sun"), ("app", "zhang")}
    assert [r.target for r in outbox(app) if r.msgtype == "template_card"] == ["sun", "zhang"]
