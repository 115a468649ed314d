"""The ranking as a picture in the broadcast group: readable at 10, 200 and 2,000 units, a PNG
WeCom accepts (at most 2 MB), sent as an image message after the text (robot: base64 + md5;
app chat: uploaded media)."""
from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from PIL import Image
from sqlmodel import Session, select

from bot.charts import MAX_BYTES, bars, ranking_png
from bot.campaign.scoring import TIER_LOW, TIER_OK, TIER_TOP, UnitScore
from bot.clock import SystemClock
from conftest import at, make_config, seed
from db.models import Outbox, Unit
from db.month import Month
from jobs import JobQueue

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORMULA = "得分 = 汇报率×40 + 进度×40 + 督办×20 − 逾期任务×5"


def unit_scores(n: int, not_ranked: int = 0) -> list[UnitScore]:
    """`n` ranked units with spread-out scores and tiers as scoring.ranking() gives them, and
    `not_ranked` units without a task this month (不参评) after them."""
    names = ["党委办公室", "机电工程学院", "信息工程学院", "马克思主义学院", "图书馆", "后勤保障处", "学生工作处",
             "经济管理学院", "建筑工程学院", "继续教育学院"]
    out = []
    k = int(n * 0.2 + 0.5)
    for i in range(n):
        name = names[i] if n <= len(names) else f"第{i + 1:04d}党支部"
        score = round(100 - 85 * i / max(n - 1, 1), 1)
        sc = UnitScore(unit=Unit(id=i + 1, name=name), active_tasks=3, reported=3, reported_on_time=3,
                       report_rate=score / 100, progress=score / 100, supervision=1.0, items=0, items_on_time=0,
                       overdue=i % 3 == 0, score=score, last_report_at=None, rank=i + 1,
                       prev_rank=None if i % 7 == 3 else max(1, i + 1 + (i % 5) - 2),
                       lights={"green": 2, "yellow": 1, "red": 0})
        sc.tier = TIER_LOW if score < 60 or i >= n - k else TIER_TOP if i < k else TIER_OK
        out.append(sc)
    for j in range(not_ranked):
        out.append(UnitScore(unit=Unit(id=n + j + 1, name=f"无任务单位{j}"), active_tasks=0, reported=0,
                             reported_on_time=0, report_rate=0, progress=0, supervision=1.0, items=0,
                             items_on_time=0, overdue=0, score=0.0, last_report_at=None, rank=0, tier="不参评"))
    return out


@pytest.mark.parametrize("n", [10, 200, 2000])
def test_the_ranking_picture_is_a_png_wecom_accepts_at_any_size(n, tmp_path):
    png = ranking_png(unit_scores(n, not_ranked=2), Month(2026, 4), FORMULA, None)
    assert png[:8] == PNG_MAGIC
    assert len(png) <= MAX_BYTES == 2 * 1024 * 1024
    width, height = Image.open(io.BytesIO(png)).size
    # wide enough to read on a phone, never a ribbon 2,000 bars tall
    assert 900 <= width <= 2000 and 500 <= height <= 4000, (width, height)
    (tmp_path / f"ranking-{n}.png").write_bytes(png)


def test_the_picture_shows_everyone_up_to_40_units_and_the_top_and_bottom_15_beyond():
    few = unit_scores(40, not_ranked=3)
    assert [sc.rank for sc in bars(few)] == list(range(1, 41))  # 不参评 units get no bar
    many = bars(unit_scores(2000, not_ranked=3))
    assert [getattr(x, "rank", x) for x in many] == list(range(1, 16)) + [1970] + list(range(1986, 2001))


def test_the_change_since_last_month_can_come_from_previous_ranks():
    scores = unit_scores(10)
    png = ranking_png(scores, Month(2026, 4), FORMULA, {sc.unit.id: 11 - sc.rank for sc in scores})
    assert png[:8] == PNG_MAGIC


def test_a_picture_that_would_pass_2mb_is_drawn_smaller(monkeypatch):
    import bot.charts as chart

    monkeypatch.setattr(chart, "MAX_BYTES", 60_000)
    png = ranking_png(unit_scores(40), Month(2026, 4), FORMULA, None)
    assert png[:8] == PNG_MAGIC and len(png) <= 60_000


# ------------------------------------------------------------ the image message, end to end


