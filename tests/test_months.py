"""总览's numbers (bot/campaign/months.py): the trend's finished months, kept in the database, and the
running month's ranking so far agree with the scoring module's own count of each month, when they are
counted first, read back, checked again, and after what changes a finished month (a late 办结, a
task added to it, a report timed in it, other ranking settings); counted by the scheduler
(months.keep) and read by the pages between its runs, or by a page when nothing usable is kept."""
from __future__ import annotations

import itertools
from sqlmodel import Session, select

from bot.app import Application
from bot.campaign import digest
from bot.campaign import months as bot_months
from bot.web import pages
from conftest import at, make_config
from jobs import JobQueue
from db.models import MonthFigures, RankingSoFar
from db.month import Month

_ids = itertools.count(1)
VIEWERS = ("admin", "zhang", "wang", "sun")  # the mean over the units, 机电工程系, 信息工程系, 图书馆


def say(app, userid: str, words: str, when=None) -> str:
    if when is not None:
        app.clock.set(when)
    return app.handle_message(userid, words, msg_id=f"m{next(_ids)}")


def overview(app, userid: str, rankings: pages.Rankings | None = None) -> dict:
    """总览's data for `userid`, from `rankings` (a process's; a new one: a process started afresh)."""
    with Session(app.engine) as s:
        who = pages.viewer(s, userid)
        return pages.overview(s, app, who, app.clock.now(), rankings or pages.Rankings())


def counted(app, month: Month) -> list:
    """The month's ranking as the scoring module counts it (the broadcast's, 排名's)."""
    with Session(app.engine) as s:
        return digest.rank(s, app.config, month, app.clock.now())


def unit_id(app, userid: str) -> int | None:
    """The viewer's unit for the trend (None: an admin sees the mean over the units)."""
    with Session(app.engine) as s:
        who = pages.viewer(s, userid)
        return None if who.admin else who.unit.id


def assert_agrees(app, data: dict, userid: str) -> None:
    """Every month of the page's trend is the scoring module's count of that month, to the last bit,
    and the running month's ranking (score, rank, last month's rank) too."""
    trend, unit = [], unit_id(app, userid)
    month = pages.this_month(app, app.clock.now())
    months = [month]
    while len(months) < pages.TREND_MONTHS and months[0].prev() >= Month(month.year, 3):  # from March
        months.insert(0, months[0].prev())
    assert months == bot_months.trend(Session(app.engine), app.config, month)
    for m in months:
        trend.append(bot_months.Figures.of(counted(app, m)).point(None if unit is None else {unit}))
    assert list(zip(data["trend_scores"], data["trend_rates"])) == trend
    running = [(sc.unit.id, sc.score, sc.report_rate, sc.rank, sc.tier, sc.prev_rank, sc.lights)
               for sc in counted(app, month)]
    assert [(sc.unit.id, sc.score, sc.report_rate, sc.rank, sc.tier, sc.prev_rank, dict(sc.lights))
            for sc in (data["preview"] or [])] == (running if unit is None else [])
    if unit is not None:
        mine = next(sc for sc in counted(app, month) if sc.unit.id == unit)
        assert (data["mine"].score, data["mine"].rank) == (mine.score, mine.rank)


def history(app) -> None:
    """Reports (some late, some missing), a 督办 answered on time and one late, March to May."""
    say(app, "li", "汇报 T1 20% 三月进展", at(2026, 3, 10, 9))
    say(app, "zhang", "汇报 T2 30% 三月进展", at(2026, 3, 27, 9))  # after the 25th: late
    say(app, "zhao", "汇报 T3 40% 三月进展", at(2026, 3, 12, 9))
    say(app, "admin", "督办 信息工程系 2026-03-25 报送自评材料", at(2026, 3, 13, 9))
    say(app, "wang", "反馈 D1 已报送", at(2026, 3, 20, 9))
    say(app, "admin", "办结 D1", at(2026, 3, 21, 9))
    say(app, "li", "汇报 T1 45% 四月进展", at(2026, 4, 8, 9))
    say(app, "sun", "汇报 T5 30% 四月进展", at(2026, 4, 9, 9))
    say(app, "admin", "督办 机电工程系 2026-04-20 报送实训中心方案", at(2026, 4, 10, 9))
    say(app, "zhang", "反馈 D2 已报送", at(2026, 4, 28, 9))
    say(app, "admin", "办结 D2", at(2026, 4, 29, 9))
    say(app, "li", "汇报 T1 70% 五月进展", at(2026, 5, 6, 9))
    say(app, "li", "修改 T1 75% 五月进展（更正）", at(2026, 5, 6, 11))
    say(app, "zhao", "汇报 T3 100% 完成", at(2026, 5, 7, 9))


