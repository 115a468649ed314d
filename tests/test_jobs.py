"""The supervision calendar: workday triggers, the six jobs, once per period, catch-up, CLI."""
from __future__ import annotations

import json
import logging
import threading

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlmodel import Session, func, select

from bot.app import Application
from bot.clock import FixedClock
from datetime import timedelta

from bot.config import Config
from conftest import TZ, add_units, at, make_config, seed
from db.month import Month
from db.models import JobRun, Outbox
from jobs import JobQueue
from jobs import calendar as workcal
from jobs.calendar import WorkdayCronTrigger


def trigger(cron: str, workdays_only: bool = True, direction: str = workcal.EARLIER,
            workdays: workcal.Workdays | None = None) -> WorkdayCronTrigger:
    return WorkdayCronTrigger(CronTrigger.from_crontab(cron, timezone=TZ), workdays_only, direction, workdays)


def scheduled(app, name: str, year: int) -> list:
    """Every moment the scheduler fires job `name` in `year`, as APScheduler asks the trigger."""
    t, moments, previous = JobQueue(app).trigger(name), [], None
    while True:
        previous = t.get_next_fire_time(previous, previous or at(year, 1, 1))
        if previous is None or previous.year > year:
            return moments
        moments.append(previous)


@pytest.mark.parametrize("job, now, expected", [
    ("deploy_check", at(2026, 2, 1), at(2026, 2, 14, 9)),   # Feb 20 is Spring Festival: back to Sat 14 (调休 workday)
    ("monthly_prompt", at(2026, 9, 1), at(2026, 9, 20, 9)),   # Sun 20 Sep is an adjusted workday: stays
    ("monthly_prompt", at(2026, 12, 1), at(2026, 12, 18, 9)),  # Sun 20 Dec: Fri 18
    ("escalation", at(2026, 9, 21), at(2026, 9, 24, 17)),  # Mid-autumn Fri 25 Sep: Thu 24
    ("monthly_ranking", at(2026, 4, 2), at(2026, 5, 6, 10)),  # 1 May Labour Day: after the holiday, Wed 6 May
    ("monthly_ranking", at(2026, 9, 2), at(2026, 10, 8, 10)),  # 1 Oct National Day: Thu 8 Oct
    ("monthly_ranking", at(2026, 7, 2), at(2026, 8, 3, 10)),  # Sat 1 Aug: Mon 3 Aug, never Fri 31 Jul
    ("monthly_ranking", at(2025, 12, 2), at(2026, 1, 4, 10)),  # New Year: Sun 4 Jan, an adjusted workday
    ("midyear_review", at(2026, 6, 1), at(2026, 6, 30, 16)),
    ("annual_summary", at(2026, 12, 1), at(2026, 12, 31, 16)),
])
def test_each_job_moves_off_rest_days_its_own_way(app, job, now, expected):
    """Prompts and escalation come before a deadline: the earlier workday. The ranking reports on
    a month that must have ended: the next workday, never the last day of the month it ranks."""
    assert JobQueue(app).trigger(job).get_next_fire_time(None, now) == expected


def test_no_ranking_runs_before_the_month_it_ranks_has_ended(app):
    for moment in scheduled(app, "monthly_ranking", 2026):
        result = JobQueue(app).run_at("monthly_ranking", moment, dry_run=True)
        assert result.base <= moment and str(Month.of(moment)) > result.period, (moment, result.period)


@pytest.mark.parametrize("job", ["deploy_check", "monthly_prompt", "escalation", "monthly_ranking",
                                 "midyear_review", "annual_summary"])
def test_jobs_run_at_does_what_the_scheduler_does_at_that_moment(tmp_path, job):
    """For every fire time in 2026 (and a minute before and an hour after it), `duban jobs run NAME
    --at T --dry-run` runs the period the scheduler runs at T, and says which."""
    from click.testing import CliRunner

    from bot.cli import main

    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n', encoding="utf-8")
    app = Application(make_config(f"sqlite:///{tmp_path / 'd.db'}"), clock=FixedClock(at(2026, 1, 1)))
    app.migrate()
    seed(app)
    q = JobQueue(app)
    fires = scheduled(app, job, 2026)
    assert fires
    for fire in fires:
        for moment in (fire - timedelta(minutes=1), fire, fire + timedelta(hours=1)):
            app.clock.set(moment)
            expected = q.run_at(job, moment, dry_run=True)
            # APScheduler at a fire time calls fire(); at any other moment its last run is the same.
            if moment == fire:
                assert q.fire(job).period == expected.period
            out = CliRunner().invoke(main, ["jobs", "run", job, "--config", str(config), "--dry-run",
                                            "--at", moment.strftime("%Y-%m-%d %H:%M")])
            if expected is None:
                assert out.exit_code == 1 and "还没有到期的运行" in out.output
            else:
                assert f"{job}（{expected.period}，排程 {expected.base:%Y-%m-%d %H:%M}）" in out.output, out.output
    app.engine.dispose()


