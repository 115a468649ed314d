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


def rows(app, model) -> list:
    with Session(app.engine) as s:
        return list(s.exec(select(model).order_by(model.id)))


def problems(app) -> list[Problem]:
    return rows(app, Problem)


def reports(app) -> list[Report]:
    return rows(app, Report)


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
    say(app, "li", "问题 实验室排班负责人：未落实")  # what opens the description is the description
    assert problems(app)[0].description == "实验室排班负责人：未落实"
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


# ---------------------------------------------------------------- 22.7 the ranking is public


def test_anyone_may_see_a_published_ranking(app):
    march_ranking(app)
    before = say(app, "li", "排名 2026-03")
    assert "尚未公布" in before and "仅限" not in before and "机电工程系 " not in before
    say(app, "admin", "发布 2026-03")
    for userid in ("li", "zhang", "sun"):
        shown = say(app, userid, "排名 2026-03")
        assert "仅限" not in shown and "1. " in shown and "信息工程系" in shown and "图书馆" in shown, userid
    assert "2026-03" in say(app, "li", "排名")  # a member's 排名: the latest published month


def test_during_review_a_leader_sees_their_units_preview_line(app):
    march_ranking(app)
    shown = say(app, "zhang", "排名")
    assert "机电工程系：2026-03 排名预览（未公布）" in shown and "第 1 名" in shown
    assert "信息工程系" not in shown


def test_an_admins_ranking_of_the_month_in_review_is_labelled(app):
    march_ranking(app)
    shown = say(app, "admin", "排名 2026-03")
    assert "预览中，未公布" in shown and "信息工程系" in shown


def test_a_unit_not_ranked_is_not_invited_to_appeal(app):
    from db.models import Member, Unit
    with Session(app.engine) as s:
        office = s.exec(select(Unit).where(Unit.name == "党政办公室")).one()
        s.add(Member(userid="chen", name="陈八", unit_id=office.id, role="负责人"))
        office.leader_userid = "chen"
        s.add(office)
        s.commit()
    march_ranking(app)
    (line,) = [content(r) for r in outbox(app, ":unit:") if r.target == "chen"]
    assert "不参评" in line and "申诉" not in line
    (ranked,) = [content(r) for r in outbox(app, ":unit:") if r.target == "zhang"]
    assert "申诉 理由" in ranked


# ---------------------------------------------------------------- issue 24: replies and pushes


def help_names(app, userid: str) -> list[str]:
    return [line[2:].split()[0] for line in say(app, userid, "帮助").splitlines() if line.startswith("· ")]


def test_help_lists_each_roles_most_used_commands_first(app):
    from conftest import add_overseer
    add_overseer(app)
    assert help_names(app, "vp")[:3] == ["状态", "未报", "排名"]
    admin = help_names(app, "admin")
    assert admin[:3] == ["状态", "未报", "排名"] and admin.index("确认销号") > admin.index("发布")
    assert help_names(app, "li")[0] == "汇报" and help_names(app, "zhang")[:2] == ["汇报", "状态"]


def test_examples_use_the_askers_own_codes_and_real_unit_names(app):
    from db.models import Unit
    with Session(app.engine) as s:
        jd = s.exec(select(Unit).where(Unit.name == "机电工程系")).one()
        jd.name = "机电学院"
        s.add(jd)
        s.commit()
    assert "例：汇报 T1 " in say(app, "li", "帮助 汇报")
    assert "例：汇报 T3 " in say(app, "zhao", "汇报 T3")  # the format error's example, too
    reply = say(app, "admin", "状态 机电工程系")
    assert "机电学院" in reply.split("例：")[-1] and "机电工程系" not in reply.split("例：")[-1]


