"""Roles (issue 15, point 4): a 分管领导 looks at their units (状态, 未报, 排名, 任务 <编号>), gets a
monthly line about them and is told when an item of theirs goes red; a 负责人 gets 状态 of their
own unit; 帮助 shows each role its own commands. On SQLite and PostgreSQL."""
from __future__ import annotations

import itertools

import pytest
from sqlmodel import select

from bot.app import Application
from bot.cli import _worker
from bot.clock import FixedClock
from conftest import add_overseer, at, content, make_config, outbox, seed
from db.models import LeaderUnit, Member, Report, Task, Unit
from jobs import JobQueue

_ids = itertools.count(1)
XX_TASKS = ("上线一站式学生服务大厅", "完成双高校中期自评报告")  # 信息工程系's, which vp must never read


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"ro{next(_ids)}")


@pytest.fixture
def app(app):
    add_overseer(app)
    return app


def test_a_leader_in_charge_sees_the_status_of_their_units_only(app):
    say(app, "li", "汇报 T1 30% 完成方案论证")
    status = say(app, "vp", "状态")
    assert "分管单位概况：已汇报 1/3 项" in status and "全校 3 个参评单位" in status
    assert "机电工程系 1/2" in status and "图书馆 0/1" in status
    assert "信息工程系" not in status and "党政办公室" not in status
    detail = say(app, "vp", "状态 机电工程系")
    assert "T1" in detail and "T2" in detail and "完成方案论证" not in detail and "李四" in detail
    assert "T5" in say(app, "vp", "状态 图书馆")  # over 图书馆 as T5's 责任领导
    refused = say(app, "vp", "状态 信息工程系")
    assert "信息工程系不在您的查看范围内（您可查看：" in refused and "机电工程系" in refused and "图书馆" in refused
    assert not any(t in refused for t in XX_TASKS) and "T3" not in refused


def test_a_leader_in_charge_sees_unreported_and_their_places_before_the_ranking_is_published(app, clock):
    say(app, "zhang", "汇报 T2 50% 完成两次专题学习")
    unreported = say(app, "vp", "未报")
    assert "分管单位未汇报（2 个单位）" in unreported and "机电工程系：1 项（T1） 责任人：李四" in unreported
    assert "图书馆：1 项（T5）" in unreported and "信息工程系" not in unreported and "赵六" not in unreported
    running = say(app, "vp", "排名")
    assert "2026-03 分管单位名次（截至目前）" in running and "机电工程系" in running and "图书馆" in running
    assert "信息工程系" not in running and "完整排名公布（公开亮晒）后可查看" in running
    # Once published (公开亮晒) the month's ranking is public: the whole of it.
    app.config.ranking.review_hours = 0
    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    published = say(app, "vp", "排名 2026-03")
    assert "2026-03 单位排名" in published and "信息工程系" in published and "公布）" in published
    assert "分管单位名次" not in published


def test_a_leader_in_charge_reads_the_tasks_of_their_units_but_reports_only_on_their_own(app):
    assert "建成智能制造实训中心" in say(app, "vp", "任务 T1")
    assert "延长自习室开放时间" in say(app, "vp", "任务 t5") and "责任领导：刘副校长" in say(app, "vp", "任务 T5")
    refused = say(app, "vp", "任务 T3")
    assert "任务 T3 不属于您所在单位或分管单位，不能查看" in refused and XX_TASKS[0] not in refused
    assert "任务 T1 不属于您所在单位或分管单位，不能操作" in say(app, "vp", "汇报 T1 90% 代为汇报")
    with app.session() as s:
        assert s.exec(select(Report)).all() == []
    # A 督办 of their unit: its timeline, too; another unit's: no.
    say(app, "admin", "督办 图书馆 3月28日 报送开放时间方案")
    say(app, "admin", "督办 信息工程系 3月28日 报送机房整改方案")
    assert "报送开放时间方案" in say(app, "vp", "督办 D1")
    assert "不是下发给您所在单位的" in say(app, "vp", "督办 D2")
    listed = say(app, "vp", "督办")  # their units' open items, each with its unit
    assert "D1 图书馆" in listed and "D2" not in listed


def test_a_unit_leader_gets_the_status_of_their_own_unit_only(app):
    own = say(app, "zhang", "状态")
    assert "机电工程系 2026-03" in own and "T1" in own and "T2" in own and "T3" not in own
    assert say(app, "zhang", "状态 机电") == own
    refused = say(app, "zhang", "状态 信息工程系")
    assert "信息工程系不在您的查看范围内（您可查看：机电工程系）" in refused and not any(t in refused for t in XX_TASKS)


