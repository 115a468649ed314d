"""How a push tells people to answer (issue 15 point 10, issue 16): a unit whose group is bound to the
smart robot reads "在群里 @争先督办 或私聊发送"; a group that is not bound reaches nobody, so it reads
"私聊争先督办发送"; a message that comes 1:1 (a unit without a group: its 负责人) is answered where it
is ("回复"). Rendered through the jobs and handlers that send them, on SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
import json

import pytest
from sqlmodel import Session, select

from conftest import at
from db.models import Outbox, Unit
from jobs import JobQueue

_ids = itertools.count(1)

BOUND = "在群里 @争先督办 或私聊发送"
PRIVATE = "私聊争先督办发送"


def say(app, userid: str, text: str, chat: str = "") -> str:
    (reply,) = app.handle_batch([(userid, text, f"ah{next(_ids)}", chat)])
    if isinstance(reply, Exception):
        raise reply
    return reply


def pushed(app, like: str) -> dict[str, str]:
    """target -> content of the outbox rows whose key contains `like`."""
    with Session(app.engine) as s:
        return {r.target: json.loads(r.payload)["content"] for r in s.exec(select(Outbox).order_by(Outbox.id))
                if like in r.key}


@pytest.fixture
def units(app):
    """机电工程系: its group (chat-jd) bound to the smart robot by an admin's 绑定 there; 信息工程系: a
    group robot (key-xx), not bound; 图书馆: no group at all, so its 负责人 孙七 is told 1:1."""
    assert "已绑定机电工程系" in say(app, "admin", "绑定 机电工程系", chat="wrkJdGroup")
    with Session(app.engine) as s:
        lib = s.exec(select(Unit).where(Unit.name == "图书馆")).one()
        lib.chat_id = ""
        s.add(lib)
        s.commit()
    return app


def assert_three_ways(texts: dict[str, str], form: str) -> None:
    """`form`: the command the unit is asked for, e.g. "签收 D1"."""
    jd, xx, lib = texts["chat-jd"], texts["key-xx"], texts["sun"]
    assert f"{BOUND}：{form}" in jd, jd
    assert f"{PRIVATE}：{form}" in xx and "在群里" not in xx, xx
    assert f"回复：{form}" in lib and "私聊" not in lib and "在群里" not in lib, lib


def test_the_monthly_prompt_says_how_to_answer_where_it_is_read(units, clock):
    app = units
    clock.set(at(2026, 3, 19, 9))
    say(app, "admin", "督办 机电工程系,信息工程系,图书馆 3月28日 报送建设进度")
    clock.set(at(2026, 3, 20, 9))
    JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 9))
    texts = pushed(app, "job:monthly_prompt:2026-03")
    assert set(texts) == {"chat-jd", "key-xx", "sun"}
    jd, xx, lib = texts["chat-jd"], texts["key-xx"], texts["sun"]
    assert f"请{BOUND}：\n> 汇报 任务编号 进度% 内容\n> 反馈 督办编号 办理情况" in jd
    assert f"请{PRIVATE}：\n> 汇报 任务编号 进度% 内容" in xx and "在群里" not in xx
    assert "请回复：\n> 汇报 任务编号 进度% 内容" in lib and "私聊" not in lib


def test_a_supervision_item_its_reminder_and_its_return_say_how_to_answer(units, clock):
    app = units
    say(app, "admin", "督办 机电工程系,信息工程系,图书馆 3月26日 报送建设进度")
    assert_three_ways(pushed(app, "push:admin"), "签收 D1")
    clock.set(at(2026, 3, 27, 8, 30))  # the workday after its deadline: red, to each unit
    JobQueue(app).run("item_watch", at(2026, 3, 27, 8, 30))
    red = pushed(app, "job:item_watch:2026-03-27:D1:red")
    assert_three_ways(red, "反馈 D1 办理情况")
    assert all("已逾期" in text for text in red.values())
    clock.set(at(2026, 3, 27, 10))
    say(app, "li", "反馈 D1 已报送")
    say(app, "admin", "退回 D1 请补充照片")
    returned = {target: text for target, text in pushed(app, "return").items()}
    assert_three_ways(returned, "反馈 D1 办理情况")
    assert "请按意见办理后再次在群里 @争先督办 或私聊发送" in returned["chat-jd"]


def test_a_problem_sent_back_tells_the_leader_how_to_ask_again(units):
    app = units
    for leader, unit in (("zhang", "机电"), ("wang", "信息")):
        say(app, leader, f"问题 {unit}实训室消防通道堆放杂物")
    say(app, "zhang", "销号 P1 已清理")
    say(app, "wang", "销号 P2 已清理")
    say(app, "admin", "退回 P1 请附照片")
    say(app, "admin", "退回 P2 请附照片")
    texts = pushed(app, "problem:returned")
    assert f"整改后请再次{BOUND}：销号 P1" in texts["zhang"]  # 1:1, and the unit's group takes it too
    assert "整改后请再次回复：销号 P2" in texts["wang"] and "在群里" not in texts["wang"]
