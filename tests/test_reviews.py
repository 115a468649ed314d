"""The mid-year and annual reviews carry comments (issue 15, point 7): 点评 <单位> <内容> by an admin,
自评 <内容> by a unit's 负责人, during June (the mid-year review) and December (the annual one); the
reviews' broadcasts and the year workbook show each unit's latest 点评 and 自评. SQLite and PostgreSQL."""
from __future__ import annotations

import io
import itertools

import pytest
from openpyxl import load_workbook
from sqlmodel import Session, select

from bot.app import Application
from bot.cli import _worker
from conftest import at, content, make_config, outbox, seed
from db.models import ReviewComment
from jobs import JobQueue

_ids = itertools.count(1)


def say(app, userid: str, text: str, chat: str = "") -> str:
    (reply,) = app.handle_batch([(userid, text, f"rv{next(_ids)}", chat)])
    if isinstance(reply, Exception):
        raise reply
    return reply


def comments(app) -> list[tuple[str, str, str, str]]:
    with Session(app.engine) as s:
        return [(c.period, c.kind, c.userid, c.text) for c in s.exec(select(ReviewComment).order_by(ReviewComment.id))]


@pytest.fixture
def app(db_url, clock, fake):
    """The seeded college, with WeCom at the fake API (the year workbook is delivered and opened)."""
    application = Application(make_config(db_url, api_base=fake.base, broadcast={"chat_id": "chat-all"}),
                              clock=clock)
    application.migrate()
    seed(application)
    yield application
    application.engine.dispose()


def test_june_comments_reach_the_midyear_review_the_latest_replacing_the_earlier(app, clock):
    clock.set(at(2026, 6, 10, 9))
    reply = say(app, "admin", "点评 机电工程系 实训中心建设进度快")
    assert "已记录机电工程系 2026年上半年点评（王管理）" in reply and "实训中心建设进度快" in reply
    assert "上半年阶段性点评通报" in reply
    reply = say(app, "zhang", "自评：上半年完成实训中心主体建设，\n问题清单销号 5 项")
    assert "已记录机电工程系 2026年上半年自评（张三）" in reply
    clock.set(at(2026, 6, 12, 15))
    reply = say(app, "admin", "＃点评　机电　实训中心建设进度快，问题整改扎实")  # as typed on a phone; 机电: the one unit
    assert "已替换 06-10 09:00 王管理 填写的点评" in reply
    assert comments(app) == [
        ("2026-H1", "点评", "admin", "实训中心建设进度快"),
        ("2026-H1", "自评", "zhang", "上半年完成实训中心主体建设，\n问题清单销号 5 项"),
        ("2026-H1", "点评", "admin", "实训中心建设进度快，问题整改扎实"),  # the history stays
    ]

    listing = say(app, "admin", "点评")  # alone: what is stored for the review, every unit that has some
    assert "2026年上半年点评和自评" in listing and "【机电工程系】" in listing
    assert "点评（王管理，06-12 15:00）：实训中心建设进度快，问题整改扎实" in listing
    assert "信息工程系" not in listing and "已点评 1 个单位、已自评 1 个单位（共 4 个）" in listing
    own = say(app, "zhang", "自评")  # the 负责人: the unit's own; the admins' 点评 once the review went out
    assert "机电工程系 2026年上半年点评和自评" in own and "问题清单销号 5 项" in own and "问题整改扎实" not in own
    assert "点评：暂无" in say(app, "wang", "自评") and "自评：暂无" in say(app, "wang", "自评")

    clock.set(at(2026, 6, 30, 16))
    JobQueue(app).run("midyear_review", at(2026, 6, 30, 16))
    (broadcast,) = outbox(app, "midyear:broadcast")
    text = content(broadcast)
    section = text.split("**点评与自评**")[1]
    assert "机电工程系\n> 点评：实训中心建设进度快，问题整改扎实\n> 自评：上半年完成实训中心主体建设，\n> 问题清单销号 5 项" in section
    assert "信息工程系" not in section and "点评：实训中心建设进度快\n" not in section

    clock.set(at(2026, 6, 30, 17))  # after the review went out: stored, and said it will not be sent again
    reply = say(app, "admin", "点评 图书馆 自习室延时开放反响好")
    assert "2026年上半年通报已于 06-30 16:00 发出，此次点评不会再推送" in reply
    assert len(comments(app)) == 4


