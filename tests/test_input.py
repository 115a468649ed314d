"""Input as people type it (issue 15, points 5 and 6): glued percents, several reports in one
message, a left-out task code, Chinese dates and months. On SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
from datetime import date

import pytest
from sqlmodel import Session, func, select

from conftest import at
from db.models import Report, SupervisionItem, Task

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"in{next(_ids)}")


def reports(app) -> list[Report]:
    with Session(app.engine) as s:
        return list(s.exec(select(Report).order_by(Report.id)))


def count(app, model) -> int:
    with Session(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


@pytest.mark.parametrize("text", ["汇报 T1 30%完成方案", "汇报T1 30％完成方案", "汇报 t1，30%完成方案"])
def test_text_right_after_the_percent_is_a_report(app, text):
    reply = say(app, "li", text)
    assert "已收到 T1" in reply and "30%" in reply and "格式不完整" not in reply
    (rep,) = reports(app)
    assert (rep.percent, rep.text) == (30, "完成方案")


def test_two_reports_in_one_message_are_two_reports_each_answered(app):
    reply = say(app, "zhang", "汇报 T1 30% 完成方案 汇报 T2 20% 开展两次学习")
    assert "已收到 T1" in reply and "已收到 T2" in reply
    assert "还有" not in reply and "本月任务已全部汇报" in reply  # the count is after the whole message
    assert [(r.percent, r.text) for r in reports(app)] == [(30, "完成方案"), (20, "开展两次学习")]
    # on separate lines, the percent glued to the text, too
    say(app, "zhang", "汇报 T1 40%方案定稿\n汇报 T2 50%第三次学习")
    assert [(r.percent, r.text) for r in reports(app)][2:] == [(40, "方案定稿"), (50, "第三次学习")]


def test_a_wrong_second_report_refuses_the_whole_message(app):
    reply = say(app, "zhang", "汇报 T1 30% 完成方案 汇报 T3 20% 不是本单位的")
    assert "不属于您所在单位" in reply
    assert reports(app) == []


def test_a_report_that_mentions_reporting_stays_one_report(app):
    say(app, "li", "汇报 T1 30% 已向分管领导汇报进展")
    (rep,) = reports(app)
    assert rep.text == "已向分管领导汇报进展"


def test_a_cadre_with_one_open_task_may_leave_out_its_code(app):
    reply = say(app, "li", "汇报 30% 完成方案")  # li's only task is T1
    assert "已收到 T1" in reply
    assert "已收到 T1" in say(app, "li", "汇报 35%方案细化")
    assert [(r.percent, r.text) for r in reports(app)] == [(30, "完成方案"), (35, "方案细化")]
    # zhang owns T2 only, but once it is finished he has none open: the code must be named
    say(app, "zhang", "汇报 T2 100% 全部完成")
    reply = say(app, "zhang", "汇报 50% 进展")
    assert "请写明任务编号" in reply and "正确格式：汇报" in reply
    assert len(reports(app)) == 3


def test_a_cadre_with_several_open_tasks_is_asked_for_the_code(app):
    say(app, "admin", "新增任务 机电工程系 实干争效 第二项任务 责任人=li 期限=2026-12-31")
    reply = say(app, "li", "汇报 30% 完成方案")
    assert "2 项在办任务（T1、T6）" in reply and "请写明任务编号" in reply
    assert reports(app) == []


def test_unknown_input_gets_an_office_tone_answer(app):
    reply = say(app, "li", "你好呀")
    assert "无法识别该指令" in reply and "没有看懂" not in reply


@pytest.mark.parametrize("typed, expected", [
    ("2026-12-10", date(2026, 12, 10)),
    ("2026/12/10", date(2026, 12, 10)),
    ("12月10日", date(2026, 12, 10)),
    ("12月10号", date(2026, 12, 10)),
    ("2026年12月10日", date(2026, 12, 10)),
    ("２０２６年１２月１０日", date(2026, 12, 10)),
    ("12.10", date(2026, 12, 10)),
])
def test_chinese_dates_wherever_a_date_is_typed(app, typed, expected):
    assert "D1" in say(app, "admin", f"督办 机电工程系 {typed} 报送材料")
    with Session(app.engine) as s:
        assert s.exec(select(SupervisionItem)).one().deadline == expected
    assert "T6" in say(app, "admin", f"新增任务 机电工程系 敢为争先 新任务 责任人=li 期限={typed}")
    with Session(app.engine) as s:
        assert s.exec(select(Task).where(Task.code == "T6")).one().due_date == expected


@pytest.mark.parametrize("typed", ["13月10日", "2月30日", "12..10", "下周五", "1999年12月10日", "12月"])
def test_a_bad_date_says_which_forms_work(app, typed):
    reply = say(app, "admin", f"督办 机电工程系 {typed} 报送材料")
    assert f"日期“{typed}”无效" in reply
    assert "2026年3月28日" in reply and "3月28日" in reply and "3.28" in reply
    assert count(app, SupervisionItem) == 0


def test_chinese_months(app):
    say(app, "li", "汇报 T1 30% 方案")
    for typed in ("2026年3月", "3月", "2026-03", "2026.3"):
        reply = say(app, "admin", f"排名 {typed}")
        assert "2026-03" in reply and "无效" not in reply, typed
    assert "2026-03" in say(app, "admin", "未报 3月")
    reply = say(app, "admin", "排名 13月")
    assert "月份“13月”无效" in reply and "2026年3月" in reply
