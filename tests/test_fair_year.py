"""Issue 22's year as a new college plays it: tasks from March, the bot switched on in November
([campaign] first_month = 2026-11); an appeal accepted, a report 补录, the month recounted and
published, then corrected; a duplicate 问题 withdrawn, a 任务 voided; December ranked against the
published November; the annual text and the year workbook with the scored months only."""
from __future__ import annotations

import io
import json

import pytest
from openpyxl import load_workbook
from sqlmodel import Session

from bot.app import Application
from bot.excel.export import generate
from conftest import at, content, make_config, outbox, run_job, say, seed


@pytest.fixture
def college(db_url, clock):
    config = make_config(db_url, broadcast={"webhook_key": "key-all"}, campaign={"first_month": "2026-11"})
    application = Application(config, clock=clock)
    application.migrate()
    seed(application)  # T1–T5 started in March (T4 in February); 党政办公室 has no task
    yield application
    application.engine.dispose()


def told(app, userid: str) -> list[str]:
    """What was pushed 1:1 to one person (not the replies to their own messages), oldest first."""
    return [content(r) for r in outbox(app) if r.channel == "app" and r.target == userid
            and not r.key.startswith("reply:") and r.msgtype in ("text", "markdown")]


def broadcasts(app) -> list[str]:
    return [content(r) for r in outbox(app) if r.target == "key-all" and r.msgtype != "image"]


def ranked(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]