def test_december_comments_and_june_ones_are_in_the_year_workbook(app, clock, fake):
    clock.set(at(2026, 6, 15, 10))
    say(app, "admin", "点评 机电工程系 上半年推进有力")
    say(app, "zhang", "自评 上半年完成主体建设")
    clock.set(at(2026, 12, 15, 10))
    reply = say(app, "admin", "点评 机电工程系 全年任务完成，示范作用明显")
    assert "2026年度点评" in reply and "年度考核工作簿" in reply
    say(app, "zhang", "自评 全年完成实训中心建设")
    say(app, "wang", "自评 =SUM(A1:A9) 全年完成服务大厅上线")  # user text: never a formula
    say(app, "admin", "点评 信息工程系 服务大厅上线及时")

    clock.set(at(2026, 12, 31, 16))
    JobQueue(app).run("annual_summary", at(2026, 12, 31, 16))
    (broadcast,) = outbox(app, "annual:broadcast")
    section = content(broadcast).split("**点评与自评**")[1]
    assert "> 点评：全年任务完成，示范作用明显" in section and "上半年推进有力" not in section
    assert "> 自评：=SUM(A1:A9) 全年完成服务大厅上线" in section

    worker = _worker(app)
    try:
        worker.drain(10)
    finally:
        worker.stop()
    (file_msg,) = [d for d in fake.deliveries("message/send") if d.body["msgtype"] == "file"]
    name, data = fake.state.uploads[file_msg.body["file"]["media_id"]]
    assert name == "争先督办-2026年度考核.xlsx"
    ws = load_workbook(io.BytesIO(data))["2026年度考核"]
    header = [c.value for c in ws[1]]
    assert header[-4:] == ["上半年点评", "上半年自评", "年度点评", "年度自评"]
    rows = {r[1]: r for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows["机电工程系"][-4:] == ("上半年推进有力", "上半年完成主体建设", "全年任务完成，示范作用明显", "全年完成实训中心建设")
    assert rows["信息工程系"][-4:] == (None, None, "服务大厅上线及时", "=SUM(A1:A9) 全年完成服务大厅上线")
    xx = next(r for r in ws.iter_rows(min_row=2) if r[1].value == "信息工程系")
    assert xx[-1].data_type == "s" and xx[-1].quotePrefix  # shown as typed, not computed
    assert rows["图书馆"][-4:] == (None, None, None, None)

    # A 点评 written after the appraisal went out reaches the year workbook an admin asks for.
    clock.set(at(2026, 12, 31, 17))
    say(app, "admin", "点评 图书馆 年底补充：阅读推广成效突出")
    assert "2026年度" in say(app, "admin", "导出 2026年")
    worker = _worker(app)
    try:
        worker.drain(10)
    finally:
        worker.stop()
    files = [d for d in fake.deliveries("message/send") if d.body["msgtype"] == "file"]
    assert len(files) == 2
    name, data = fake.state.uploads[files[-1].body["file"]["media_id"]]
    assert name == "争先督办-2026年度考核.xlsx"
    rows = {r[1]: r for r in load_workbook(io.BytesIO(data))["2026年度考核"].iter_rows(min_row=2, values_only=True)}
    assert rows["图书馆"][-2] == "年底补充：阅读推广成效突出"


@pytest.mark.parametrize("who, text, expected", [
    ("li", "点评 机电工程系 很好", "仅限管理员"),  # a member
    ("zhang", "点评 机电工程系 很好", "仅限管理员"),  # a 负责人 comments only through 自评
    ("li", "自评 本单位很好", "仅限负责人、管理员"),
    ("admin", "点评 火星系 很好", "没有找到单位“火星系”"),
    ("admin", "点评 机电工程系", "格式不完整"),  # no content
    ("admin", "点评 机电工程系 \u200b\u3000", "格式不完整"),  # nothing a reader would see
])
def test_wrong_comments_are_refused_and_store_nothing(app, clock, who, text, expected):
    clock.set(at(2026, 6, 10, 9))
    reply = say(app, who, text)
    assert expected in reply
    assert comments(app) == [] and outbox(app) == []


def test_outside_june_and_december_comments_are_refused_naming_when_they_open(app, clock):
    clock.set(at(2026, 7, 1, 9))
    for who, text in (("admin", "点评 机电工程系 很好"), ("zhang", "自评 上半年完成主体建设")):
        reply = say(app, who, text)
        assert "只在每年6月（上半年阶段性点评）和12月（年度考核）填写，现在是7月" in reply and "未做任何操作" in reply
    assert comments(app) == []
    # looking is always possible: the latest review's (in July: the mid-year one; in March: last year's)
    assert "2026年上半年点评和自评" in say(app, "admin", "点评") and "暂无点评和自评" in say(app, "admin", "点评")
    clock.set(at(2027, 3, 1, 9))
    assert "2026年度点评和自评" in say(app, "zhang", "自评")


def test_in_a_group_a_comment_is_refused_and_a_self_review_answered_1to1(app, clock):
    clock.set(at(2026, 6, 10, 9))
    group = "wrkSFfCgAAjd"
    reply = say(app, "admin", "点评 机电工程系 很好", chat=group)
    assert "请私聊" in reply and comments(app) == []
    reply = say(app, "zhang", "自评 上半年完成主体建设", chat=group)
    assert "已私聊发送给您" in reply and "上半年完成主体建设" not in reply  # the group reads a note only
    assert comments(app) == [("2026-H1", "自评", "zhang", "上半年完成主体建设")]
    (private,) = outbox(app, "reply:zhang")
    assert private.target == "zhang" and "已记录机电工程系 2026年上半年自评" in content(private)


def test_help_shows_the_comment_commands_to_whom_may_use_them(app):
    assert "点评" in say(app, "admin", "帮助") and "点评 [<单位> <内容>]" in say(app, "admin", "帮助 点评")
    leader = say(app, "zhang", "帮助")
    assert "自评 [内容]" in leader and "点评 [" not in leader
    member = say(app, "li", "帮助")
    assert "自评" not in member and "点评" not in member