def test_configured_holidays_patch_a_year_the_library_does_not_know():
    """chinese-calendar knows no 2027 holidays: without help, New Year's Day 2027 counts as a
    workday. [schedule] holidays / workdays patch it."""
    plain = workcal.Workdays()
    assert not plain.knows(2027) and plain(at(2027, 1, 1).date())
    patched = workcal.Workdays(frozenset(Config.model_validate({"schedule": {"holidays": [
        "2027-01-01", "2027-02-06..2027-02-12"], "workdays": ["2027-02-14"]}}).schedule.days("holidays")),
        frozenset([at(2027, 2, 14).date()]))
    assert patched.knows(2027) and not patched(at(2027, 1, 1).date()) and not patched(at(2027, 2, 8).date())
    assert patched(at(2027, 2, 14).date())  # a Sunday made a workday
    t = trigger("0 10 1 4-12,1 *", direction=workcal.LATER, workdays=patched)
    assert t.get_next_fire_time(None, at(2026, 12, 15)) == at(2027, 1, 4, 10)  # Fri 1 Jan off, then the weekend
    t = trigger("0 9 10 2 *", workdays=patched)
    assert t.get_next_fire_time(None, at(2027, 1, 15)) == at(2027, 2, 5, 9)


def test_workdays_only_off_keeps_the_cron_time():
    assert trigger("0 9 20 3-12 *", False).get_next_fire_time(None, at(2026, 12, 1)) == at(2026, 12, 20, 9)


def test_a_year_the_calendar_does_not_know_falls_back_to_weekends_logged_once(caplog):
    workcal._warned.discard(2031)
    with caplog.at_level(logging.DEBUG, logger="duban.jobs"):
        t = trigger("0 9 20 3-12 *")
        assert t.get_next_fire_time(None, at(2031, 4, 1)) == at(2031, 4, 18, 9)  # Sun 20 Apr 2031 -> Fri 18
        assert t.get_next_fire_time(None, at(2031, 5, 1)) == at(2031, 5, 20, 9)
    lines = [r for r in caplog.records if "2031" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.DEBUG]  # (people are told in Chinese: calendar_gaps)


@pytest.fixture
def q(app):
    return JobQueue(app)


def outbox(app, prefix: str = "") -> list[Outbox]:
    with Session(app.engine) as s:
        return [r for r in s.exec(select(Outbox).order_by(Outbox.id)) if r.key.startswith(prefix)]


def content(row: Outbox) -> str:
    return json.loads(row.payload)["content"]


def report(app, userid: str, text: str, when):
    app.clock.set(when)
    return app.handle_message(userid, text, msg_id=f"{userid}-{when.isoformat()}-{text}")


def test_monthly_prompt_lists_what_each_unit_owes_and_mentions_who(app, q):
    report(app, "li", "汇报 T1 20% 方案", at(2026, 3, 10, 9))
    app.handle_message("admin", "督办 机电工程系 2026-03-28 报送建设进度", "d1")
    app.clock.set(at(2026, 3, 20, 9))
    result = q.run("monthly_prompt", at(2026, 3, 20, 9))
    assert result.status == "ran" and result.period == "2026-03"
    rows = {r.target: content(r) for r in outbox(app, "job:monthly_prompt:2026-03")}
    assert set(rows) == {"chat-jd", "key-xx", "chat-lib"}  # the office owes nothing
    jd = rows["chat-jd"]
    assert "T2" in jd and "T1" not in jd.split("待反馈")[0] and "D1" in jd and "@张三" in jd
    xx = rows["key-xx"]
    assert "T3" in xx and "T4" in xx and "已逾期" in xx
    assert "<@zhao>" in xx and "<@wang>" in xx  # robot markdown mentions by userid