@pytest.mark.parametrize("text, roles", [("状态", "负责人、分管领导、管理员"), ("状态 信息工程系", "负责人、分管领导、管理员"),
                                         ("未报", "分管领导、管理员")])
def test_a_member_may_not_look_across_units(app, text, roles):
    reply = say(app, "li", text)
    assert f"“{text.split()[0]}”仅限{roles}使用，您（成员）暂无权限" in reply
    assert not any(t in reply for t in XX_TASKS) and "得分" not in reply


def test_a_member_sees_no_ranking_before_it_is_published(app):
    reply = say(app, "li", "排名")
    assert "2026-03 排名尚未公布" in reply and "得分" not in reply and "信息工程系" not in reply


def test_a_leader_in_charge_of_no_unit_is_told_where_units_come_from(app):
    with app.session() as s:
        office = s.exec(select(Unit).where(Unit.name == "党政办公室")).one()
        s.add(Member(userid="vp2", name="陈副书记", unit_id=office.id, role="分管领导"))
    for text in ("状态", "未报", "排名"):
        reply = say(app, "vp2", text)
        assert "您暂无分管单位" in reply and "分管单位”列" in reply and "得分" not in reply
    assert "分管单位：暂无" in say(app, "vp2", "帮助")


def test_a_task_naming_a_leader_in_charge_by_account_puts_its_unit_under_them_at_once(app):
    assert "不属于您所在单位或分管单位" in say(app, "vp", "任务 T3")
    say(app, "admin", "新增任务 信息工程系 实干争效 建成智慧机房 责任人=zhao 责任领导=vp 期限=2026-10-31")
    assert "上线一站式学生服务大厅" in say(app, "vp", "任务 T3")
    assert "信息工程系" in say(app, "vp", "状态")
    # A 责任领导 naming someone who is not a 分管领导 gives them nothing.
    with app.session() as s:
        t3 = s.exec(select(Task).where(Task.code == "T3")).one()
        t3.leader_in_charge = "李四"
        s.add(t3)
    assert "不属于您所在单位，不能查看" in say(app, "li", "任务 T3")


def test_help_shows_each_role_its_own_commands(app):
    def commands(userid: str) -> tuple[str, set[str]]:
        text = say(app, userid, "帮助")
        return text, {line[2:].split()[0] for line in text.splitlines() if line.startswith("· ")}

    (_, member), (leader_text, leader), (overseer_text, overseer), (_, admin) = map(commands, ("li", "zhang", "vp", "admin"))
    everyone = {"帮助", "任务", "汇报", "修改", "问题", "整改", "签收", "反馈", "延期", "督办", "附件", "排名", "撤回"}
    assert member == everyone
    assert leader == everyone | {"销号", "申诉", "状态", "自评", "亮点", "清单"}
    assert "· 清单 — 取回本单位三张清单（Excel），修改后发回，审核通过后生效" in leader_text
    assert "· 状态 — 本单位本月各项任务的进度、灯色和汇报情况" in leader_text
    assert overseer == everyone - {"撤回"} | {"状态", "未报"}
    assert "· 状态 [单位] — 分管单位本月汇报与得分概况" in overseer_text
    assert "写编号可查看分管单位任务的详情" in overseer_text and "例：状态 机电工程系" in overseer_text
    assert "分管单位：图书馆、机电工程系" in overseer_text
    assert {"状态", "未报", "排名", "导出", "办结", "新增任务", "退回"} <= admin
    assert "· 清单审核：清单、通过" in say(app, "admin", "帮助")  # less used ones by name, a family a line
    assert "· 退回 <督办编号、问题编号或单位> <意见>" in say(app, "admin", "帮助") and "分管单位" not in say(app, "admin", "帮助")
    assert "销号" not in admin and "另可用：" in say(app, "admin", "帮助")  # a unit's acts, by name only
    assert "· 处理申诉：采纳、驳回、补录、重算、更正" in say(app, "admin", "帮助") and "作废" in admin
    # Each role's list is one message; a long one leaves out the examples, which 帮助 <命令> gives.
    assert all("其余部分" not in text for text in (leader_text, overseer_text, say(app, "admin", "帮助")))
    assert "例：" not in leader_text and "帮助 汇报" in leader_text
    one = say(app, "zhang", "帮助 汇报")
    assert "汇报 <任务编号> <进度%> <内容>" in one and "例：汇报 T" in one and "销号" not in one
    assert "没有“导出”这个命令，或您暂无权限使用" in say(app, "zhang", "帮助 导出")