def test_the_trend_and_the_running_ranking_agree_with_scoring_counted_kept_and_checked(app):
    history(app)
    app.clock.set(at(2026, 6, 15, 10))
    first = pages.Rankings()
    for userid in VIEWERS:  # counted, then kept
        assert_agrees(app, overview(app, userid, first), userid)
    with Session(app.engine) as s:
        kept = sorted(f.month for f in s.exec(select(MonthFigures)))
        assert s.exec(select(RankingSoFar.month)).all() == ["2026-06"]
    assert kept == [f"2026-{m:02d}" for m in range(3, 6)]  # the campaign's months before June
    for userid in VIEWERS:  # read back by a process started afresh
        assert_agrees(app, overview(app, userid), userid)
    app.clock.set(at(2026, 6, 15, 10, 11))  # their inputs checked again, the running month counted again
    for userid in VIEWERS:
        assert_agrees(app, overview(app, userid), userid)
    assert overview(app, "admin")["trend_scores"][-4:-1] != [None] * 3  # March to May have figures


def test_a_finished_month_changed_later_is_counted_again(app):
    history(app)
    say(app, "admin", "督办 图书馆 2026-05-25 报送开放时间方案", at(2026, 5, 15, 9))
    say(app, "sun", "反馈 D3 已报送", at(2026, 5, 20, 9))  # on time, but not accepted in May
    app.clock.set(at(2026, 6, 2, 10))
    before = overview(app, "sun")
    assert_agrees(app, before, "sun")

    say(app, "admin", "办结 D3", at(2026, 6, 2, 11))  # accepted in June: May's 督办 is on time after all
    app.clock.set(at(2026, 6, 2, 11, 11))  # kept months are checked every ten minutes (by a page: fifteen)
    after = overview(app, "sun")
    assert after["trend_scores"][-2] > before["trend_scores"][-2]
    assert_agrees(app, after, "sun")

    # a task added to the past (as an import would): every month since it started changes
    say(app, "admin", "新增任务 图书馆 实干争效 完善读者服务制度 责任人=sun 期限=2026-12-31 开始=2026-03-01",
        at(2026, 6, 3, 9))
    app.clock.set(at(2026, 6, 3, 9, 11))
    moved = overview(app, "sun")
    assert moved["trend_rates"][-4:-1] != after["trend_rates"][-4:-1]
    for userid in VIEWERS:
        assert_agrees(app, overview(app, userid), userid)

    # a report timed in a finished month (a clock set back): seen at the next reading, not ten minutes later
    say(app, "zhang", "汇报 T2 90% 五月补报", at(2026, 5, 30, 9))
    app.clock.set(at(2026, 6, 3, 9, 12, 30))  # the ranking so far is a minute old, the months checked at 9:11
    for userid in VIEWERS:
        assert_agrees(app, overview(app, userid), userid)

    # other ranking settings: a server started with them counts every month again
    other = Application(make_config(app.config.database.url, ranking={
        "weight_report": 60, "weight_progress": 30, "weight_supervision": 10}), clock=app.clock)
    try:
        for userid in VIEWERS:
            assert_agrees(other, overview(other, userid), userid)
        assert overview(other, "admin")["trend_scores"] != overview(app, "admin")["trend_scores"]
    finally:
        other.engine.dispose()


def kept_at(app) -> tuple:
    """(when the ranking so far was counted, when each kept month was counted and last checked)."""
    with Session(app.engine) as s:
        return (s.exec(select(RankingSoFar.computed_at)).one(),
                {f.month: (f.computed_at, f.checked_at) for f in s.exec(select(MonthFigures))})