def test_escalation_goes_to_admins_and_firmer_to_late_units_only(app, q):
    for user, code in (("li", "T1"), ("zhang", "T2"), ("sun", "T5")):
        report(app, user, f"汇报 {code} 30% 推进中", at(2026, 3, 24, 9))
    app.clock.set(at(2026, 3, 25, 17))
    q.run("escalation", at(2026, 3, 25, 17))
    rows = outbox(app, "job:escalation:2026-03")
    assert [(r.channel, r.target) for r in rows] == [("app", "admin"), ("webhook", "key-xx")]
    assert "信息工程系" in content(rows[0]) and "赵六" in content(rows[0]) and "机电工程系" not in content(rows[0])
    assert "立即汇报" in content(rows[1])


def test_ranking_job_broadcasts_last_month_with_scores_tiers_and_trend(app, q):
    app.config.broadcast.webhook_key = "key-all"
    app.config.ranking.review_hours = 0  # no review window: published at once
    report(app, "li", "汇报 T1 30% a", at(2026, 3, 10, 9))
    report(app, "zhang", "汇报 T2 40% b", at(2026, 3, 11, 9))
    report(app, "zhao", "汇报 T3 50% c", at(2026, 3, 26, 9))  # after the deadline day
    app.clock.set(at(2026, 4, 1, 10))
    result = q.run("monthly_ranking", at(2026, 4, 1, 10))
    assert result.period == "2026-03"
    (row,) = outbox(app, "job:monthly_ranking:2026-03:ranking:broadcast")  # the picture follows (test_chart.py)
    assert (row.channel, row.target) == ("webhook", "key-all")
    text = content(row)
    assert "2026-03" in text
    # 机电 100 (all on time, on plan); 信息 35 (T3 late, T4 overdue −5); 图书馆 20 (supervision only);
    # 党政办公室 has no task: 不参评, listed apart after the ranked units, never ranked.
    order = ["机电工程系", "信息工程系", "图书馆", "不参评（本月无在办任务）：党政办公室"]
    assert sorted(order, key=text.index) == order
    assert "**100.0**" in text and "**35.0**" in text and "党政办公室 **" not in text
    assert "先进" in text and "滞后" in text and "新" not in text  # March, the first month: nothing to compare
    assert "<font color=\"info\">先进</font> —｜" in text
    # the parts of each score, its overdue tasks and its lights, and the formula from [ranking]
    assert "汇报100% 进度100% 督办100%｜🟢2 🟡0 🔴0" in text
    assert "逾期1项｜🟢1 🟡0 🔴1" in text
    assert "得分 = 汇报率×40 + 进度×40 + 督办×20 − 逾期任务×5" in text
    # April: the library overtakes and the trend shows it
    report(app, "sun", "汇报 T5 40% d", at(2026, 4, 5, 9))
    app.clock.set(at(2026, 5, 1, 10))
    q.run("monthly_ranking", at(2026, 5, 1, 10))
    april = content(outbox(app, "job:monthly_ranking:2026-04")[0])
    assert "图书馆" in april.splitlines()[2] and "↑2" in april.splitlines()[2]


def test_a_period_runs_once_however_often_it_is_started(app, q):
    first = q.run("monthly_prompt", at(2026, 3, 20, 9))
    second = JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 11))
    assert (first.status, second.status) == ("ran", "already")
    assert len(outbox(app, "job:monthly_prompt")) == first.messages == 3


def test_dry_run_prints_and_sends_and_records_nothing(app, q):
    result = q.run("monthly_prompt", at(2026, 3, 20, 9), dry_run=True)
    assert result.status == "dry-run" and len(result.rendered) == 3
    assert any("T4" in text for _, text in result.rendered)
    with Session(app.engine) as s:
        assert s.exec(select(func.count()).select_from(Outbox)).one() == 0
        assert s.exec(select(func.count()).select_from(JobRun)).one() == 0


def test_a_missed_run_is_caught_up_within_the_grace_period_only(app):
    app.clock.set(at(2026, 3, 20, 15))  # six hours after 09:00: caught up
    ran = {r.job: r.period for r in JobQueue(app).catch_up()}
    assert ran == {"monthly_prompt": "2026-03", "item_watch": "2026-03-20"}  # (the daily 督办 watch, 08:30)
    assert JobQueue(app).catch_up() == []  # already done
    app.clock.set(at(2026, 3, 26, 18))  # escalation was 25th 17:00: 25 h ago, beyond 24 h
    assert [r.job for r in JobQueue(app).catch_up()] == ["item_watch"]