def test_the_right_form_is_shown_for_format_errors_only(app):
    say(app, "admin", "督办 机电工程系 3月28日 报送材料")
    assert "正确格式" not in say(app, "zhang", "签收 D1 ") + say(app, "zhang", "签收 D1")  # already signed
    assert "正确格式" not in say(app, "li", "任务 T3")  # not theirs
    assert "正确格式：汇报" in say(app, "li", "汇报 T1 abc 内容")
    say(app, "zhang", "亮点 实训中心获评省级示范 入选省级基地")
    say(app, "admin", "选用 L1")
    again = say(app, "admin", "选用 L1")
    assert "无需重复" in again and "正确格式" not in again
    refused = say(app, "li", "督办 D9")
    assert "没有找到督办单" in refused and "<牵头单位>" not in refused
    refused = say(app, "li", "督办 机电工程系 3月28日 报送材料")
    assert "仅限管理员" in refused and "<牵头单位>" not in refused


def test_a_new_tasks_owner_may_be_named_when_the_name_is_unique(app):
    reply = say(app, "admin", "新增任务 机电工程系 敢为争先 建成实训中心 责任人=李四 期限=2026-10-31")
    assert "T6" in reply and "不在人员名单中" not in reply
    with Session(app.engine) as s:
        assert s.exec(select(Task).where(Task.code == "T6")).one().owner_userid == "li"
    from db.models import Member, Unit
    with Session(app.engine) as s:
        lib = s.exec(select(Unit).where(Unit.name == "图书馆")).one()
        s.add(Member(userid="li2", name="李四", unit_id=lib.id, role="成员"))
        s.commit()
    reply = say(app, "admin", "新增任务 机电工程系 敢为争先 另一项 责任人=李四 期限=2026-10-31")
    assert "2 位“李四”" in reply and "账号 li，机电工程系" in reply and "账号 li2，图书馆" in reply
    assert "责任人=li" in reply
    assert "按账号和姓名都没有找到" in say(app, "admin", "新增任务 机电工程系 敢为争先 x 责任人=马军 期限=2026-10-31")


# ---------------------------------------------------------------- 22.9 配合单位


def item(app, code: str = "D1"):
    from db.models import SupervisionItem
    with Session(app.engine) as s:
        return s.exec(select(SupervisionItem).where(SupervisionItem.code == code)).one()


def test_a_partner_unit_signs_and_answers_its_own_part(app):
    say(app, "admin", "督办 机电工程系,图书馆 3月28日 报送开放时间方案")
    assert "已签收督办单 D1" in say(app, "zhang", "签收 D1")
    reply = say(app, "sun", "签收 D1")
    assert "图书馆（配合单位）已签收督办单 D1" in reply and "无需再签收" not in reply and "正确格式" not in reply
    again = say(app, "sun", "签收 D1")
    assert "图书馆已签收过督办单 D1" in again and "正确格式" not in again
    reply = say(app, "sun", "反馈 D1 已提供馆内开放时间数据")
    assert "图书馆（配合单位）" in reply and "牵头单位" in reply
    assert item(app).status == "签收"  # the 牵头单位 has not answered: nothing to 办结 yet
    assert "还没有待审核的反馈" in say(app, "admin", "办结 D1")
    app.clock.set(at(2026, 3, 21, 9))
    say(app, "zhang", "反馈 D1 方案已报送")
    app.clock.set(at(2026, 3, 22, 9))
    say(app, "sun", "反馈 D1 补充一点数据")
    say(app, "admin", "办结 D1")
    assert item(app).answered_at == at(2026, 3, 21, 9)  # the 牵头单位's answer counts
    timeline = say(app, "admin", "督办 D1")
    assert "签收 张三（机电工程系）" in timeline and "签收 孙七（图书馆）" in timeline
    assert "反馈 孙七（图书馆）：已提供馆内开放时间数据" in timeline


def test_a_partner_that_answered_is_not_prompted_for_it_again(app):
    from jobs import JobQueue
    say(app, "admin", "督办 机电工程系,图书馆 3月28日 报送开放时间方案")
    say(app, "sun", "反馈 D1 已提供数据")
    JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 9))
    rows = {r.target: content(r) for r in outbox(app, "job:monthly_prompt:2026-03")}
    assert "D1" in rows["chat-jd"] and "D1" not in rows.get("chat-lib", "")
    app.clock.set(at(2026, 3, 30, 9))  # the workday after the deadline: the item turns red
    JobQueue(app).run("item_watch", at(2026, 3, 30, 9))
    assert {r.target for r in outbox(app, "job:item_watch") if ":red:" in r.key} == {"chat-jd"}


