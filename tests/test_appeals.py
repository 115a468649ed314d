"""Appeals that decide: 采纳 / 驳回 answered to the 负责人, 补录 of a missed report or a 督办 answer
with its real time, 重算 of the month in review, the appellant told on 发布 / 暂缓, 更正 of a
published month with every version kept, shown by 排名, the page and the export."""
from __future__ import annotations

import io
import itertools
import json

from openpyxl import load_workbook
from sqlmodel import Session, select

from conftest import at, content, outbox
from db.models import Appeal, RankingRelease, RankingVersion, Report, SupervisionItem
from db.month import Month
from jobs import JobQueue

_ids = itertools.count(1)


def say(app, userid: str, words: str, when) -> str:
    app.clock.set(when)
    return app.handle_message(userid, words, msg_id=f"a{next(_ids)}")


def pushed(app, userid: str) -> list[str]:
    """What went to one person 1:1, oldest first (replies to their own messages left out)."""
    return [content(r) for r in outbox(app) if r.channel == "app" and r.target == userid
            and not r.key.startswith("reply:")]


def march(app) -> JobQueue:
    """March played: 机电工程系 and 信息工程系 report, 图书馆 (T5) does not, and misses D1 (answered on
    paper); the ranking is frozen on April 1st, in review until April 2nd 10:00."""
    app.config.broadcast.chat_id = "chat-all"
    say(app, "admin", "督办 图书馆 3月25日 报送自习室开放方案", at(2026, 3, 20, 9))
    say(app, "li", "汇报 T1 30% 三月进展", at(2026, 3, 10, 9))
    say(app, "zhang", "汇报 T2 40% 三月进展", at(2026, 3, 11, 9))
    say(app, "zhao", "汇报 T3 50% 三月进展", at(2026, 3, 12, 9))
    app.clock.set(at(2026, 4, 1, 10))
    q = JobQueue(app)
    assert q.run_at("monthly_ranking", app.clock.now()).period == "2026-03"
    return q


def frozen_line(app, unit: str) -> dict:
    with Session(app.engine) as s:
        rows = json.loads(s.exec(select(RankingRelease)).one().data)
    return next(r for r in rows if r["unit"]["name"] == unit)