def test_a_disabled_job_is_neither_scheduled_nor_caught_up(db_url, clock):
    app = Application(make_config(db_url, schedule={"jobs": {"monthly_prompt": {"enabled": False}}}), clock=clock)
    app.migrate()
    seed(app)
    app.clock.set(at(2026, 3, 20, 15))
    q = JobQueue(app)
    assert [r.job for r in q.catch_up()] == ["item_watch"]
    rows = {name: (enabled, nxt) for name, enabled, nxt, _ in q.next_runs()}
    assert rows["monthly_prompt"] == (False, None) and rows["escalation"][1] == at(2026, 3, 25, 17)


def test_the_scheduler_fires_the_right_period_with_a_deliberate_grace(app):
    q = JobQueue(app)
    q.start()
    try:
        jobs = {j.id: j for j in q.scheduler.get_jobs()}
        assert set(jobs) == {"deploy_check", "monthly_prompt", "escalation", "monthly_ranking", "midyear_review",
                             "annual_summary", "item_watch", "daily", "publish", "keep_figures"}
        assert jobs["monthly_prompt"].misfire_grace_time == 24 * 3600 and jobs["monthly_prompt"].coalesce
        assert jobs["keep_figures"].trigger.interval == timedelta(minutes=1)  # 总览's figures (tests/test_months.py)
    finally:
        q.shutdown()
    app.clock.set(at(2026, 5, 6, 10, 0, 3))  # the moved ranking fire time (after May Day), a few seconds late
    result = q.fire("monthly_ranking")
    assert (result.status, result.period) == ("ran", "2026-04")


def test_ranking_of_300_units_is_split_within_limits_and_loses_no_unit(app, q):
    add_units(app, 300, "第{:03d}党支部")
    app.config.ranking.review_hours = 0
    app.config.broadcast.chat_id = "chat-all"
    app.clock.set(at(2026, 4, 1, 10))
    q.run("monthly_ranking", at(2026, 4, 1, 10))
    rows = outbox(app, "job:monthly_ranking:2026-03:ranking:broadcast")
    assert len(rows) > 1 and all(len(content(r).encode()) <= 4096 for r in rows)
    lines = [line for r in rows for line in content(r).splitlines()]
    for i in range(300):
        assert sum(f"第{i:03d}党支部" in line for line in lines) == 1
    ranks = [int(line.split(".")[0]) for line in lines if line[:1].isdigit()]
    assert ranks == list(range(1, 304))  # 党政办公室 has no task: 不参评


def test_deploy_check_names_the_empty_lists(app, q):
    app.clock.set(at(2026, 2, 14, 9))
    q.run("deploy_check", at(2026, 2, 20, 9))
    texts = {r.target: content(r) for r in outbox(app, "job:deploy_check:2026-02-20")}
    assert "问题清单" in texts["chat-jd"] and "任务清单" not in texts["chat-jd"]
    assert "任务清单" in texts["key-office"] and "责任清单" in texts["key-office"]


