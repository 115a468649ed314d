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


# ---------------------------------------------------------------- 22.6 replies say where things went;
# issue 24: reaching the person who must act


def no_group(app, name: str) -> None:
    from db.models import Unit
    with Session(app.engine) as s:
        unit = s.exec(select(Unit).where(Unit.name == name)).one()
        unit.chat_id, unit.webhook_key = "", ""
        s.add(unit)
        s.commit()


def march_ranking(app):
    from jobs import JobQueue
    say(app, "li", "汇报 T1 30% 三月进展")
    say(app, "zhao", "汇报 T3 50% 三月进展")
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run_at("monthly_ranking", app.clock.now())


def test_publish_says_it_went_to_the_admins_when_no_broadcast_group_is_configured(app):
    march_ranking(app)
    reply = say(app, "admin", "发布 2026-03")
    assert "未配置通报群，已发送给管理员（1人）" in reply and "通报群。" not in reply
    assert [r.target for r in outbox(app, ":ranking:")] == ["admin"]


def test_publish_to_the_broadcast_group_says_so(app):
    app.config.broadcast.chat_id = "chat-all"
    march_ranking(app)
    assert "排名已公布到通报群。" in say(app, "admin", "发布 2026-03")


def test_a_unit_without_a_group_each_owner_gets_their_own_line_without_an_at(app):
    from jobs import JobQueue
    no_group(app, "机电工程系")
    JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 9))
    rows = {r.target: content(r) for r in outbox(app, "job:monthly_prompt:2026-03")}
    assert "zhang" in rows and "li" in rows  # the 负责人 the whole prompt, 李四 his own line
    assert "@" not in rows["zhang"] and "@" not in rows["li"]
    assert "T1" in rows["li"] and "T2" not in rows["li"] and "李四，您名下的待办" in rows["li"]
    assert "T1" in rows["zhang"] and "T2" in rows["zhang"]


def test_escalation_names_where_each_units_prompt_went(app):
    from jobs import JobQueue
    no_group(app, "机电工程系")
    app.clock.set(at(2026, 3, 25, 17))
    JobQueue(app).run("escalation", at(2026, 3, 25, 17))
    rows = outbox(app, "job:escalation:2026-03")
    (admin,) = [content(r) for r in rows if r.target == "admin"]
    assert "已向上述单位群" not in admin
    assert "再次催报：单独发送给 张三、李四" in admin and "再次催报：单位群（信息工程系）" in admin
    assert {r.target for r in rows} >= {"zhang", "li", "key-xx"}
    assert all("@" not in content(r) for r in rows if r.channel == "app")


def test_remind_and_supervision_replies_name_where_each_push_went(app):
    no_group(app, "图书馆")
    reply = say(app, "admin", "提醒")
    assert "机电工程系：单位群（机电工程系）" in reply and "图书馆：单独发送给 孙七" in reply
    reply = say(app, "admin", "督办 机电工程系,图书馆 3月28日 报送材料")
    assert "· 机电工程系：单位群（机电工程系）" in reply and "· 图书馆：单独发送给 孙七" in reply
    (push,) = [r for r in outbox(app, "D1") if r.target == "sun"]
    assert "@" not in content(push)  # 1:1 to 孙七: no @孙七
    say(app, "zhang", "反馈 D1 已报送")
    reply = say(app, "admin", "办结 D1")
    assert "已通知 机电工程系：单位群（机电工程系）" in reply and "已通知 图书馆：单独发送给 孙七" in reply


def test_replies_to_steps_that_tell_someone_name_whom(app):
    say(app, "admin", "督办 机电工程系 3月28日 报送材料")
    assert "已通知：单独发送给 王管理" in say(app, "zhang", "反馈 D1 已报送")
    say(app, "li", "问题 配电箱未上锁")
    assert "已通知：单独发送给 王管理" in say(app, "zhang", "销号 P1 已加锁")
    assert "已通知：单独发送给 张三" in say(app, "admin", "确认销号 P1")
