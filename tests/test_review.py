"""The monthly ranking's review window: 预览 to admins and 负责人, 申诉, 暂缓, 发布, auto-publish,
a frozen ranking that later changes do not move, and a broadcast that goes out once."""
from __future__ import annotations

import io
import itertools
import json

from openpyxl import load_workbook
from sqlmodel import Session, select

from conftest import at
from db.models import Appeal, Outbox, RankingRelease
from db.month import Month
from jobs import JobQueue


def sent(app, prefix: str = "") -> list[Outbox]:
    with Session(app.engine) as s:
        return [r for r in s.exec(select(Outbox).order_by(Outbox.id)) if prefix in r.key]


def text(row: Outbox) -> str:
    return json.loads(row.payload)["content"]


_ids = itertools.count(1)


def say(app, userid: str, words: str, when) -> str:
    app.clock.set(when)
    return app.handle_message(userid, words, msg_id=str(next(_ids)))


def march_reports(app) -> None:
    say(app, "li", "汇报 T1 30% 三月进展", at(2026, 3, 10, 9))
    say(app, "zhang", "汇报 T2 40% 三月进展", at(2026, 3, 11, 9))
    say(app, "zhao", "汇报 T3 50% 三月进展", at(2026, 3, 12, 9))


def rank_march(app) -> JobQueue:
    app.config.broadcast.chat_id = "chat-all"
    march_reports(app)
    app.clock.set(at(2026, 4, 1, 10))
    q = JobQueue(app)
    assert q.run_at("monthly_ranking", app.clock.now()).period == "2026-03"
    return q


def broadcasts(app) -> list[Outbox]:
    """The broadcast's text (its picture follows as an image row)."""
    return [r for r in sent(app) if r.target == "chat-all" and r.msgtype != "image"]


def test_the_ranking_goes_first_to_the_admins_and_each_units_leader(app):
    rank_march(app)
    assert broadcasts(app) == []  # nothing public yet
    preview = [r for r in sent(app, "preview:admin")]
    assert len(preview) == 1 and "排名预览（未公布）" in text(preview[0]) and "04月02日 10:00 前申诉" in text(preview[0])
    lines = {r.target: text(r) for r in sent(app, ":unit:")}
    assert set(lines) == {"zhang", "wang", "sun"}  # 党政办公室 has no leader account and no task
    assert "机电工程系：2026-03 排名预览" in lines["zhang"] and "2 项在办任务中 2 项按时汇报" in lines["zhang"]
    assert "逾期未完成任务 1 项，每项扣 5 分" in lines["wang"] and "申诉 理由" in lines["wang"]


def test_an_appeal_reaches_the_admins_with_the_units_figures(app):
    rank_march(app)
    assert "已收到 信息工程系 对 2026-03 排名的申诉" in say(app, "wang", "申诉 T4 已于3月完成，请核实", at(2026, 4, 1, 15))
    (push,) = sent(app, ":appeal:admin")
    assert "信息工程系 对 2026-03 排名提出申诉（王五）" in text(push) and "T4 已于3月完成" in text(push)
    assert "得分" in text(push) and "发布 2026-03" in text(push)
    assert "“申诉”仅限负责人、管理员使用，您（成员）暂无权限" in say(app, "zhao", "申诉 我也有意见", at(2026, 4, 1, 15))
    assert "申诉期已于 04月02日 10:00 结束" in say(app, "zhang", "申诉 晚了", at(2026, 4, 2, 11))
    with Session(app.engine) as s:
        assert [a.text for a in s.exec(select(Appeal))] == ["T4 已于3月完成，请核实"]


def test_the_window_ends_and_the_ranking_is_published_once(app):
    q = rank_march(app)
    app.clock.set(at(2026, 4, 2, 9, 59))
    assert q.publish_due() == [] and broadcasts(app) == []
    app.clock.set(at(2026, 4, 2, 10, 5))
    assert q.publish_due() == ["2026-03"]
    assert q.publish_due() == []  # once
    (row,) = broadcasts(app)
    assert "2026-03 争先督办 公开亮晒" in text(row)
    assert [r.msgtype for r in sent(app) if r.target == "chat-all"] == ["markdown", "image"]
    # an admin's 发布 afterwards sends nothing more
    assert "已于 04月02日 10:05 公布过，未重复发送" in say(app, "admin", "发布 2026-03", at(2026, 4, 2, 11))
    assert len(broadcasts(app)) == 1


def test_a_held_ranking_waits_for_an_admins_publish(app):
    q = rank_march(app)
    assert "已暂缓公布：核实信息工程系申诉" in say(app, "admin", "暂缓 2026-03 核实信息工程系申诉", at(2026, 4, 1, 16))
    app.clock.set(at(2026, 4, 3, 9))
    assert q.publish_due() == [] and broadcasts(app) == []
    assert "排名已公布到通报群" in say(app, "admin", "发布", at(2026, 4, 3, 10))
    assert len(broadcasts(app)) == 1
    assert "公布过" in say(app, "admin", "发布 2026-03", at(2026, 4, 3, 11))  # twice: sent once
    assert len(broadcasts(app)) == 1
    assert "已经公布，不能再暂缓" in say(app, "admin", "暂缓 2026-03 太迟了", at(2026, 4, 3, 12))
    assert "“发布”仅限管理员使用，您（负责人）暂无权限" in say(app, "zhang", "发布 2026-03", at(2026, 4, 3, 12))


def test_what_is_published_is_frozen(app):
    """After the ranking's time a task added to March changes a recount, not what was published:
    `排名 2026-03` and the export show the published ranking, with its time."""
    from bot.excel.export import month_workbook

    q = rank_march(app)
    app.clock.set(at(2026, 4, 2, 10, 5))
    q.publish_due()
    say(app, "admin", "新增任务 图书馆 实干争效 补录的三月任务 责任人=sun 期限=2026-12-31 开始=2026-03-01",
        at(2026, 4, 5, 9))
    say(app, "sun", "汇报 T6 100% 补报", at(2026, 4, 5, 10))
    shown = say(app, "admin", "排名 2026-03", at(2026, 4, 5, 11))
    assert "（04月02日 10:05 公布）" in shown
    with Session(app.engine) as s:
        frozen = {row["unit"]["name"]: row["score"] for row in json.loads(
            s.exec(select(RankingRelease)).one().data)}
        workbook = load_workbook(io.BytesIO(month_workbook(s, app.config, Month(2026, 3), app.clock.now())))
    assert f"图书馆 {frozen['图书馆']:.1f}分" in shown
    sheet = {r[1]: r[2] for r in workbook["2026-03排名"].iter_rows(min_row=2, values_only=True)}
    assert sheet["图书馆"] == frozen["图书馆"]


def test_without_auto_publish_only_an_admin_publishes(app):
    app.config.ranking.auto_publish = False
    q = rank_march(app)
    assert "须管理员回复“发布 2026-03”后公布" in text(sent(app, "preview:admin")[0])
    app.clock.set(at(2026, 4, 10, 9))
    assert q.publish_due() == [] and broadcasts(app) == []
    say(app, "admin", "发布 2026-03", at(2026, 4, 10, 10))
    assert len(broadcasts(app)) == 1