def test_midyear_review_and_annual_summary_with_the_workbook(app, q, fake):
    import io

    from openpyxl import load_workbook

    from bot.cli import _worker
    from bot.clock import SystemClock

    app.config.broadcast.chat_id = "chat-all"
    for month in range(3, 13):
        report(app, "li", f"汇报 T1 {month * 8}% 第{month}月", at(2026, month, 10, 9))
    app.clock.set(at(2026, 6, 30, 16))
    q.run("midyear_review", at(2026, 6, 30, 16))
    mid = outbox(app, "job:midyear_review:2026-H1")
    assert {(r.channel, r.target) for r in mid} == {("appchat", "chat-all"), ("app", "admin")}
    text = content(mid[0])
    for line in ("深学争优", "敢为争先", "实干争效", "机电工程系", "3月、4月、5月、6月"):
        assert line in text

    app.clock.set(at(2026, 12, 31, 16))
    q.run("annual_summary", at(2026, 12, 31, 16))
    rows = outbox(app, "job:annual_summary:2026")
    assert {(r.channel, r.target, r.msgtype) for r in rows} == {
        ("appchat", "chat-all", "markdown"), ("app", "admin", "markdown"), ("app", "admin", "file")}
    # deliver through the fake WeCom and open the workbook the admin received
    app.config.wecom.__dict__.update(corp_id="wwfakecorp", secret="fakesecret", api_base=fake.base,
                                     timeout_seconds=2.0)
    app.clock = SystemClock()
    worker = _worker(app)
    worker.drain(10)
    worker.stop()
    assert {r.status for r in outbox(app)} == {"sent"}, [(r.key, r.last_error) for r in outbox(app)]
    (file_msg,) = [d for d in fake.deliveries("message/send") if d.body["msgtype"] == "file"]
    name, data = fake.state.uploads[file_msg.body["file"]["media_id"]]
    assert name == "争先督办-2026年度考核.xlsx"
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["2026年度考核"] + [f"{m}月" for m in range(3, 13)] + ["亮点"]
    table = list(wb["2026年度考核"].iter_rows(min_row=2, values_only=True))
    assert table[0][1] == "机电工程系" and len(table) == 4
    # the 等次 column of every ranking sheet is coloured by tier: 先进 green, 滞后 red, over all its rows
    for ws in wb.worksheets[:-1]:  # the last is 亮点
        rules = {(str(rng.sqref), rule.formula[0], rule.dxf.fill.fgColor.rgb[-6:])
                 for rng in ws.conditional_formatting for rule in rng.rules}
        span = f"D2:D{ws.max_row}"
        assert rules == {(span, '"先进"', "C6EFCE"), (span, '"滞后"', "FFC7CE")}, ws.title