def test_an_accepted_appeal_is_corrected_recounted_and_published(app):
    q = march(app)
    before = frozen_line(app, "图书馆")
    assert before["report_rate"] == 0 and before["supervision"] == 0
    say(app, "sun", "申诉 T5 已于3月18日纸质报送，D1 3月24日书面答复", at(2026, 4, 1, 11))
    say(app, "wang", "申诉 T4 已完成", at(2026, 4, 1, 11, 30))
    assert "请回复“采纳 图书馆 [意见]”或“驳回 图书馆 意见”" in content(outbox(app, ":appeal:admin")[0])

    # 驳回 needs a reason; each decision reaches the one who appealed
    assert "格式不完整" in say(app, "admin", "驳回 信息工程系", at(2026, 4, 1, 12))
    assert "已驳回 信息工程系 对 2026-03 排名的申诉：系统记录无误" in say(
        app, "admin", "驳回 信息工程系 系统记录无误", at(2026, 4, 1, 12))
    assert "未被采纳（驳回）：系统记录无误" in pushed(app, "wang")[-1]
    assert "信息工程系没有待处理的申诉" in say(app, "admin", "采纳 信息工程系", at(2026, 4, 1, 12))
    assert "“采纳”仅限管理员使用" in say(app, "zhang", "采纳 图书馆", at(2026, 4, 1, 12))

    # 补录 only for a unit whose appeal was accepted
    assert "没有已采纳的申诉" in say(app, "admin", "补录 T5 3月18日 15:00 40% 纸质报送", at(2026, 4, 1, 12, 5))
    assert "已采纳 图书馆 对 2026-03 排名的申诉：情况属实" in say(app, "admin", "采纳 图书馆 情况属实",
                                                             at(2026, 4, 1, 12, 10))
    assert "申诉已被采纳：情况属实" in pushed(app, "sun")[-1]

    reply = say(app, "admin", "补录 T5 3月18日 15:00 40% 纸质报送的三月进展", at(2026, 4, 1, 12, 20))
    assert "已补录 图书馆 T5 的汇报：进度 40%，实际时间 2026-03-18 15:00" in reply and "重算 2026-03" in reply
    assert "（王管理 补录）" in say(app, "sun", "任务 T5", at(2026, 4, 1, 12, 20))
    assert "还没到" in say(app, "admin", "补录 T5 4月18日 40% 将来", at(2026, 4, 1, 12, 21))
    assert "时间“3月99日”无效" in say(app, "admin", "补录 T5 3月99日 40% x", at(2026, 4, 1, 12, 21))
    assert "补录不能早于已有的汇报" in say(app, "admin", "补录 T5 3月10日 10:00 20% 更早的", at(2026, 4, 1, 12, 22))
    with Session(app.engine) as s:
        (entered,) = s.exec(select(Report).where(Report.entered_by == "admin")).all()
        appeal = s.exec(select(Appeal).where(Appeal.userid == "sun")).one()
    assert (entered.month, entered.local_day, entered.appeal_id) == ("2026-03", 18, appeal.id)
    assert entered.created_at == at(2026, 3, 18, 15) and entered.entered_at == at(2026, 4, 1, 12, 20)

    # 重算: frozen again, the admins and the 负责人 whose line changed are told old → new
    lines = {u: frozen_line(app, u) for u in ("机电工程系", "信息工程系")}
    reply = say(app, "admin", "重算 2026-03", at(2026, 4, 1, 13))
    after = frozen_line(app, "图书馆")
    assert after["report_rate"] == 1 and after["supervision"] == 0 and after["score"] > before["score"]
    assert "2026-03 排名已重算（第 2 版，仍在预览中）" in reply
    assert f"图书馆：第{before['rank']}名 {before['score']:.1f}分" in reply and f"→ 第{after['rank']}名" in reply
    assert f"{after['score']:.1f}分" in pushed(app, "sun")[-1] and "重算" in pushed(app, "sun")[-1]
    for unit, leader in (("机电工程系", "zhang"), ("信息工程系", "wang")):
        changed = (lines[unit]["rank"], lines[unit]["score"]) != (frozen_line(app, unit)["rank"],
                                                                 frozen_line(app, unit)["score"])
        assert any("排名已重算" in t for t in pushed(app, leader)) == changed

    # 发布: the broadcast is the recounted version; each appellant hears what became of theirs
    assert not [r for r in outbox(app) if r.target == "chat-all"]
    say(app, "admin", "发布 2026-03", at(2026, 4, 1, 14))
    (broadcast,) = [content(r) for r in outbox(app) if r.target == "chat-all" and r.msgtype != "image"]
    assert f"图书馆 **{after['score']:.1f}**" in broadcast
    assert "2026-03 排名已公布" in pushed(app, "sun")[-1] and "已采纳" in pushed(app, "sun")[-1]
    assert "已驳回（系统记录无误）" in pushed(app, "wang")[-1]
    assert "已经公布，请用“更正 2026-03 说明”" in say(app, "admin", "重算 2026-03", at(2026, 4, 1, 15))

    # 更正 after publication: D1's paper answer entered with its real time, published under a 更正 heading
    reply = say(app, "admin", "补录 D1 3月24日 16:00 书面答复已报送", at(2026, 4, 3, 9))
    assert "已补录 图书馆 对督办单 D1 的反馈，实际时间 2026-03-24 16:00" in reply and "办结 D1" in reply
    assert "按期" in say(app, "admin", "办结 D1 材料齐全", at(2026, 4, 3, 9, 1))
    with Session(app.engine) as s:
        assert s.exec(select(SupervisionItem)).one().answered_at == at(2026, 3, 24, 16)
    assert "03-24 16:00 补录 王管理：书面答复已报送（04-03 09:00 补录，申诉#1）" in say(app, "sun", "督办 D1",
                                                                                at(2026, 4, 3, 9, 2))
    reply = say(app, "admin", "更正 2026-03 采纳图书馆申诉，补录D1书面答复", at(2026, 4, 3, 10))
    assert "2026-03 排名已更正（第 3 版）：采纳图书馆申诉" in reply and "图书馆：" in reply
    correction = [content(r) for r in outbox(app) if r.target == "chat-all" and r.msgtype != "image"
                  and "排名更正" in content(r)]
    assert len(correction) == 1 and "采纳图书馆申诉，补录D1书面答复" in correction[0]
    assert "更正的单位：" in correction[0] and "· 图书馆：" in correction[0]
    latest = frozen_line(app, "图书馆")
    assert latest["supervision"] == 1 and latest["score"] > after["score"]
    shown = say(app, "admin", "排名 2026-03", at(2026, 4, 3, 11))
    assert "更正（04月03日 10:00，第 3 版）：采纳图书馆申诉" in shown and f"图书馆 {latest['score']:.1f}分" in shown

    # every version kept; the export is the latest with its note
    from bot.excel.export import month_workbook

    with Session(app.engine) as s:
        kept = s.exec(select(RankingVersion).order_by(RankingVersion.version)).all()
        workbook = load_workbook(io.BytesIO(month_workbook(s, app.config, Month(2026, 3), app.clock.now())))
    assert [(v.version, v.status) for v in kept] == [(1, "review"), (2, "published")]
    assert json.loads(kept[0].data) != json.loads(kept[1].data)
    sheet = {r[1]: r[2] for r in workbook["2026-03排名"].iter_rows(min_row=2, values_only=True)}
    assert sheet["图书馆"] == latest["score"]
    notes = list(workbook["排名更正"].iter_rows(min_row=2, values_only=True))
    assert notes and notes[0][2] == "采纳图书馆申诉，补录D1书面答复" and "图书馆" in [n[3] for n in notes]
    assert q.publish_due() == []  # nothing published twice


