"""Mistakes undone: 撤回 of one's own 问题 or latest 汇报 (within a day, while nothing happened to it),
an admin's 作废 of a 任务, 问题, 督办 or 亮点 (kept, gone from lists, prompts and the running month's
scores, on the export's 作废 sheet), and a re-import that names what was voided."""
from __future__ import annotations

import io
from datetime import datetime
import itertools

from openpyxl import load_workbook
from sqlmodel import Session, select

from conftest import add_overseer, at, content, outbox
from db.models import Member, Problem, Report, Task
from db.month import Month
from jobs import JobQueue

_ids = itertools.count(1)


def say(app, userid: str, words: str, when) -> str:
    app.clock.set(when)
    return app.handle_message(userid, words, msg_id=f"u{next(_ids)}")


def test_a_person_withdraws_their_own_problem_within_a_day(app):
    t = at(2026, 3, 20, 10)
    say(app, "li", "问题 实训楼三楼配电箱未上锁 措施=加装门锁 时限=3月30日", t)
    assert "P2" in say(app, "li", "问题 实训楼三楼配电箱未上锁 措施=加装门锁并张贴警示 时限=3月30日", t)
    assert "P2 不是您本人登记的，不能撤回" in say(app, "zhang", "撤回 P2", at(2026, 3, 20, 10, 1))
    reply = say(app, "li", "撤回 P2", at(2026, 3, 20, 10, 5))
    assert "已撤回问题 P2：实训楼三楼配电箱未上锁（措施：加装门锁并张贴警示）" in reply
    listing = say(app, "zhang", "问题", at(2026, 3, 20, 10, 6))
    assert "P1" in listing and "P2" not in listing
    assert "P2 已于 2026-03-20 10:05 撤回，不能再操作" in say(app, "li", "整改 P2 已加锁", at(2026, 3, 20, 10, 7))
    say(app, "li", "整改 P1 已加锁", at(2026, 3, 20, 11))
    assert "已有整改或销号记录，不能撤回" in say(app, "li", "撤回 P1", at(2026, 3, 20, 11, 1))
    say(app, "li", "问题 阅览室灯坏", at(2026, 3, 20, 12))
    assert "已超过24小时" in say(app, "li", "撤回 P3", at(2026, 3, 21, 12, 1))
    assert "不能撤回：可撤回本人登记的问题" in say(app, "li", "撤回 D1", at(2026, 3, 21, 12, 2))
    add_overseer(app)
    assert "“撤回”仅限成员、负责人、管理员使用" in say(app, "vp", "撤回 P3", at(2026, 3, 21, 12, 3))
    with Session(app.engine) as s:
        kept = s.exec(select(Problem).where(Problem.code == "P2")).one()
    assert (kept.voided_by, kept.void_reason) == ("li", "本人撤回")  # kept, not deleted


def test_withdrawing_a_report_brings_back_the_version_before(app):
    say(app, "li", "汇报 T1 30% 完成方案", at(2026, 3, 20, 10))
    say(app, "li", "修改 T1 40% 完成方案和招标", at(2026, 3, 20, 10, 5))
    assert "最近一次汇报由 李四 提交" in say(app, "zhang", "撤回 T1", at(2026, 3, 20, 10, 6))
    reply = say(app, "li", "撤回 T1", at(2026, 3, 20, 10, 7))
    assert "已撤回 T1 的汇报（2026-03 第 2 版，03-20 10:05）：40% 完成方案和招标" in reply
    assert "本月现以第 1 版为准：30% 完成方案" in reply
    assert "T1 本月现为未汇报" in say(app, "li", "撤回 T1", at(2026, 3, 20, 10, 8))
    assert "没有可撤回的汇报" in say(app, "li", "撤回 T1", at(2026, 3, 20, 10, 9))
    assert "本月未汇报 2 项" in say(app, "li", "任务", at(2026, 3, 20, 10, 10))
    with Session(app.engine) as s:
        assert s.exec(select(Report)).all() == []
    # a report of a month that has ended counts in its ranking: not withdrawn
    say(app, "li", "汇报 T1 50% 三月底", at(2026, 3, 31, 23))
    assert "2026-03 月结束" in say(app, "li", "撤回 T1", at(2026, 4, 1, 8))
    say(app, "li", "汇报 T1 60% 四月", at(2026, 4, 2, 9))
    assert "已超过24小时" in say(app, "li", "撤回 T1", at(2026, 4, 3, 9, 1))


