"""亮点 (issue 15, point 9): a 负责人 sends one with a picture, an admin lists and picks (选用) it,
and it goes into the next monthly broadcast under 本月亮点 with its picture as an image message,
once, and into the year's workbook; the month's workbook lists every attachment. On SQLite and
PostgreSQL."""
from __future__ import annotations

import io
import itertools
import json

import pytest
from openpyxl import load_workbook
from PIL import Image
from sqlmodel import Session, select

from bot.app import Application
from bot.evidence import Fetcher
from bot.excel.export import generate
from bot.wecom.api import WeComTransport
from conftest import at, make_config, outbox, seed
from db.models import Highlight
from jobs import JobQueue

_ids = itertools.count(1)


def say(app, userid: str, text: str) -> str:
    return app.handle_message(userid, text, msg_id=f"hl{next(_ids)}")


def picture(app, userid: str, media_id: str) -> str:
    """A picture message, as the callback hands it to the writer."""
    with app.session() as s:
        return app.handle_one(s, userid, "", f"hl{next(_ids)}", media=("image", media_id))


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), "orange").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(db_url, clock, fake, tmp_path):
    application = Application(make_config(db_url, api_base=fake.base, storage={"dir": str(tmp_path / "files")},
                                          broadcast={"webhook_key": "key-all"}, ranking={"review_hours": 0}),
                              clock=clock)
    application.migrate()
    seed(application)
    yield application
    application.engine.dispose()


def test_a_highlight_is_sent_listed_picked_broadcast_once_and_in_the_year_workbook(app, fake, clock):
    photo = png()
    fake.add_media("m-1", photo)
    reply = say(app, "zhang", "亮点 实训中心获评省级示范 我系智能制造实训中心入选省级示范基地，\n带动3个专业")
    assert "已登记亮点 L1：实训中心获评省级示范" in reply and "附件 L1" in reply
    assert "作为亮点 L1 的图片保存" in picture(app, "zhang", "m-1")
    Fetcher(app, WeComTransport(app.config.wecom)).run_once()
    say(app, "wang", "亮点 一站式服务大厅上线 学生办事一次办结")

    listed = say(app, "admin", "亮点")
    assert "L2 信息工程系 一站式服务大厅上线" in listed and "L1 机电工程系 实训中心获评省级示范" in listed
    assert "图片1张" in listed and listed.count("待选用") == 2 and "选用 L2" in listed
    own = say(app, "zhang", "亮点")
    assert "机电工程系 的亮点" in own and "L1" in own and "L2" not in own

    assert "仅限管理员" in say(app, "zhang", "选用 L1")
    assert "已选用机电工程系的亮点 L1" in say(app, "admin", "选用 l1")
    assert "已于" in say(app, "admin", "选用 L1")  # picked once
    (told,) = outbox(app, "picked:L1")
    assert told.target == "zhang" and "已被选用" in json.loads(told.payload)["content"]

    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    rows = outbox(app, "job:monthly_ranking:2026-03")
    assert [r.msgtype for r in rows] == ["markdown", "image", "image"]
    text = json.loads(rows[0].payload)["content"]
    assert "本月亮点" in text and "L1 机电工程系：**实训中心获评省级示范**" in text and "L2" not in text
    spec = json.loads(rows[2].payload)
    assert spec["kind"] == "attachment" and rows[2].filename == "亮点L1.png"
    with Session(app.engine) as s:
        assert generate(s, app.config, spec) == photo  # the picture as it was sent
        assert s.exec(select(Highlight).where(Highlight.code == "L1")).one().shown_month == "2026-03"

    say(app, "admin", "选用 L2")
    clock.set(at(2026, 5, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 5, 1, 10))
    (april,) = [r for r in outbox(app, "job:monthly_ranking:2026-04") if r.msgtype == "markdown"]
    content = json.loads(april.payload)["content"]
    assert "L2 信息工程系" in content and "L1" not in content  # each goes out once
    assert "已在 2026-03 亮晒中展示" in say(app, "admin", "亮点")

    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(generate(s, app.config, {"kind": "year", "year": 2026,
                                                                "at": clock.now().isoformat()})))
    rows = list(wb["亮点"].iter_rows(values_only=True))
    assert rows[0][:3] == ("编号", "单位", "标题")
    assert [(r[0], r[1], r[2], r[7], r[8]) for r in rows[1:]] == [
        ("L1", "机电工程系", "实训中心获评省级示范", "2026-03", 1), ("L2", "信息工程系", "一站式服务大厅上线", "2026-04", 0)]


def test_members_may_not_send_highlights_and_bad_forms_are_explained(app):
    assert "仅限" in say(app, "li", "亮点 标题 内容")
    assert "格式不完整" in say(app, "zhang", "亮点 只有标题")
    assert "60 字以内" in say(app, "zhang", "亮点 " + "很" * 61 + " 内容")
    assert "没有找到亮点“L9”" in say(app, "admin", "选用 L9")
    assert "暂无亮点" in say(app, "zhang", "亮点")
    with Session(app.engine) as s:
        assert s.exec(select(Highlight)).all() == []


def test_the_month_workbook_lists_each_items_attachments(app, fake):
    fake.add_media("m-1", png())
    say(app, "li", "汇报 T1 60% 完成主体验收")
    picture(app, "li", "m-1")
    picture(app, "li", "m-2")  # WeCom has lost it: failed, listed all the same
    Fetcher(app, WeComTransport(app.config.wecom)).run_once()
    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(generate(s, app.config, {"kind": "month", "month": "2026-03",
                                                                "at": app.clock.now().isoformat()})))
    tasks = {r[0]: r for r in wb["任务进度"].iter_rows(values_only=True)}
    assert tasks["编号"][-1] == "佐证材料" and tasks["T1"][-1] == 1 and tasks["T2"][-1] == 0
    rows = list(wb["佐证材料"].iter_rows(values_only=True))
    assert [(r[0], r[2], r[4], r[7]) for r in rows[1:]] == [("T1", "李四", "png", "已保存"), ("T1", "李四", "图片", "未取回")]
    assert rows[1][8].endswith(".png") and "/" in rows[1][8]