def test_the_scheduler_keeps_the_figures_and_a_page_between_its_runs_reads_them(app):
    history(app)
    q = JobQueue(app)
    app.clock.set(at(2026, 5, 20, 10))
    assert q.keep_figures()  # the scheduler's run: the running month's ranking and the campaign's months before
    counted = kept_at(app)
    assert counted[0] == app.clock.now() and sorted(counted[1]) == (
        [f"2026-{m:02d}" for m in range(3, 5)])
    for userid in VIEWERS:  # read back, by processes started afresh, and nothing counted by them
        assert_agrees(app, overview(app, userid), userid)
    assert kept_at(app) == counted

    say(app, "sun", "汇报 T5 60% 五月进展", at(2026, 5, 20, 10, 0, 30))
    app.clock.set(at(2026, 5, 20, 10, 0, 40))
    assert not q.keep_figures()  # counted 40 s ago (by another replica's scheduler, say): left as it is
    app.clock.set(at(2026, 5, 20, 10, 3))  # a page between runs (the scheduler a little late): the kept ranking
    stale = overview(app, "sun")
    assert kept_at(app) == counted
    with Session(app.engine) as s:
        kept = digest.rank(s, app.config, Month(2026, 5), at(2026, 5, 20, 10))
        now = digest.rank(s, app.config, Month(2026, 5), app.clock.now())
    library = {unit_id(app, "sun")}
    assert (stale["trend_scores"][-1], stale["trend_rates"][-1]) == bot_months.Figures.of(kept).point(library)
    assert bot_months.Figures.of(kept).point(library) != bot_months.Figures.of(now).point(library)
    assert q.keep_figures()  # its next run: counted again, with the report
    assert kept_at(app)[0] == app.clock.now()
    assert_agrees(app, overview(app, "sun"), "sun")

    app.clock.set(at(2026, 5, 20, 10, 11))  # ten minutes on: the kept months are checked (and unchanged)
    assert q.keep_figures()
    assert all(checked == app.clock.now() and computed == counted[1][m][0]
               for m, (computed, checked) in kept_at(app)[1].items())
    for userid in VIEWERS:
        assert_agrees(app, overview(app, userid), userid)


def test_without_the_scheduler_a_page_counts_what_is_not_kept_or_kept_too_long_ago(app):
    history(app)
    app.clock.set(at(2026, 5, 20, 10))
    assert_agrees(app, overview(app, "admin"), "admin")  # nothing kept: counted in the request, and kept
    assert kept_at(app)[0] == app.clock.now() and len(kept_at(app)[1]) == 2  # March and April
    say(app, "sun", "汇报 T5 60% 五月进展", at(2026, 5, 20, 10, 2))
    app.clock.set(at(2026, 5, 20, 10, 4, 59))  # kept less than months.KEPT_FOR ago: read, not counted
    overview(app, "sun")
    assert kept_at(app)[0] == at(2026, 5, 20, 10)
    app.clock.set(at(2026, 5, 20, 10, 5, 1))  # no scheduler keeps it: counted again by the page, with the report
    assert_agrees(app, overview(app, "sun"), "sun")
    assert kept_at(app)[0] == app.clock.now()


def test_the_month_just_ended_is_kept_provisionally_until_it_has_settled(app):
    history(app)
    q = JobQueue(app)
    app.clock.set(at(2026, 6, 1, 0, 3))  # May ended three minutes ago: a late report may still be on its way
    for userid in VIEWERS:  # the first minute of June, before the scheduler's run: counted in the request
        assert_agrees(app, overview(app, userid), userid)
    assert kept_at(app)[1]["2026-05"][0] == app.clock.now()  # kept, but provisionally
    app.clock.set(at(2026, 6, 1, 0, 4))
    assert q.keep_figures()  # counted again by the scheduler until it has settled
    assert kept_at(app)[1]["2026-05"][0] == app.clock.now()
    app.clock.set(at(2026, 6, 1, 0, 5))
    counted = kept_at(app)
    for userid in VIEWERS:  # the pages read the provisional figures
        assert_agrees(app, overview(app, userid), userid)
    assert kept_at(app) == counted
    app.clock.set(at(2026, 6, 1, 0, 11))
    assert q.keep_figures()
    assert kept_at(app)[1]["2026-05"][0] == app.clock.now()  # settled: kept for good
    app.clock.set(at(2026, 6, 1, 0, 12))
    assert q.keep_figures()
    assert kept_at(app)[1]["2026-05"][0] == at(2026, 6, 1, 0, 11)
    for userid in VIEWERS:
        assert_agrees(app, overview(app, userid), userid)