def test_previews_and_status_list_lead_and_partner_items_apart(app):
    say(app, "admin", "督办 机电工程系,图书馆 3月28日 报送开放时间方案")
    status = say(app, "sun", "状态")
    assert "配合督办单" in status and "D1" in status and "不计入本单位督办得分" in status
    assert "牵头督办单" in say(app, "zhang", "状态")
    say(app, "zhang", "反馈 D1 已报送")
    march_ranking(app)
    (lib,) = [content(r) for r in outbox(app, ":unit:") if r.target == "sun"]
    assert "本月无到期督办单，计满分" not in lib
    assert "计满分\n> 配合督办单 D1：由牵头单位反馈计分，不计入本单位督办得分\n得分" in lib
    (jd,) = [content(r) for r in outbox(app, ":unit:") if r.target == "zhang"]
    assert "牵头督办单 1 件" in jd


def test_the_formula_and_the_comments_heading_start_their_own_lines(app):
    from jobs import JobQueue
    march_ranking(app)
    (xx,) = [content(r) for r in outbox(app, ":unit:") if r.target == "wang"]
    assert "计满分\n> 逾期未完成任务 1 项，每项扣 5 分\n得分 = 汇报率×40" in xx
    app.config.broadcast.chat_id = "chat-all"
    app.clock.set(at(2026, 6, 10, 9))
    say(app, "admin", "点评 机电工程系 上半年推进有力")
    app.clock.set(at(2026, 6, 30, 16))
    JobQueue(app).run("midyear_review", at(2026, 6, 30, 16))
    (text,) = [content(r) for r in outbox(app, "midyear:broadcast")]
    assert "\n\n**点评与自评**" in text and "党政办公室**" not in text


def test_a_report_on_an_overdue_task_says_it_is_overdue(app):
    reply = say(app, "wang", "汇报 T4 80% 报告修改中")  # T4 was due 2026-03-15
    assert "T4 的期限 2026-03-15 已过" in reply and "逾期" in reply
    assert "已过" not in say(app, "zhao", "汇报 T3 50% 推进中")
    assert "期限" not in say(app, "wang", "汇报 T4 100% 已完成")


def test_a_closed_items_push_shows_its_deadline_without_warning_colour(app):
    say(app, "admin", "督办 机电工程系 3月28日 报送材料")
    (issued,) = [content(r) for r in outbox(app, "D1") if r.msgtype != "template_card"]
    assert '<font color="warning">2026-03-28</font>' in issued
    say(app, "zhang", "反馈 D1 已报送")
    say(app, "admin", "办结 D1")
    (closed,) = [content(r) for r in outbox(app, ":done:")]
    assert "2026-03-28" in closed and "warning" not in closed


def test_an_admins_tasks_with_a_unit_name_lists_that_units_tasks(app):
    shown = say(app, "admin", "任务 信息工程系")
    assert "T3" in shown and "T4" in shown and "T1" not in shown
    assert "T1" in say(app, "admin", "任务 机电")  # a unique part of the name
    assert "没有找到任务" in say(app, "admin", "任务 T99")


def test_a_units_comment_is_seen_by_the_unit_once_its_review_went_out(app):
    from jobs import JobQueue
    app.clock.set(at(2026, 6, 10, 9))
    say(app, "admin", "点评 机电工程系 上半年推进有力")
    say(app, "zhang", "自评 完成实训中心主体建设")
    before = say(app, "zhang", "自评")
    assert "上半年推进有力" not in before and "通报发出后可见" in before and "完成实训中心主体建设" in before
    assert "上半年推进有力" in say(app, "admin", "点评")
    app.clock.set(at(2026, 6, 30, 16))
    JobQueue(app).run("midyear_review", at(2026, 6, 30, 16))
    assert "上半年推进有力" in say(app, "zhang", "自评")


def test_a_leaders_running_ranking_is_headed_as_their_own_units(app):
    assert "本单位名次（截至目前）" in say(app, "zhang", "排名") and "分管单位" not in say(app, "zhang", "排名")