def test_a_held_month_tells_the_appellant_and_corrections_need_the_right_state(app):
    march(app)
    say(app, "sun", "申诉 T5 已纸质报送", at(2026, 4, 1, 11))
    assert "尚未公布，请用“重算 2026-03”" in say(app, "admin", "更正 2026-03 说明", at(2026, 4, 1, 11, 30))
    assert "格式不完整" in say(app, "admin", "更正 2026-03", at(2026, 4, 1, 11, 30))
    assert "2026-01 的排名尚未生成" in say(app, "admin", "重算 2026-01", at(2026, 4, 1, 11, 30))
    say(app, "admin", "暂缓 2026-03 核实图书馆申诉", at(2026, 4, 1, 12))
    told = pushed(app, "sun")[-1]
    assert "2026-03 排名已暂缓公布：核实图书馆申诉" in told and "尚未处理" in told
    reply = say(app, "admin", "重算 2026-03", at(2026, 4, 1, 13))
    assert "各单位名次和得分均无变化" in reply  # nothing was entered: the same ranking, version 2


def test_the_page_shows_the_corrected_ranking_with_its_note(db_url, fake):
    from bot.clock import FixedClock
    from bot.wecom.callback import build_asgi
    from conftest import ServerThread
    from test_web import build, fill, signed_in

    app = build(db_url, FixedClock(at(2026, 4, 10, 10)), fake)
    fill(app)  # March published at once
    with ServerThread(build_asgi(app)) as server:
        app.config.web.base_url = server.base  # where WeCom's sign-in sends the browser back
        client = signed_in(server, fake, "admin")
        assert "更正" not in client.get("/web/").text
        before = frozen_line(app, "机电工程系")["score"]
        say(app, "zhang", "汇报 T2 40% 三月进展", at(2026, 3, 20, 9))  # timed in March (as after a clock fault)
        assert "排名已更正（第 2 版）" in say(app, "admin", "更正 2026-03 补计漏录的三月任务", at(2026, 4, 10, 10, 2))
        page = client.get("/web/").text
    assert "更正（04-10 10:02）：补计漏录的三月任务" in page
    after = frozen_line(app, "机电工程系")["score"]
    assert after != before and f"{after:.1f}" in page  # the corrected version, not the one read before
    app.engine.dispose()
