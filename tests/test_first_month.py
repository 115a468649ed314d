"""The campaign's first month ([campaign] first_month), 较上月 only against a published month, and
名次 / scores that count the ranked units only (issue 22, points 1, 2 and 8)."""
from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlmodel import Session

from bot.app import Application
from bot.excel.export import generate
from bot.web import pages
from bot.web.table import ranking_rows
from conftest import at, content, make_config, outbox, run_job as run, say, seed


def make_app(db_url, clock, **sections) -> Application:
    application = Application(make_config(db_url, broadcast={"webhook_key": "key-all"}, **sections), clock=clock)
    application.migrate()
    seed(application)
    return application


@pytest.fixture
def november(db_url, clock):
    """The bot switched on in November: the campaign is scored from 2026-11, published at once."""
    application = make_app(db_url, clock, campaign={"first_month": "2026-11"}, ranking={"review_hours": 0})
    yield application
    application.engine.dispose()


@pytest.fixture
def reviewed(db_url, clock):
    """The default campaign (from March) with the 24-hour review window."""
    application = make_app(db_url, clock)
    yield application
    application.engine.dispose()


def sheets(app, spec: dict) -> dict:
    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(generate(s, app.config, {**spec, "at": app.clock.now().isoformat()})))
    return {ws.title: [row for row in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


def overview(app, userid: str) -> dict:
    with Session(app.engine) as s:
        return pages.overview(s, app, pages.viewer(s, userid), app.clock.now(), pages.Rankings())


def test_months_before_the_first_month_are_not_ranked_trended_or_averaged(november):
    app = november
    run(app, "monthly_ranking", at(2026, 11, 2, 10))  # October's ranking: before the campaign's first month
    assert outbox(app, "job:monthly_ranking") == []
    assert "不在考核月份内" in say(app, "admin", "排名 2026-10") and "2026-11" in say(app, "admin", "排名 2026-10")
    say(app, "li", "汇报 T1 60% 实训中心设备到位", at(2026, 11, 5, 9))
    say(app, "sun", "汇报 T5 50% 自习室延时开放", at(2026, 11, 6, 9))
    run(app, "monthly_ranking", at(2026, 12, 1, 10))
    (row,) = outbox(app, "job:monthly_ranking:2026-11:ranking:broadcast")
    text = content(row)
    assert "2026-11" in text and "新" not in text and "↑" not in text and "↓" not in text  # October was not published
    say(app, "li", "汇报 T1 100% 实训中心建成", at(2026, 12, 3, 9))
    data = overview(app, "admin")
    assert data["trend_labels"] == ["11月", "12月"]  # March to October are not in the trend
    run(app, "annual_summary", at(2026, 12, 31, 16))
    annual = content(outbox(app, "job:annual_summary:2026:annual")[0])
    assert "统计月份：11月、12月（" in annual and "3月" not in annual
    titles = list(sheets(app, {"kind": "year", "year": 2026}))
    assert titles[:3] == ["2026年度考核", "11月", "12月"] and "10月" not in titles
    run(app, "monthly_ranking", at(2027, 1, 4, 10))
    (row,) = outbox(app, "job:monthly_ranking:2026-12:ranking:broadcast")
    december = content(row).splitlines()
    # against November as published (图书馆 first, 机电工程系 second): they change places
    assert any(line.startswith("1. 机电工程系") and " ↑1｜" in line for line in december)
    assert any(line.startswith("2. 图书馆") and " ↓1｜" in line for line in december)
    assert any(line.startswith("3. 信息工程系") and " —｜" in line for line in december)


def test_serve_and_jobs_list_say_which_months_are_scored(november):
    from bot.cli import _scored_months

    assert _scored_months(november).startswith("2026年考核月份：2026-11 至 2026-12（共 2 个月，[campaign] first_month）")


def test_a_bad_first_month_is_refused_naming_the_key(tmp_path):
    from bot.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text('[campaign]\nfirst_month = "2026-13"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="campaign.first_month"):
        load_config(path, env={})


def test_the_trend_compares_only_with_a_published_month(reviewed):
    app = reviewed
    say(app, "li", "汇报 T1 30% a", at(2026, 3, 10, 9))
    run(app, "monthly_ranking", at(2026, 4, 1, 10))
    assert "暂缓" in say(app, "admin", "暂缓 2026-03 材料待核实")  # March held: never published
    say(app, "sun", "汇报 T5 40% b", at(2026, 4, 5, 9))
    run(app, "monthly_ranking", at(2026, 5, 6, 10))
    (preview,) = outbox(app, "job:monthly_ranking:2026-04:preview:admin")
    ranked = [line for line in content(preview).splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert len(ranked) == 3 and all(" —｜" in line for line in ranked)
    say(app, "admin", "发布 2026-04", at(2026, 5, 6, 11))
    (row,) = outbox(app, ":ranking:broadcast")
    assert "↑" not in content(row) and "↓" not in content(row) and "新" not in content(row)
    rows = sheets(app, {"kind": "month", "month": "2026-04"})["2026-04排名"]
    assert {r[4] for r in rows[1:] if r[0]} == {"—"}
    # April published: May's ranking compares with it
    say(app, "zhao", "汇报 T3 100% 完成", at(2026, 5, 8, 9))
    run(app, "monthly_ranking", at(2026, 6, 1, 10))
    (preview,) = outbox(app, "job:monthly_ranking:2026-05:preview:admin")
    assert "↑" in content(preview) and "↓" in content(preview)


def test_rank_counts_ranked_units_and_an_unranked_unit_shows_no_score(reviewed):
    app = reviewed
    say(app, "li", "汇报 T1 30% a", at(2026, 3, 10, 9))
    data = overview(app, "zhang")
    assert data["mine"].rank == 1 and data["total"] == 3  # 4 units, 党政办公室 has no task: 不参评
    admin = overview(app, "admin")
    with Session(app.engine) as s:
        html = ranking_rows(admin["preview"], pages.viewer(s, "admin"))
    office = next(row for row in html.split("</tr>") if "党政办公室" in row)
    assert "—" in office and "20.0" not in office
    rows = sheets(app, {"kind": "month", "month": "2026-03"})["2026-03排名"]
    office = next(r for r in rows if r[1] == "党政办公室")
    assert office[3] == "不参评" and office[2] in (None, "")
    app.clock.set(at(2026, 12, 31, 17))
    year = sheets(app, {"kind": "year", "year": 2026})["2026年度考核"]
    office = next(r for r in year if r[1] == "党政办公室")
    assert office[3] == "不参评" and office[2] in (None, "")