def test_two_replicas_on_one_postgres_run_a_period_once(pg_url):
    apps = []
    for _ in range(2):
        app = Application(make_config(pg_url), clock=FixedClock(at(2026, 3, 20, 9)))
        app.migrate()
        apps.append(app)
    seed(apps[0])
    barrier = threading.Barrier(4)
    results = []

    def replica(app):
        barrier.wait()
        results.append(JobQueue(app).run("monthly_prompt", at(2026, 3, 20, 9)).status)

    threads = [threading.Thread(target=replica, args=(apps[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["already", "already", "already", "ran"]
    assert len(outbox(apps[0], "job:monthly_prompt")) == 3
    for app in apps:
        app.engine.dispose()


def test_a_run_before_the_roster_is_imported_is_not_claimed(db_url, clock):
    """`duban serve` started on an empty database catches up the month's escalation: it finds no
    roster, sends nothing and leaves the period unclaimed, so the run after the import happens."""
    app = Application(make_config(db_url), clock=clock)
    app.migrate()
    q = JobQueue(app)
    try:
        clock.set(at(2026, 3, 25, 17, 30))
        assert [r.status for r in q.catch_up() if r.job == "escalation"] == []
        assert q.run("escalation", at(2026, 3, 25, 17)).status == "no-roster"
        with Session(app.engine) as s:
            assert s.exec(select(func.count()).select_from(JobRun)).one() == 0
        assert not q.keep_figures()  # 总览's figures: nothing to count either, nor to keep
        seed(app)
        result = q.run("escalation", at(2026, 3, 25, 17))
        assert result.status == "ran" and result.messages > 0
    finally:
        app.engine.dispose()


def test_a_forced_run_queues_only_what_the_first_run_did_not(app, q):
    """`jobs run NAME --force` re-runs a claimed period: a unit added since gets its prompt, and
    the units already prompted are not prompted twice (the period's idempotency keys)."""
    first = q.run("monthly_prompt", at(2026, 3, 20, 9))
    assert first.status == "ran" and first.messages > 0
    assert q.run("monthly_prompt", at(2026, 3, 20, 9)).status == "already"
    add_units(app, 2, "新单位{}")
    again = q.run("monthly_prompt", at(2026, 3, 20, 9), force=True)
    assert again.status == "ran" and again.messages == 2
    rows = outbox(app, "job:monthly_prompt:2026-03:")
    assert len(rows) == first.messages + 2 and len({r.key for r in rows}) == len(rows)
    with Session(app.engine) as s:
        assert s.exec(select(JobRun)).one().messages == first.messages + 2


def test_a_coming_year_without_holiday_data_is_flagged_once(app, q, tmp_path):
    """A year chinese-calendar does not know is named in `jobs list` and at start-up as soon as a
    job's next run falls in it, and told to the admins once, from December; patched in config, it
    is not."""
    from click.testing import CliRunner

    from bot.cli import main

    app.clock.set(at(2026, 11, 30, 9))
    assert q.calendar_gaps() == [2027]  # deploy_check's next run is in February 2027
    assert q.warn_admins_of_calendar_gaps() == 0
    app.clock.set(at(2026, 12, 1, 9))
    assert q.warn_admins_of_calendar_gaps() == 1 and q.warn_admins_of_calendar_gaps() == 0  # once
    assert "2027" in content(outbox(app, "calendar:2027")[0])
    patched = JobQueue(Application(make_config(str(app.engine.url), schedule={"holidays": ["2027-01-01"]}),
                                   engine=app.engine, clock=app.clock))
    assert patched.calendar_gaps() == [] and patched.warn_admins_of_calendar_gaps() == 0
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n', encoding="utf-8")
    assert "没有 2027 年的法定节假日数据" in CliRunner().invoke(main, ["jobs", "list", "--config", str(config)]).output
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "d.db"}"\n[schedule]\nholidays = ["2027-01-01"]\n',
                      encoding="utf-8")
    assert "节假日数据" not in CliRunner().invoke(main, ["jobs", "list", "--config", str(config)]).output


def test_the_formula_in_every_text_comes_from_the_ranking_settings(db_url, clock):
    app = Application(make_config(db_url, broadcast={"chat_id": "all"}, ranking={
        "weight_report": 50, "weight_progress": 30, "weight_supervision": 20, "overdue_penalty": 10,
        "review_hours": 0}), clock=clock)
    app.migrate()
    seed(app)
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    formula = "得分 = 汇报率×50 + 进度×30 + 督办×20 − 逾期任务×10"
    assert formula in content(outbox(app, "job:monthly_ranking")[0])
    assert formula in app.handle_message("admin", "排名 2026-03", "f1")
    app.engine.dispose()


def test_a_supervision_item_counts_in_the_month_its_deadline_falls_in(app, q):
    """Issued 03-28, due 04-03, never answered: not in March's score, late in April's; the export
    marks an item not yet due as 未到期, not as late."""
    import io

    from openpyxl import load_workbook

    from bot.excel.export import month_workbook

    app.config.broadcast.chat_id = "all"
    app.config.ranking.review_hours = 0
    report(app, "admin", "督办 机电工程系 2026-04-03 报送实训中心验收方案", at(2026, 3, 28, 9))
    for who, code in (("li", "T1"), ("zhang", "T2")):
        report(app, who, f"汇报 {code} 100% 完成", at(2026, 3, 20, 9))
        report(app, who, f"汇报 {code} 100% 完成", at(2026, 4, 20, 9))
    app.clock.set(at(2026, 4, 2, 12))
    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(month_workbook(s, app.config, Month(2026, 4), app.clock.now())))
    assert dict(zip(*wb["督办"].iter_rows(max_row=2, values_only=True)))["按时"] == "未到期"
    app.clock.set(at(2026, 4, 1, 10))
    q.run("monthly_ranking", at(2026, 4, 1, 10))
    march = content(outbox(app, "job:monthly_ranking:2026-03")[0])
    assert "机电工程系 **100.0**" in march and "督办100%" in march
    app.clock.set(at(2026, 5, 6, 10))
    q.run("monthly_ranking", at(2026, 5, 1, 10))
    april = content(outbox(app, "job:monthly_ranking:2026-04")[0])
    assert "机电工程系 **80.0**" in april and "督办0%" in april
    with Session(app.engine) as s:
        wb = load_workbook(io.BytesIO(month_workbook(s, app.config, Month(2026, 4), app.clock.now())))
    assert dict(zip(*wb["督办"].iter_rows(max_row=2, values_only=True)))["按时"] == "否"


def test_a_back_dated_run_lists_only_items_issued_by_then(app, q):
    """`jobs run monthly_prompt --at 2026-03-20` after an item was issued in April does not list it."""
    report(app, "admin", "督办 机电工程系 2026-04-30 四月下发的事项", at(2026, 4, 10, 9))
    app.clock.set(at(2026, 4, 20, 9))
    assert any("四月下发的事项" in text for _, text in q.run_at("monthly_prompt", app.clock.now(), dry_run=True).rendered)
    app.clock.set(at(2026, 3, 20, 9))
    dry = q.run_at("monthly_prompt", app.clock.now(), dry_run=True)
    assert dry.period == "2026-03" and all("四月下发的事项" not in text for _, text in dry.rendered)
