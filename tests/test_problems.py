"""Problems close with evidence and review (issue 15, point 2): 问题 lists, 问题 <描述> 措施=… 时限=…,
销号 P3 <说明> by the 负责人 asks, an admin 确认销号 or 退回. On SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
import json

from sqlmodel import Session, select

from conftest import at
from db.models import Outbox, Problem, ProblemProgress

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"pb{next(_ids)}")


def problem(app, code: str = "P1") -> Problem:
    with Session(app.engine) as s:
        return s.exec(select(Problem).where(Problem.code == code)).one()


def notes(app) -> list[tuple[str, str, str]]:
    with Session(app.engine) as s:
        return [(n.kind, n.userid, n.text) for n in s.exec(select(ProblemProgress).order_by(ProblemProgress.id))]


def pushes(app, target: str) -> list[str]:
    with Session(app.engine) as s:
        return [json.loads(r.payload)["content"] for r in s.exec(select(Outbox).order_by(Outbox.id))
                if r.target == target]


def test_a_problem_with_measure_and_deadline_and_the_list(app, clock):
    reply = say(app, "li", "问题 实训室消防通道堆放杂物 措施=清理通道，张贴警示标识 时限：4月30日")
    assert "P1" in reply and "清理通道，张贴警示标识" in reply and "2026-04-30" in reply
    p = problem(app)
    assert (p.description, p.measure, p.deadline.isoformat()) == ("实训室消防通道堆放杂物", "清理通道，张贴警示标识",
                                                                  "2026-04-30")
    say(app, "zhao", "问题 机房漏水")  # another unit's
    say(app, "li", "整改 P1 已清理一半")
    listing = say(app, "zhang", "问题")
    assert "机电工程系 问题清单（1 项）" in listing and "P1" in listing and "P2" not in listing
    assert "整改中" in listing and "时限 04-30" in listing and "已清理一半" in listing
    clock.set(at(2026, 5, 2, 9))
    assert "（已超期）" in say(app, "li", "问题")
    admin = say(app, "admin", "问题")
    assert "P1" in admin and "P2" in admin and "信息工程系" in admin
    assert "日期“下月”无效" in say(app, "li", "问题 新问题 时限=下月")


def test_closing_is_asked_with_evidence_then_confirmed_or_sent_back(app, clock):
    say(app, "li", "问题 实训室消防通道堆放杂物")
    assert "“销号”仅限负责人、管理员使用" in say(app, "li", "销号 P1 已清理")  # a member may not ask
    assert "待管理员审核" in say(app, "zhang", "销号 P1 通道已清理，附现场照片")
    assert problem(app).status == "待销号"
    (asked,) = pushes(app, "admin")
    assert "通道已清理，附现场照片" in asked and "确认销号 P1" in asked
    assert "仅限管理员" in say(app, "zhang", "确认销号 P1")
    assert "仅限管理员" in say(app, "zhang", "退回 P1 自己退回")

    clock.set(at(2026, 3, 21, 9))
    assert "已退回" in say(app, "admin", "退回 P1 照片看不清")
    assert problem(app).status == "整改中"
    (back,) = pushes(app, "zhang")
    assert "照片看不清" in back and "销号 P1" in back
    assert "没有待审核的销号申请" in say(app, "admin", "确认销号 P1")

    say(app, "zhang", "销号 P1 已重新拍照")
    assert "已确认销号" in say(app, "admin", "确认销号 P1 同意")
    p = problem(app)
    assert p.status == "已销号" and p.closed_at == clock.now()
    assert [k for k, _, _ in notes(app)] == ["申请销号", "退回", "申请销号", "确认销号"]
    assert "已销号，无需再操作" in say(app, "li", "整改 P1 还想补充")
    assert "没有找到问题" in say(app, "admin", "退回 P9 意见")


def test_a_problem_past_its_deadline_is_shown_in_the_units_prompt(app, clock):
    say(app, "li", "问题 实训室消防通道堆放杂物 时限=3月25日")
    say(app, "li", "问题 另一个问题 时限=5月30日")
    say(app, "admin", "提醒 机电工程系")
    assert not any("整改超期" in c for c in pushes(app, "chat-jd"))
    clock.set(at(2026, 3, 26, 9))
    say(app, "admin", "提醒 机电工程系")
    (prompt,) = [c for c in pushes(app, "chat-jd") if "整改超期" in c]
    assert "P1" in prompt and "整改时限 2026-03-25" in prompt and "P2" not in prompt
