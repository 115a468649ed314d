"""Chat commands driven through the Application (no network), on SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
import json

import pytest
from sqlmodel import Session, func, select

from conftest import add_units, at
from db.models import ItemEvent, Outbox, Problem, ProblemProgress, Report, SupervisionItem, Task, Unit

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=str(next(_ids)))


def rows(app, model) -> list:
    with Session(app.engine) as s:
        return list(s.exec(select(model).order_by(model.id)))


def n(app, model) -> int:
    with Session(app.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


@pytest.mark.parametrize("text", [
    "汇报 T1 60% 完成主体验收",
    "/汇报 t1 60 完成主体验收",
    "#汇报　T1　60％　完成主体验收",
    "汇报：T1，60%，完成主体验收",
    "汇报T1 60% 完成主体验收",
    "REPORT T1 60% 完成主体验收",
    "  汇报 1 60% 完成主体验收  ",
])
def test_report_understands_phone_ime_forms(app, text):
    reply = say(app, "li", text)
    assert "已收到 T1" in reply and "60%" in reply
    (rep,) = rows(app, Report)
    assert (rep.percent, rep.text, rep.userid, rep.month) == (60, "完成主体验收", "li", "2026-03")


def test_report_content_may_run_over_several_lines(app):
    say(app, "li", "汇报 T1 30% 第一项：方案通过\n第二项：招标完成\n第三项：待进场")
    assert rows(app, Report)[0].text == "第一项：方案通过\n第二项：招标完成\n第三项：待进场"


def test_report_reply_counts_the_units_unreported_tasks(app):
    assert "还有 1 项任务未汇报" in say(app, "li", "汇报 T1 30% 方案通过")
    assert "已全部汇报" in say(app, "zhang", "汇报 T2 50% 完成两次专题学习")


@pytest.mark.parametrize("text, expected", [
    ("汇报 T1", "格式不完整"),
    ("汇报 T1 60%", "格式不完整"),
    ("汇报 T99 60% 内容", "没有找到任务“T99”"),
    ("汇报 T3 60% 内容", "不属于您所在单位"),
    ("汇报 T1 120% 内容", "0～100"),
    ("汇报 T1 六成 内容", "进度“六成”无效"),
    ("汇报 T1 100.9% 内容", "进度“100.9%”无效"),
    ("汇报 T1 59.5% 内容", "进度“59.5%”无效"),
    ("汇报 T" + "9" * 5000 + " 50% 内容", "没有找到任务"),
    ("汇报 T1 50% \u200b\u200c\u2060\ufeff", "格式不完整"),
    ("汇报 T1 50% \u3000 \u200b", "格式不完整"),
])
def test_wrong_report_forms_get_a_clear_reply_and_store_nothing(app, text, expected):
    reply = say(app, "li", text)
    assert expected in reply
    # the right form for a wrong form only (a task not found or not theirs is not one)
    assert ("正确格式：汇报 <任务编号> <进度%> <内容>" in reply) == ("任务" not in expected and "单位" not in expected)
    assert n(app, Report) == 0


def test_amend_makes_a_new_version_and_keeps_history(app, clock):
    say(app, "li", "汇报 T1 40% 初稿")
    reply = say(app, "li", "修改 T1 45% 更正数字")
    assert "40% → 45%" in reply
    first, second = rows(app, Report)
    assert (first.percent, first.version, first.supersedes_id) == (40, 1, None)
    assert (second.percent, second.version, second.supersedes_id) == (45, 2, first.id)
    assert "45%" in say(app, "li", "任务 T1") and "初稿" in say(app, "li", "任务 T1")


def test_amend_without_a_report_this_month_is_refused(app, clock):
    clock.set(at(2026, 3, 31, 23, 59))
    say(app, "li", "汇报 T1 40% 三月")
    clock.set(at(2026, 4, 1, 0, 1))
    assert "本月还没有汇报" in say(app, "li", "修改 T1 45% 四月")
    assert n(app, Report) == 1


def test_a_report_at_2359_beijing_time_on_march_31_is_a_march_report(app, clock):
    clock.set(at(2026, 3, 31, 23, 59))
    say(app, "li", "汇报 T1 40% 月末")
    assert rows(app, Report)[0].month == "2026-03"


def test_tasks_list_shows_progress_due_date_and_reported_state(app):
    say(app, "li", "汇报 T1 30% 方案通过")
    reply = say(app, "li", "任务")
    assert "机电工程系" in reply and "T1" in reply and "T2" in reply and "T3" not in reply
    assert "进度 30%" in reply and "2026-12-31" in reply and "本月已报" in reply and "本月未报" in reply
    assert say(app, "li", "我的任务") == reply == say(app, "li", "tasks")


def test_traffic_lights(app, clock):
    # T4 (信息工程系) was due 03-15 at 0 %: red. T3 unreported: yellow. After a report on plan: green.
    reply = say(app, "admin", "状态 信息工程系")
    assert "🔴 T4" in reply and "🟡 T3" in reply
    say(app, "zhao", "汇报 T3 60% 大厅装修完成")
    assert "🟢 T3" in say(app, "admin", "状态 信息工程系")
    # Two months without a report: red even before the due date.
    clock.set(at(2026, 5, 20, 10))
    assert "🔴 T1" in say(app, "li", "任务")


def test_problem_list_commands(app):
    reply = say(app, "li", "问题 实训室消防通道堆放杂物")
    assert "P1" in reply
    assert "整改中" in say(app, "li", "整改 P1 已清理一半")
    assert "“销号”仅限负责人、管理员使用" in say(app, "li", "销号 P1 清理完了")
    assert rows(app, Problem)[0].status == "整改中"
    assert "格式不完整" in say(app, "zhang", "销号 p1")  # what was done must be said
    assert "待管理员审核" in say(app, "zhang", "销号 p1 通道已清理")
    assert "正在等待管理员审核" in say(app, "zhang", "销号 P1 再申请一次")
    assert "已确认销号" in say(app, "admin", "确认销号 P1")
    assert "已销号，无需再操作" in say(app, "zhang", "销号 P1 通道已清理")
    assert "不属于您所在单位" in say(app, "zhao", "整改 P1 不是我的")
    assert [p.kind for p in rows(app, ProblemProgress)] == ["整改", "申请销号", "确认销号"]
    assert "P1" in say(app, "li", "问题")  # alone: the list


def test_supervision_item_is_pushed_to_the_units_group_and_answered(app, clock):
    reply = say(app, "admin", "督办 机电工程系 2026-03-28 报送实训基地建设进度")
    # the group reads the text; its 负责人 gets the card to sign 1:1
    assert "D1" in reply and "机电工程系：单位群（机电工程系）；单独发送给 张三" in reply
    (item,) = rows(app, SupervisionItem)
    push, card = rows(app, Outbox)  # the group's text, and the card asking its 负责人 to sign (bot/cards.py)
    assert (push.channel, push.target, push.msgtype) == ("appchat", "chat-jd", "markdown")
    assert (card.channel, card.target, card.msgtype) == ("app", "zhang", "template_card")
    content = json.loads(push.payload)["content"]
    assert "D1" in content and "报送实训基地建设进度" in content and "@张三" in content
    assert "在期限 2026-03-28 内" in say(app, "li", "反馈 D1 已报送")
    clock.set(at(2026, 3, 29, 9))
    assert "逾期" in say(app, "zhang", "反馈 D1 补充材料")
    assert "不是下发给您所在单位" in say(app, "zhao", "反馈 D1 我来答")
    assert [e.kind for e in rows(app, ItemEvent)] == ["下发", "签收", "反馈", "反馈"]


def test_supervision_to_a_robot_group_mentions_with_userid_markup(app):
    say(app, "admin", "督办 信息工程系 2026-03-28 报送中期自评报告")
    push, _card = rows(app, Outbox)
    assert push.channel == "webhook" and "<@wang>" in json.loads(push.payload)["content"]


@pytest.mark.parametrize("text, expected", [
    ("督办 不存在的单位 2026-03-28 内容", "没有找到单位"),
    ("督办 机电工程系 2026-02-30 内容", "日期“2026-02-30”无效"),
    ("督办 机电工程系 2026-03-01 内容", "已经过去"),
    ("督办 机电工程系", "格式不完整"),
    ("督办 机电工程系 9999999999-1-1 内容", "日期“9999999999-1-1”无效"),
    ("督办 机电工程系 9999-01-01 内容", "日期“9999-01-01”无效"),
    ("督办 机电工程系 2026-03-28 \u200b", "格式不完整"),
])
def test_wrong_supervision_forms_store_and_push_nothing(app, text, expected):
    reply = say(app, "admin", text)
    assert expected in reply and "正确格式：督办" in reply
    assert n(app, SupervisionItem) == 0 and n(app, Outbox) == 0


@pytest.mark.parametrize("text, expected", [
    ("新增任务 机电工程系 敢为争先 内容 责任人=li 期限=9999999999-01-01", "日期“9999999999-01-01”无效"),
    ("新增任务 机电工程系 敢为争先 内容 责任人=li 期限=2026-10-01 开始=99999999999-1-1", "无效"),
    ("问题 \u200b\u2060 措施=清理通道", "格式不完整"),  # (问题 with nothing at all lists the problems)
])
def test_absurd_dates_and_invisible_content_get_the_format_help(app, text, expected):
    reply = say(app, "admin" if text.startswith("新增") else "li", text)
    assert expected in reply and "正确格式" in reply
    assert n(app, Task) == 5 and n(app, Problem) == 0


@pytest.mark.parametrize("text, who", [("未报", "分管领导、管理员"),
                                       ("督办 机电工程系 2026-03-28 x", "管理员"), ("提醒", "管理员"), ("导出", "管理员"),
                                       ("新增任务 机电工程系 敢为争先 x 责任人=li 期限=2026-10-01", "管理员")])
def test_admin_commands_refuse_others_politely_and_do_nothing(app, text, who):
    reply = say(app, "zhang", text)
    assert f"仅限{who}使用，您（负责人）暂无权限" in reply
    assert n(app, Outbox) == 0 and n(app, SupervisionItem) == 0 and n(app, Task) == 5


def test_help_lists_what_each_role_may_use_with_examples(app):
    member_help = say(app, "li", "帮助")
    admin_help = say(app, "admin", "help")
    assert "汇报 T1 60%" in member_help and "督办 <单位>" not in member_help and "导出" not in member_help
    assert "督办 <牵头单位>" in admin_help and "导出" in admin_help and "其余部分" not in admin_help
    assert "另可用：帮助、汇报、修改" in admin_help  # everyone's commands by name: one message is enough


def test_unknown_command_shows_the_right_form(app):
    reply = say(app, "li", "你好")
    assert "无法识别该指令" in reply and "帮助" in reply


def test_status_unreported_and_ranking_for_admins(app):
    say(app, "li", "汇报 T1 30% a")
    status = say(app, "admin", "状态")
    assert "1/5" in status and "机电工程系 1/2" in status
    unrep = say(app, "admin", "未报")
    assert "信息工程系" in unrep and "T3、T4" in unrep and "赵六" in unrep and "机电工程系：1 项（T2）" in unrep
    ranking = say(app, "admin", "排名 2026-03")
    assert ranking.index("机电工程系") < ranking.index("信息工程系")
    assert "月份“2026-13”无效" in say(app, "admin", "排名 2026-13")


def test_remind_pushes_prompts_now(app):
    reply = say(app, "admin", "提醒")
    assert "3 个单位" in reply  # the office has no tasks and nothing due
    targets = {(r.channel, r.target) for r in rows(app, Outbox)}
    assert targets == {("appchat", "chat-jd"), ("webhook", "key-xx"), ("appchat", "chat-lib")}
    one = say(app, "admin", "提醒 图书馆")
    assert "1 个单位" in one


def test_export_is_sent_back_as_a_file_message(app):
    reply = say(app, "admin", "导出 2026-03")
    assert "争先督办-2026-03.xlsx" in reply
    (row,) = rows(app, Outbox)
    assert (row.channel, row.target, row.msgtype) == ("app", "admin", "file")
    assert json.loads(row.payload)["month"] == "2026-03"


def test_add_task(app):
    reply = say(app, "admin", "新增任务 机电工程系 敢为争先 建成智能制造实训中心二期 责任人=li 期限=2026-10-31")
    assert "T6" in reply and "李四" in reply
    task = rows(app, Task)[-1]
    assert (task.code, task.line, task.owner_userid, str(task.due_date)) == ("T6", "敢为争先", "li", "2026-10-31")
    assert "行动“摸鱼”无效" in say(app, "admin", "新增任务 机电工程系 摸鱼 x 责任人=li 期限=2026-10-31")
    assert "不在人员名单" in say(app, "admin", "新增任务 机电工程系 敢为争先 x 责任人=nobody 期限=2026-10-31")
    assert "格式不完整" in say(app, "admin", "新增任务 机电工程系 敢为争先 只有内容")
    assert n(app, Task) == 6


def test_the_unreported_count_in_replies_agrees_with_the_task_list(app, clock):
    from db.month import Month
    from bot.campaign import scoring as progress
    from db import queries

    # T2 finished in March (not active in April); T1 reported in April; a task starting in May.
    clock.set(at(2026, 3, 12, 9))
    say(app, "zhang", "汇报 T2 100% 学习全部完成")
    say(app, "admin", "新增任务 机电工程系 实干争效 五月启动的任务 责任人=li 期限=2026-12-31 开始=2026-05-01")
    clock.set(at(2026, 4, 8, 9))
    assert "本月任务已全部汇报" in say(app, "li", "汇报 T1 40% 四月进展")
    for month in (Month(2026, 3), Month(2026, 4), Month(2026, 5)):
        clock.set(at(month.year, month.month, 28, 9))
        with Session(app.engine) as s:
            unit = queries.find_unit(s, "机电工程系")
            snaps = progress.snapshots(s, month, clock.now(), app.tz, 25, unit_id=unit.id)
            expected = sum(x.active and not x.reported_in_month for x in snaps)
            assert queries.unreported_count(s, unit.id, month) == expected
    # Every 汇报's reply counts what the task's unit has left after it, as the task list does
    # (an admin reporting on another unit's task is told that unit's count, under its name).
    clock.set(at(2026, 5, 6, 9))
    for who, code in (("li", "T1"), ("li", "T1"), ("admin", "T6"), ("zhang", "T2"), ("li", "T6")):
        reply = say(app, who, f"汇报 {code} 50% 五月进展")
        with Session(app.engine) as s:
            unit = s.get(Unit, queries.get_task(s, code).unit_id)
            snaps = progress.snapshots(s, Month(2026, 5), clock.now(), app.tz, 25, unit_id=unit.id)
        left = sum(x.active and not x.reported_in_month for x in snaps)
        assert (f"{unit.name} 本月还有 {left} 项" in reply) if left else ("本月任务已全部汇报" in reply), (reply, left)


def test_a_reply_too_long_for_one_message_continues_in_order(app):
    add_units(app, 120, "第{:03d}党支部（示例单位名称较长）")
    reply = say(app, "admin", "排名")
    assert len(reply.encode()) <= 2048 and "其余部分随后分条发送" in reply
    parts = [json.loads(r.payload)["content"] for r in rows(app, Outbox)]
    assert all(r.channel == "app" and r.target == "admin" for r in rows(app, Outbox))
    assert all(len(p.encode()) <= 2048 for p in parts)
    lines = [line for text in [reply] + parts for line in text.splitlines() if line[:1].isdigit()]
    assert [int(line.split(".")[0]) for line in lines] == list(range(1, 124))  # every ranked unit, in order
    assert "不参评（本月无在办任务）：党政办公室" in "\n".join([reply] + parts)


FORMULAS = ['=HYPERLINK("http://evil.example/x","点我")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


def _cells(data: bytes) -> list:
    import io

    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    return [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]


def test_exported_workbooks_keep_user_text_as_text_not_formulas(app, clock):
    from bot.excel.export import generate

    with app.session() as s:  # a roster can name a unit anything, too
        s.exec(select(Unit).where(Unit.name == "图书馆")).one().name = "=1+2"
    for i, text in enumerate(FORMULAS):
        assert "已收到" in say(app, "li" if i % 2 else "zhang", f"汇报 T{1 + i % 2} {10 + i}% {text}")
    say(app, "li", f"问题 {FORMULAS[0]}")
    say(app, "admin", f"督办 机电工程系 2026-03-28 {FORMULAS[3]}")
    for spec in ({"kind": "month", "month": "2026-03"}, {"kind": "year", "year": 2026}):
        with Session(app.engine) as s:
            cells = _cells(generate(s, app.config, {**spec, "at": clock.now().isoformat()}))
        assert [c.coordinate for c in cells if c.data_type == "f"] == []
        # and Excel keeps them text when someone edits the cell (the quote prefix, shown as ' )
        assert all(c.quotePrefix for c in cells if isinstance(c.value, str) and c.value.startswith(("=", "+", "@")))
        values = {c.value for c in cells}
        assert "=1+2" in values
        if spec["kind"] == "month":  # reports, the problem and the 督办 item, as stored ("\t=1+1" is trimmed)
            assert {*FORMULAS[:4], "=1+1"} <= values


def test_add_task_refuses_an_owner_from_another_unit(app):
    reply = say(app, "admin", "新增任务 信息工程系 敢为争先 建成实训中心 责任人=li 期限=2026-10-31")
    assert "李四" in reply and "机电工程系" in reply and "信息工程系" in reply
    assert n(app, Task) == 5
    # an admin, too, belongs to a unit: 责任人 must be someone who can report on the task
    assert "党政办公室" in say(app, "admin", "新增任务 信息工程系 敢为争先 x 责任人=admin 期限=2026-10-31")
    assert n(app, Task) == 5


@pytest.mark.parametrize("fields", [
    "责任人＝li 期限：2026-10-31",
    "责任人:li 期限=2026-10-31",
    "责任人： li 期限 ＝ 2026-10-31",
    "期限：２０２６－１０－３１ 责任人＝ｌｉ",
])
def test_add_task_understands_full_width_key_value(app, fields):
    reply = say(app, "admin", f"新增任务 机电工程系 敢为争先 目标：建成实训中心 {fields}")
    assert "T6" in reply, reply
    task = rows(app, Task)[-1]
    assert (task.owner_userid, str(task.due_date), task.content) == ("li", "2026-10-31", "目标：建成实训中心")


def test_a_report_after_the_deadline_day_is_stored_and_says_it_is_late(app, clock):
    clock.set(at(2026, 3, 26, 9))
    reply = say(app, "li", "汇报 T1 40% 迟了一天")
    assert "已收到 T1" in reply and "截止日（3月25日）已过" in reply and "迟报" in reply
    assert n(app, Report) == 1
    clock.set(at(2026, 4, 20, 9))
    assert "迟报" not in say(app, "li", "汇报 T1 50% 按时")


def test_replies_name_the_configured_office(db_url, clock):
    from bot.app import Application
    from conftest import make_config, seed

    app = Application(make_config(db_url, org={"office": "党委办公室"}), clock=clock)
    app.migrate()
    seed(app)
    assert "请联系党委办公室管理员" in say(app, "stranger", "任务")
    app.engine.dispose()
