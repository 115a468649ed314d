"""The next year (issue 23, point 2): `duban campaign new 2027` carries what 2026 left open, codes
are per year, chat means the current year and 2026 stays readable and unchanged."""
from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlmodel import Session, select

from bot.app import Application
from bot.cli import main
from bot.excel.export import generate
from conftest import at, content, make_config, outbox, run_job as run, say, seed
from db.models import Problem, SupervisionItem, Task


@pytest.fixture
def app(db_url, clock, tmp_path):
    sections = {"broadcast": {"webhook_key": "key-all"}, "ranking": {"review_hours": 0}}
    application = Application(make_config(db_url, **sections), clock=clock)
    application.migrate()
    seed(application)
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "{db_url}"\n[broadcast]\nwebhook_key = "key-all"\n[ranking]\nreview_hours = 0\n',
        encoding="utf-8")
    application.config_path = tmp_path / "config.toml"
    yield application
    application.engine.dispose()


def campaign_new(app, *args: str, answer: str | None = None):
    return CliRunner().invoke(main, ["campaign", "new", *args, "--config", str(app.config_path)], input=answer)


def sheets(app, spec: dict, when) -> dict:
    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(generate(s, app.config, {**spec, "at": when.isoformat()})))
    return {ws.title: [row for row in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


def play_2026(app) -> None:
    """November: T1 at 60 %, T3 and T5 finished; a problem and a 督办 item left open."""
    say(app, "li", "汇报 T1 60% 实训中心设备到位", at(2026, 11, 5, 9))
    say(app, "zhao", "汇报 T3 100% 服务大厅上线", at(2026, 11, 6, 9))
    say(app, "sun", "汇报 T5 100% 自习室延时开放", at(2026, 11, 6, 10))
    say(app, "zhang", "问题 实训室消防通道堆放杂物 措施=清理通道 时限=2026-12-31", at(2026, 11, 9, 9))
    say(app, "admin", "督办 图书馆 2026-12-20 报送年度借阅数据", at(2026, 11, 10, 9))
    run(app, "monthly_ranking", at(2026, 12, 1, 10))
    run(app, "monthly_ranking", at(2027, 1, 4, 10))


def test_campaign_new_carries_the_unfinished_and_2026_stays_as_published(app):
    play_2026(app)
    (row,) = outbox(app, "job:monthly_ranking:2026-11:ranking:broadcast")
    november = [line for line in content(row).splitlines() if line[:2] in ("1.", "2.", "3.")]
    before = sheets(app, {"kind": "year", "year": 2026}, at(2027, 1, 5, 9))

    result = campaign_new(app, "2027", "--carry", "unfinished", "--at", "2027-01-05 10:00")
    assert result.exit_code == 0, result.output
    out = result.output
    # listed first, with their year: T1, T2 and T4 unfinished; T3 and T5 finished stay in 2026
    for code in ("任务 2026年T1", "任务 2026年T2", "任务 2026年T4", "问题 2026年P1", "督办 2026年D1"):
        assert code in out
    assert "2026年T3" not in out and "2026年T5" not in out
    assert "已开始2027年考核：自 2027-03 起考核" in out and "已结转 3 项任务、1 个问题、1 件督办单" in out
    with Session(app.engine) as s:
        assert sorted(t.code for t in s.exec(select(Task).where(Task.year == 2027))) == ["T1", "T2", "T4"]
        assert [p.code for p in s.exec(select(Problem).where(Problem.year == 2027))] == ["P1"]
        assert [i.code for i in s.exec(select(SupervisionItem).where(SupervisionItem.year == 2027))] == ["D1"]
        assert len(s.exec(select(Task).where(Task.year == 2026)).all()) == 5  # 2026 keeps its own rows

    # Codes are per year: a new task of 2027 takes a 2027 code; T5 is no longer 2026's finished T5
    reply = say(app, "admin", "新增任务 图书馆 3 建设智慧书房 责任人=sun 期限=2027-12-31 开始=2027-03-01",
                at(2027, 2, 20, 9))
    assert "T5" in reply
    assert "建设智慧书房" in say(app, "sun", "任务 T5") and "延时开放" not in say(app, "sun", "任务 T5")
    # a chat message means the current year: T1 is 2027's, going on from 60 %
    assert "80%" in say(app, "li", "汇报 T1 80% 实训中心试运行", at(2027, 3, 10, 9))
    say(app, "sun", "汇报 T5 20% 选址完成", at(2027, 3, 11, 9))
    assert "D1" in say(app, "sun", "反馈 D1 已报送", at(2027, 3, 12, 9))

    # 2027's first ranking covers 2027's tasks only
    run(app, "monthly_ranking", at(2027, 4, 1, 10))
    (row,) = outbox(app, "job:monthly_ranking:2027-03:ranking:broadcast")
    assert "2027-03" in content(row)
    tasks = sheets(app, {"kind": "month", "month": "2027-03"}, at(2027, 4, 1, 11))["任务进度"]
    assert sorted((r[0], r[3]) for r in tasks[1:]) == [
        ("T1", "建成智能制造实训中心"), ("T2", "开展党的二十大精神专题学习"), ("T4", "完成双高校中期自评报告"),
        ("T5", "建设智慧书房")]

    # 2026 stays readable and unchanged
    app.clock.set(at(2027, 4, 2, 9))
    published = say(app, "admin", "排名 2026-11")
    assert "2026-11" in published and "公布" in published
    for line in november:  # the same units, places and scores as broadcast
        rank_unit, score = line.split(" **")[0], line.split("**")[1]
        assert any(p.startswith(rank_unit) and f"{score}分" in p for p in published.splitlines())
    assert "2026年度" in say(app, "admin", "导出 2026年")
    assert sheets(app, {"kind": "year", "year": 2026}, at(2027, 4, 2, 9)) == before


def test_nothing_carried_codes_start_again_and_an_earlier_year_is_refused(app):
    play_2026(app)
    result = campaign_new(app, "2027", "--at", "2027-01-05 10:00", answer="n\n")
    assert result.exit_code == 0, result.output
    assert "结转以上事项到2027年？" in result.output and "未结转" in result.output
    reply = say(app, "admin", "新增任务 机电工程系 1 建设产教融合平台 责任人=li 期限=2027-12-31 开始=2027-03-01",
                at(2027, 2, 20, 9))
    assert "T1" in reply
    assert "建设产教融合平台" in say(app, "li", "任务 T1") and "实训中心" not in say(app, "li", "任务 T1")
    refused = say(app, "zhang", "整改 P1 已清理")  # 2026's P1 was not carried
    assert "没有找到问题“P1”" in refused and "2026年P1属往年考核" in refused
    assert "2026年T3属往年考核" in say(app, "zhao", "汇报 T3 100% 再报")
    assert "属往年" not in say(app, "zhao", "汇报 T9 10% 没有这个任务")
    again = campaign_new(app, "2027", "--carry", "none")
    assert again.exit_code != 0 and "2027年必须晚于当前考核年度 2027年" in again.output


def test_the_admin_page_starts_the_year_and_the_pages_keep_2026_readable(db_url, clock, fake):
    import re

    from bot.wecom.callback import build_asgi
    from conftest import ServerThread
    from test_web import build, signed_in

    app = build(db_url, clock, fake)
    app.config.broadcast.webhook_key = "key-all"
    app.config.ranking.review_hours = 0
    try:
        play_2026(app)
        app.clock.set(at(2027, 1, 5, 10))
        with ServerThread(build_asgi(app)) as server:
            app.config.web.base_url = server.base
            admin = signed_in(server, fake, "admin")
            page = admin.get("/web/admin").text
            assert "当前：2026年，自 2026-03 起考核" in page and "2026年T1、2026年T2、2026年T4" in page
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            refused = admin.post("/web/admin/campaign", data={"csrf": csrf, "year": "2026", "carry": "none"},
                                 follow_redirects=True).text
            assert "未开始新年度" in refused and "当前：2026年" in refused
            done = admin.post("/web/admin/campaign", data={"csrf": csrf, "year": "2027", "carry": "unfinished"},
                              follow_redirects=True).text
            assert "已开始2027年考核" in done and "当前：2027年，自 2027-03 起考核" in done
            li = signed_in(server, fake, "li")
            overview = li.get("/web/").text
            assert 'href="/web/year/2026"' in overview
            year = li.get("/web/year/2026").text  # the latest published month first, the others a click away
            assert "2026-12 排名" in year and 'href="/web/year/2026?month=2026-11"' in year
            year = li.get("/web/year/2026?month=2026-11").text
            assert "2026-11 排名" in year and "通报" in year and "图书馆" in year
            with app.session() as s:
                jd = s.exec(select(Task).where(Task.code == "T1", Task.year == 2026)).one().unit_id
            past = li.get(f"/web/unit/{jd}?year=2026").text
            assert "2026年（往年" in past and "60%" in past
            say(app, "li", "汇报 T1 90% 试运行", at(2027, 3, 10, 9))
            li = signed_in(server, fake, "li")  # (a session lasts [web] session_hours by the app's clock)
            assert "90%" in li.get(f"/web/unit/{jd}").text and "90%" not in li.get(f"/web/unit/{jd}?year=2026").text
    finally:
        app.engine.dispose()