def run_ranking_and_deliver(db_url, fake, **broadcast):
    from bot.app import Application
    from bot.cli import _worker
    from bot.clock import FixedClock

    app = Application(make_config(db_url, fake.base, broadcast=broadcast, ranking={"review_hours": 0}), clock=FixedClock(at(2026, 3, 10, 9)))
    app.migrate()
    seed(app)
    app.handle_message("li", "汇报 T1 30% 方案已定", "m1")
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    with Session(app.engine) as s:
        rows = list(s.exec(select(Outbox).where(Outbox.key.startswith("job:monthly_ranking")).order_by(Outbox.id)))
    assert [r.msgtype for r in rows] == ["markdown", "image"]
    assert json.loads(rows[1].payload)["kind"] == "ranking_image" and rows[1].key.endswith("ranking:image")
    app.clock = SystemClock()
    worker = _worker(app)
    worker.drain(20)
    worker.stop()
    with Session(app.engine) as s:
        assert {r.status for r in s.exec(select(Outbox))} == {"sent"}, [
            (r.key, r.last_error) for r in s.exec(select(Outbox))]
    app.engine.dispose()


def test_a_robot_broadcast_gets_the_picture_after_the_text(db_url, fake):
    run_ranking_and_deliver(db_url, fake, webhook_key="key-all")
    sent = fake.deliveries("webhook/send")
    assert [d.body["msgtype"] for d in sent] == ["markdown", "image"]
    assert "2026-03" in sent[0].body["markdown"]["content"]
    ((delivery, png),) = fake.images()
    assert delivery.target == "robot:key-all" and png[:8] == PNG_MAGIC and len(png) <= 2 * 1024 * 1024


def test_an_app_chat_broadcast_gets_the_picture_as_uploaded_media_after_the_text(db_url, fake):
    run_ranking_and_deliver(db_url, fake, chat_id="chat-all")
    sent = fake.deliveries("appchat/send")
    assert [d.body["msgtype"] for d in sent] == ["markdown", "image"]
    ((delivery, png),) = fake.images()
    assert delivery.target == "chat:chat-all" and png[:8] == PNG_MAGIC
    uploads = [(path, query.get("type")) for path, query, _ in fake.state.requests if path == "media/upload"]
    assert uploads == [("media/upload", "image")]


def test_console_mode_writes_the_picture_into_the_exports_folder(app, tmp_path):
    from bot.excel.export import generate
    from bot.wecom.sender import ConsoleTransport

    app.config.ranking.review_hours = 0
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))  # no broadcast group: nothing to picture
    app.config.broadcast.webhook_key = "key-all"
    JobQueue(app).run("monthly_ranking", at(2026, 5, 1, 10))
    with Session(app.engine) as s:
        (row,) = [r for r in s.exec(select(Outbox)) if r.msgtype == "image"]
        data = generate(s, app.config, json.loads(row.payload))
    printed = []
    ConsoleTransport(printed.append, tmp_path / "exports").send(row, data)
    path = tmp_path / "exports" / row.filename
    assert path.read_bytes()[:8] == PNG_MAGIC and str(path) in printed[0]
    assert row.filename == "争先督办-2026-04排名.png"


@pytest.mark.parametrize("name", ["$$", "经管$$学院", "$\\后勤处$", "$x^$"])
def test_unit_names_are_drawn_as_plain_text_never_as_a_formula(name):
    """matplotlib reads "$…$" as a formula, and fails on one it cannot typeset: names are text."""
    scores = unit_scores(10)
    scores[0].unit.name = name
    png = ranking_png(scores, Month(2026, 4), "得分 = $40 \\times x$", None)
    assert png[:8] == PNG_MAGIC


def test_a_broadcast_whose_unit_name_has_dollars_gets_its_picture(db_url, fake):
    from bot.app import Application
    from bot.cli import _worker

    app = Application(make_config(db_url, fake.base, broadcast={"webhook_key": "key-all"},
                                  ranking={"review_hours": 0}), clock=SystemClock())
    app.migrate()
    seed(app)
    with app.session() as s:
        unit = s.exec(select(Unit).where(Unit.name == "机电工程系")).one()
        unit.name = "机电$$工程系"
        s.add(unit)
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    worker = _worker(app)
    worker.drain(20)
    worker.stop()
    with Session(app.engine) as s:
        assert {(r.msgtype, r.status) for r in s.exec(select(Outbox))} == {("markdown", "sent"), ("image", "sent")}
    ((_, png),) = fake.images()
    assert png[:8] == PNG_MAGIC
    app.engine.dispose()