def test_an_admin_voids_what_was_entered_by_mistake(app):
    app.config.broadcast.chat_id = "chat-all"
    say(app, "zhao", "汇报 T3 50% 三月进展", at(2026, 3, 12, 9))
    say(app, "wang", "汇报 T4 100% 完成", at(2026, 3, 12, 9))
    say(app, "li", "问题 配电箱未上锁", at(2026, 3, 20, 10))
    say(app, "admin", "督办 信息工程系 4月20日 报送服务大厅方案", at(2026, 3, 20, 10))
    say(app, "sun", "亮点 自习室延长开放 读者好评", at(2026, 3, 20, 10))
    assert "“作废”仅限管理员使用" in say(app, "wang", "作废 T3 重复", at(2026, 4, 1, 9))
    assert "格式不完整" in say(app, "admin", "作废 T3", at(2026, 4, 1, 9))
    assert "不是可作废的编号" in say(app, "admin", "作废 X9 错的", at(2026, 4, 1, 9))
    reply = say(app, "admin", "作废 T3 与T4重复录入", at(2026, 4, 1, 9))
    assert "已作废任务 T3（信息工程系）：与T4重复录入" in reply and "自 2026-04 起" in reply
    for code, why in (("P1", "误报"), ("D1", "下发错单位"), ("L1", "内容有误")):
        assert "已作废" in say(app, "admin", f"作废 {code} {why}", at(2026, 4, 1, 9, 1))
    assert "已于 2026-04-01 09:00 作废（与T4重复录入）" in say(app, "admin", "作废 T3 再来", at(2026, 4, 1, 9, 2))

    # March, ranked after the 作废, still counts T3 (a month it was live in); April does not list it
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run_at("monthly_ranking", app.clock.now())
    (wang_line,) = [content(r) for r in outbox(app, ":unit:") if r.target == "wang"]
    assert "2 项在办任务中" in wang_line
    assert "T3" not in say(app, "zhao", "任务", at(2026, 4, 2, 9))
    assert "已于 2026-04-01 09:00 作废" in say(app, "zhao", "汇报 T3 60% 四月", at(2026, 4, 2, 9))
    status = say(app, "admin", "状态 信息工程系", at(2026, 4, 2, 9))
    assert "（0/0 已汇报）" in status and "T3" not in status  # T4 was done in March; T3 is gone
    say(app, "admin", "提醒 信息工程系", at(2026, 4, 2, 9))
    prompt = [content(r) for r in outbox(app) if r.target == "key-xx"][-1]
    assert "D1" not in prompt and "T3" not in prompt
    assert "P1" not in say(app, "zhang", "问题", at(2026, 4, 2, 9))
    assert "D1" not in say(app, "admin", "督办", at(2026, 4, 2, 9))
    assert "作废" in say(app, "wang", "签收 D1", at(2026, 4, 2, 9))
    assert "L1" not in say(app, "admin", "亮点", at(2026, 4, 2, 9))
    assert "作废" in say(app, "admin", "选用 L1", at(2026, 4, 2, 9))

    # kept with who, when and why: the export's 作废 sheet
    from bot.excel.export import month_workbook

    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(month_workbook(s, app.config, Month(2026, 4), app.clock.now())))
    rows = {r[0]: r for r in wb["作废"].iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"T3", "P1", "D1", "L1"}
    assert rows["T3"][1:3] == ("任务", "信息工程系") and rows["T3"][4:] == ("王管理", datetime(2026, 4, 1, 9, 0), "与T4重复录入")
    assert "P1" not in [r[0] for r in wb["问题清单"].iter_rows(min_row=2, values_only=True)]


def test_a_reimport_names_what_was_voided_instead_of_bringing_it_back(db_url, clock, tmp_path):
    from bot.app import Application
    from conftest import make_config
    from test_roster import GOOD, run_import, workbook

    app = Application(make_config(db_url), clock=clock)
    app.migrate()
    path = workbook(tmp_path / "r.xlsx", **GOOD)
    assert not run_import(app, path).errors
    with app.session() as s:
        unit_id = s.exec(select(Task)).first().unit_id
        s.add(Member(userid="admin", name="王管理", unit_id=unit_id, role="管理员"))
    assert "已作废任务 T1" in say(app, "admin", "作废 T1 立项撤销", at(2026, 3, 20, 11))
    result = run_import(app, path)
    assert not result.errors and [(sheet, row, x.code) for sheet, row, x in result.voided] == [("任务清单", 2, "T1")]
    text = app.renderer.render("import_result", errors=result.errors, counts=result.counts, voided=result.voided)
    assert "【任务清单】第2行 T1：2026-03-20 作废，原因：立项撤销" in text and "未恢复" in text
    with Session(app.engine) as s:
        task = s.exec(select(Task).where(Task.code == "T1")).one()
    assert task.voided_at is not None and task.void_reason == "立项撤销"
    app.engine.dispose()