def test_a_college_switched_on_in_november_plays_a_fair_year(college):
    app = college
    # October is before the campaign: its ranking run sends nothing, and 排名 says so
    run_job(app, "monthly_ranking", at(2026, 11, 2, 10))
    assert outbox(app, "job:monthly_ranking") == []
    reply = say(app, "zhang", "排名 2026-10")
    assert "不在考核月份内" in reply and "2026-11" in reply

    # November: 图书馆 reports nothing in chat and leaves D1 unanswered (both done on paper)
    say(app, "admin", "督办 图书馆 11月25日 报送自习室开放方案", at(2026, 11, 3, 9))
    say(app, "li", "汇报 T1 60% 实训中心设备到位", at(2026, 11, 5, 9))
    say(app, "zhao", "汇报 T3 100% 服务大厅上线", at(2026, 11, 6, 9))
    say(app, "wang", "汇报 T4 100% 自评报告已报送", at(2026, 11, 6, 10))
    # a 问题 as people write it, sent twice: the duplicate withdrawn by its author
    words = "问题 实训楼三楼配电箱未上锁，措施：加装门锁并张贴警示，时限：11月20号"
    for code in ("P1", "P2"):
        reply = say(app, "li", words, at(2026, 11, 9, 9))
        assert f"已登记问题 {code}（机电工程系）：实训楼三楼配电箱未上锁\n" in reply
        assert "整改措施：加装门锁并张贴警示" in reply and "整改时限：2026-11-20" in reply
    assert "已撤回问题 P2：实训楼三楼配电箱未上锁" in say(app, "li", "撤回 P2", at(2026, 11, 9, 9, 10))
    listing = say(app, "zhang", "问题", at(2026, 11, 9, 9, 11))
    assert "P1 实训楼三楼配电箱未上锁" in listing and "P2" not in listing

    # December 1st: November frozen for review, no arrows (October was never published)
    run_job(app, "monthly_ranking", at(2026, 12, 1, 10))
    (preview,) = outbox(app, "job:monthly_ranking:2026-11:preview:admin")
    lines = ranked(content(preview))
    assert len(lines) == 3 and all(" —｜" in line for line in lines)
    assert "3. 图书馆 **0.0**" in content(preview)
    assert "第 3 名（共 3 个单位），得分 **0.0**" in say(app, "sun", "排名", at(2026, 12, 1, 10, 30))

    # the appeal: accepted, the missed report entered with its real time, the month recounted, published
    reply = say(app, "sun", "申诉 T5 已于11月18日纸质报送，D1 已于11月24日书面答复", at(2026, 12, 1, 11))
    assert "已收到 图书馆 对 2026-11 排名的申诉" in reply
    assert "已采纳 图书馆" in say(app, "admin", "采纳 图书馆 情况属实", at(2026, 12, 1, 12))
    assert "申诉已被采纳：情况属实" in told(app, "sun")[-1]
    reply = say(app, "admin", "补录 T5 11月18日 15:00 50% 纸质报送的十一月进展", at(2026, 12, 1, 12, 10))
    assert "已补录 图书馆 T5 的汇报：进度 50%，实际时间 2026-11-18 15:00" in reply
    reply = say(app, "admin", "重算 2026-11", at(2026, 12, 1, 13))
    assert "· 图书馆：第3名 0.0分 滞后 → 第2名 62.3分 达标" in reply
    assert "· 机电工程系：第2名 48.4分 滞后 → 第3名 48.4分 滞后" in reply  # moved down a place
    assert "排名已重算" in told(app, "sun")[-1] and "62.3分" in told(app, "sun")[-1]
    assert "排名已重算" in told(app, "zhang")[-1] and "信息工程系" not in reply
    assert not any("排名已重算" in t for t in told(app, "wang"))  # 信息工程系's line did not change
    assert broadcasts(app) == []  # still in review
    say(app, "admin", "发布 2026-11", at(2026, 12, 1, 14))
    assert "您单位的申诉：已采纳（情况属实）" in told(app, "sun")[-1]
    (november,) = broadcasts(app)
    assert "2026-11" in november and "2. 图书馆 **62.3**" in november
    assert len(ranked(november)) == 3 and all(" —｜" in line for line in ranked(november))
    assert not any(mark in november for mark in ("↑", "↓", "新"))

    # after publication: D1's paper answer entered, and the published month corrected
    say(app, "admin", "补录 D1 11月24日 16:00 书面答复已报送", at(2026, 12, 2, 9))
    assert "按期" in say(app, "admin", "办结 D1 材料齐全", at(2026, 12, 2, 9, 1))
    reply = say(app, "admin", "更正 2026-11 采纳图书馆申诉，补录D1书面答复", at(2026, 12, 2, 10))
    assert "2026-11 排名已更正（第 3 版）" in reply
    correction = broadcasts(app)[-1]
    assert "排名更正" in correction and "采纳图书馆申诉，补录D1书面答复" in correction
    assert "排名已更正" in told(app, "sun")[-1] and "82.3分" in told(app, "sun")[-1]
    assert "· 图书馆：第2名 62.3分 达标 → 第2名 82.3分" in correction and "信息工程系：第" not in correction
    shown = say(app, "li", "排名 2026-11", at(2026, 12, 2, 11))
    assert "更正（12月02日 10:00，第 3 版）：采纳图书馆申诉，补录D1书面答复" in shown
    assert "2. 图书馆 82.3分" in shown

    # December: T2 (overdue since June) was entered by mistake and is voided
    reply = say(app, "admin", "作废 T2 与T1重复录入", at(2026, 12, 2, 12))
    assert "已作废任务 T2（机电工程系）：与T1重复录入" in reply
    tasks = say(app, "zhang", "任务", at(2026, 12, 2, 12, 5))
    assert "T1 建成智能制造实训中心" in tasks and "T2" not in tasks
    say(app, "sun", "汇报 T5 80% 自习室延时开放", at(2026, 12, 5, 9))
    run_job(app, "monthly_prompt", at(2026, 12, 21, 9))
    (prompt,) = [content(r) for r in outbox(app, "job:monthly_prompt") if r.target == "chat-jd"]
    assert "T1 建成智能制造实训中心" in prompt and "T2" not in prompt
    say(app, "li", "汇报 T1 100% 实训中心建成", at(2026, 12, 22, 9))

    # the annual text averages the scored months only, and names them
    run_job(app, "annual_summary", at(2026, 12, 31, 16))
    annual = content(outbox(app, "job:annual_summary:2026:annual")[0])
    assert "统计月份：11月、12月（" in annual and "3月" not in annual
    assert "2. 图书馆 87.2 " in annual and "3. 机电工程系 74.2 " in annual  # (82.3 + 92.0) / 2, (48.4 + 100) / 2

    # December against the published November: 机电工程系 (T2 gone) goes up two places, 图书馆 stays
    run_job(app, "monthly_ranking", at(2027, 1, 4, 10))
    say(app, "admin", "发布 2026-12", at(2027, 1, 4, 11))
    december = broadcasts(app)[-1]
    assert "2026-12" in december
    assert [line.split("｜")[0] for line in ranked(december)] == [
        "1. 机电工程系 **100.0** <font color=\"comment\">达标</font> ↑2",
        "2. 图书馆 **92.0** <font color=\"comment\">达标</font> —"]

    # the year workbook the admin asks for: the year table and one sheet per scored month
    assert "2026年度" in say(app, "admin", "导出 2026年", at(2027, 1, 5, 9))
    (sent,) = [r for r in outbox(app, ":file") if r.key.startswith("reply:admin:")]
    with Session(app.engine) as s:
        workbook = load_workbook(io.BytesIO(generate(s, app.config, json.loads(sent.payload))))
    assert workbook.sheetnames[:3] == ["2026年度考核", "11月", "12月"]
    assert not {f"{m}月" for m in range(3, 11)} & set(workbook.sheetnames)
    year = {row[1]: row[2] for row in workbook["2026年度考核"].iter_rows(min_row=2, values_only=True)}
    assert year == {"信息工程系": 100, "图书馆": 87.2, "机电工程系": 74.2, "党政办公室": None}  # Nov and Dec only
    assert [row[4] for row in workbook["12月"].iter_rows(min_row=2, max_row=3, values_only=True)] == ["↑2", "—"]
    voided = {row[0]: row[6] for row in workbook["作废"].iter_rows(min_row=2, values_only=True)}
    assert voided == {"P2": "本人撤回", "T2": "与T1重复录入"}