def test_the_monthly_prompt_gives_each_leader_in_charge_a_line_per_unit(app):
    say(app, "zhang", "汇报 T2 50% 完成两次专题学习")
    say(app, "sun", "汇报 T5 30% 已延长至晚十点")
    say(app, "admin", "督办 机电工程系 3月28日 报送实训基地进度")
    run = JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 9))
    (row,) = outbox(app, "leader:")
    assert row.key == "job:monthly_prompt:2026-03:leader:vp" and (row.channel, row.target) == ("app", "vp")
    line = content(row)
    assert "刘副校长，您分管单位 2026-03 的督办情况（汇报截止 3月25日）" in line
    assert "· 机电工程系：未报 1 项（T1），督办待反馈 1 件" in line
    assert "· 图书馆：✅ 本月任务均已汇报，无待办" in line and "信息工程系" not in line
    assert run.messages == len(outbox(app, "job:monthly_prompt"))


def test_an_item_that_goes_red_is_told_to_the_leader_in_charge_of_its_units(app, clock):
    say(app, "admin", "督办 机电工程系,信息工程系 3月26日 报送材料")
    say(app, "admin", "督办 图书馆 3月26日 报送开放时间方案")
    say(app, "sun", "反馈 D2 已报送")  # answered: does not go red
    for day in (23, 27):
        clock.set(at(2026, 3, day, 8, 30))
        JobQueue(app).run("item_watch", at(2026, 3, day, 8, 30))
    assert not outbox(app, "item_watch:2026-03-23:D1:yellow:leader")  # yellow: the units only
    rows = [r for r in outbox(app, ":leader:")]
    assert [(r.key, r.target) for r in rows] == [("job:item_watch:2026-03-27:D1:red:leader:vp", "vp")]
    told = content(rows[0])
    assert "督办单 D1 已逾期（您分管的机电工程系）" in told and "报送材料" in told and "督办 D1" in told
    assert "信息工程系" not in told


def test_the_leaders_red_notice_waits_for_the_end_of_quiet_hours(db_url, fake):
    """A catch-up run late in the evening: the 分管领导's notice goes through the outbox and waits
    for [sender] quiet_hours to end, like every push that is not an answer."""
    clock = FixedClock(at(2026, 3, 27, 22, 30))
    app = Application(make_config(db_url, api_base=fake.base, sender={"quiet_hours": "22:00-07:30"}), clock=clock)
    app.migrate()
    seed(app)
    add_overseer(app)
    clock.set(at(2026, 3, 20, 10))
    say(app, "admin", "督办 机电工程系 3月26日 报送材料")
    clock.set(at(2026, 3, 27, 22, 30))
    worker = _worker(app)
    try:
        JobQueue(app).run("item_watch", at(2026, 3, 27, 8, 30))
        worker.run_once()
        key = "job:item_watch:2026-03-27:D1:red:leader:vp"
        assert {r.key: r.status for r in outbox(app, key)} == {key: "pending"}
        assert not [d for d in fake.deliveries("message/send") if d.body.get("touser") == "vp"]
        clock.set(at(2026, 3, 28, 7, 30))
        worker.run_once()
        assert {r.key: r.status for r in outbox(app, key)} == {key: "sent"}
        (sent,) = [d for d in fake.deliveries("message/send") if d.body.get("touser") == "vp"]
        assert "督办单 D1 已逾期" in sent.body["text"]["content"]
    finally:
        worker.stop()
        app.engine.dispose()


def test_a_leader_over_many_units_still_gets_help_in_one_message(app):
    assert "例：" in say(app, "vp", "帮助")  # two units: the examples fit
    with app.session() as s:
        for name in ("马克思主义学院", "经济管理系", "外国语学院", "艺术设计系"):
            unit = Unit(name=name)
            s.add(unit)
            s.flush()
            s.add(LeaderUnit(userid="vp", unit_id=unit.id))
    text = say(app, "vp", "帮助")
    assert "其余部分" not in text and len(text.encode()) <= 2048
    assert "艺术设计系" in text and "例：" not in text and "帮助 汇报" in text
