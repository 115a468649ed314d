"""Replies as people read them (issue 22 points 5, 6, 7, 9; issue 24 "Reaching the person who must
act" and "Replies and pushes"): input as people write it, where pushes went, the public ranking,
配合单位, wording. On SQLite and PostgreSQL."""
from __future__ import annotations

import itertools

from sqlmodel import Session, select

from conftest import at, content, outbox
from db.models import Problem, Report, Task

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"rp{next(_ids)}")


def problems(app) -> list[Problem]:
    with Session(app.engine) as s:
        return list(s.exec(select(Problem).order_by(Problem.id)))


def reports(app) -> list[Report]:
    with Session(app.engine) as s:
        return list(s.exec(select(Report).order_by(Report.id)))


# ---------------------------------------------------------------- 22.5 input as people write it


def test_a_problem_written_with_full_width_colons_and_commas_has_its_parts(app):
    reply = say(app, "li", "问题 实训楼三楼配电箱未上锁，措施：加装门锁并张贴警示，时限：11月20号")
    (p,) = problems(app)
    assert (p.description, p.measure, str(p.deadline)) == ("实训楼三楼配电箱未上锁", "加装门锁并张贴警示", "2026-11-20")
    assert "整改措施：加装门锁并张贴警示" in reply and "2026-11-20" in reply
    say(app, "li", "问题 机房漏水；措施=更换水管；时限=4月30日")
    assert (problems(app)[1].description, problems(app)[1].measure) == ("机房漏水", "更换水管")


def test_a_part_given_but_not_understood_is_named_and_nothing_is_stored(app):
    reply = say(app, "li", "问题 配电箱未上锁，措施：加装门锁，完成时间：11月20号")
    assert "未识别“完成时间”，可用：措施、时限" in reply
    assert problems(app) == []
    reply = say(app, "admin", "新增任务 机电工程系 敢为争先 建成实训中心，责任人：li，完成时间：2026-10-31")
    assert "未识别“完成时间”" in reply and "责任人" in reply and "期限" in reply


def test_a_new_task_written_with_full_width_colons_and_commas(app):
    reply = say(app, "admin", "新增任务 机电工程系 敢为争先 建成智能制造实训中心，责任人：li，期限：2026年10月31日")
    assert "T6" in reply
    with Session(app.engine) as s:
        task = s.exec(select(Task).where(Task.code == "T6")).one()
    assert (task.content, task.owner_userid, str(task.due_date)) == ("建成智能制造实训中心", "li", "2026-10-31")


def test_an_incomplete_command_says_what_is_missing(app):
    assert "格式不完整，缺少：进度、内容" in say(app, "li", "汇报 T1")
    assert "格式不完整，缺少：内容" in say(app, "li", "汇报 T1 30%")
    assert "格式不完整，缺少：任务编号、进度、内容" in say(app, "zhang", "汇报")
    assert "格式不完整，缺少：反馈内容" in say(app, "zhang", "反馈 D1")
    assert reports(app) == []


def test_a_second_report_in_the_month_is_a_new_version_and_says_so(app):
    first = say(app, "li", "汇报 T1 30% 完成方案")
    assert "本月第" not in first
    second = say(app, "li", "汇报 T1 35% 方案细化")
    assert "这是 T1 本月第 2 次汇报" in second and "修改 T1" in second
    assert [r.version for r in reports(app)] == [1, 2]


def test_a_leading_full_width_colon_is_not_kept(app):
    say(app, "li", "问题：配电箱未上锁")
    assert problems(app)[0].description == "配电箱未上锁"
