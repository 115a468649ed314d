"""Scheduled work. JobQueue wraps APScheduler behind a narrow interface (like python-telegram-bot's):

- every job's cron comes from config.toml and moves to the previous workday when workdays_only;
- a run is claimed in the database as (job, period) in the same transaction that puts its
  messages in the outbox, so each period runs once however many processes or restarts;
- on start, a run missed while down is caught up if it is within the grace period.

Besides the configured jobs, housekeeping on intervals, in every replica: publishing rankings whose
review window ended (every 5 minutes), 总览's figures for the pages (every minute) and pruning (daily).
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ContextManager, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.clock import Clock
from bot.config import Config
from bot.render import Renderer
from bot import targets
from bot.campaign import months, release
from bot.reply import Push, Target
from db import queries
from db.month import Month
from db.session import outage, unavailable
from jobs.calendar import Workdays, WorkdayCronTrigger
from jobs.definitions import JOBS

log = logging.getLogger("duban.jobs")


@dataclass
class RunResult:
    job: str
    period: str
    base: datetime
    status: str  # "ran" | "already" | "no-roster" | "dry-run"
    pushes: list[Push] = field(default_factory=list)
    rendered: list[tuple[str, str]] = field(default_factory=list)  # (target, text) for a dry run
    messages: int = 0


class Host(Protocol):
    """What the jobs need of the application that runs them (bot/app.py's Application)."""

    config: Config
    clock: Clock
    renderer: Renderer
    engine: Engine  # months.keep reads in a session of its own, as the pages do

    def session(self) -> ContextManager[Session]: ...

    def enqueue_push(self, s: Session, push: Push, key: str) -> int: ...


class JobQueue:
    def __init__(self, app: Host):
        self.app = app
        self.tz = app.config.schedule.tz
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        schedule = app.config.schedule
        self.workdays = Workdays(schedule.days("holidays"), schedule.days("workdays"))
        self.scheduler: BackgroundScheduler | None = None

    # ------------------------------------------------------------ schedule

    def trigger(self, name: str) -> WorkdayCronTrigger:
        schedule = self.app.config.schedule
        return WorkdayCronTrigger(CronTrigger.from_crontab(schedule.job(name).cron, timezone=self.tz),
                                  schedule.workdays_only, JOBS[name].moves, self.workdays)

    def enabled(self) -> list[str]:
        return [n for n in JOBS if self.app.config.schedule.job(n).enabled]

    def next_runs(self, now: datetime | None = None) -> list[tuple[str, bool, datetime | None, str]]:
        """(job, enabled, next run in local time, cron) for every job."""
        now = (now or self.app.clock.now()).astimezone(self.tz)
        out = []
        for name in JOBS:
            cfg = self.app.config.schedule.job(name)
            nxt = self.trigger(name).get_next_fire_time(None, now) if cfg.enabled else None
            out.append((name, cfg.enabled, nxt, cfg.cron))
        return out

    def planned(self, name: str, nxt: datetime) -> tuple[datetime, str] | None:
        """For a run moved off a rest day: (the time its cron gave, EARLIER or LATER); else None."""
        base = self.trigger(name).base_of(nxt)
        return (base, JOBS[name].moves) if base is not None and base != nxt else None

    # ------------------------------------------------------------ running

    def run(self, name: str, base: datetime, dry_run: bool = False, force: bool = False) -> RunResult:
        """Run job `name` for the period its (local) base moment falls in, as of the app clock.
        `force`: run a period that already ran again; only messages not queued then are added."""
        job = JOBS[name]
        base = base.astimezone(self.tz)
        period = job.period(base)
        now = self.app.clock.now()
        if dry_run:
            with self.app.session() as s:
                pushes = job.build(s, self.app.config, base, now)
                rendered = [(str(p.target), self.app.renderer.render(p.template, channel=p.target.channel, **p.data)
                             if p.file is None else f"[文件] {p.filename}") for p in pushes]
                s.rollback()
            return RunResult(name, period, base, "dry-run", pushes, rendered)
        with self.app.session() as s:
            if not queries.all_units(s):
                # Nothing to run for yet (a first start before the roster import): leave the period
                # unclaimed, so the run after the import still happens.
                log.warning("job %s for %s: no units in the roster, not run", name, period)
                return RunResult(name, period, base, "no-roster")
            claimed = queries.claim_job_run(s, name, period, base, now, self.identity)
            if not claimed and not force:
                return RunResult(name, period, base, "already")
            pushes = job.build(s, self.app.config, base, now)
            # The keys are the period's: a forced run adds only what the first run did not queue.
            count = sum(self.app.enqueue_push(s, p, f"job:{name}:{period}:{p.key}") for p in pushes)
            run = queries.get_job_run(s, name, period)
            run.finished_at, run.messages = self.app.clock.now(), run.messages + count
            s.add(run)
        log.info("job %s for %s: %d messages queued", name, period, count)
        return RunResult(name, period, base, "ran", pushes, messages=count)

    def due(self, name: str) -> datetime | None:
        """The scheduled (base) moment a run of `name` fired now stands for."""
        pair = self.trigger(name).last_before(self.app.clock.now().astimezone(self.tz) + timedelta(seconds=1))
        return None if pair is None else pair[0]

    def run_at(self, name: str, moment: datetime, dry_run: bool = False, force: bool = False) -> RunResult | None:
        """What the scheduler does at `moment`: the latest run of `name` due at or before it (None:
        none is). `duban jobs run NAME --at T` and APScheduler's fire both come through here."""
        pair = self.trigger(name).last_before(moment.astimezone(self.tz))
        return None if pair is None else self.run(name, pair[0], dry_run=dry_run, force=force)

    def fire(self, name: str) -> RunResult | None:
        """Called by APScheduler at a fire time (a little late, at worst)."""
        return self.run_at(name, self.app.clock.now() + timedelta(seconds=1))

    def catch_up(self) -> list[RunResult]:
        """Run what was missed while down, if within the grace period; run()'s claim skips what
        already ran. Returns the runs that happened now."""
        now = self.app.clock.now().astimezone(self.tz)
        grace = timedelta(hours=self.app.config.schedule.grace_hours)
        results = []
        for name in self.enabled():
            pair = self.trigger(name).last_before(now)
            if pair is None or now - pair[1] > grace:
                continue
            try:
                result = self.run(name, pair[0])
            except Exception:  # the bot starts all the same; the other jobs still catch up
                log.exception("catching up job %s for %s failed", name, JOBS[name].period(pair[0]))
                continue
            if result.status == "ran":
                log.info("caught up %s scheduled for %s", name, pair[1])
                results.append(result)
        self._publish_logged()  # a review window that ended while the bot was down
        return results

    # ------------------------------------------------------------ APScheduler

    def start(self) -> None:
        grace = int(self.app.config.schedule.grace_hours * 3600)
        self.scheduler = BackgroundScheduler(
            timezone=self.tz,
            # A run delayed by a busy process is still wanted within the grace period (APScheduler's
            # default grace is one second); several missed fire times collapse into one run.
            job_defaults={"misfire_grace_time": grace or None, "coalesce": True, "max_instances": 1},
        )
        for name in self.enabled():
            self.scheduler.add_job(self._fire_logged, self.trigger(name), args=[name], id=name, name=name)
        self.scheduler.add_job(self._daily_logged, CronTrigger(hour=3, minute=17, timezone=self.tz), id="daily")
        self.scheduler.add_job(self._publish_logged, IntervalTrigger(minutes=5, timezone=self.tz), id="publish")
        if self.app.config.web.enabled:  # 总览's figures (until its first run, the pages count what is not kept)
            self.scheduler.add_job(self._keep_logged, IntervalTrigger(seconds=months.KEEP_EVERY.total_seconds(),
                                                                      timezone=self.tz), id="keep_figures")
        self.scheduler.start()

    def publish_due(self) -> list[str]:
        """Publish the rankings whose review window has ended and that nobody held (with
        [ranking] auto_publish). Runs every few minutes and on start; each month goes out once."""
        if not self.app.config.ranking.auto_publish:
            return []
        now, done = self.app.clock.now(), []
        with self.app.session() as s:
            for frozen in release.due_for_publishing(s, now):
                month = Month.parse(frozen.month)
                if not release.publish(s, month, now):
                    continue
                scores = release.thaw(frozen.data)
                for p in targets.ranking_broadcast(s, self.app.config, month, scores, now) \
                        + targets.appeal_outcomes(s, month, scores, published=True):
                    self.app.enqueue_push(s, p, f"job:monthly_ranking:{month}:publish:{p.key}")
                self.app.settle(s, f"ranking:{month}", {"kind": "发布", "by": None, "when": now}, now)  # the 预览 cards
                done.append(frozen.month)
        for month in done:
            log.info("ranking for %s published: its review window ended", month)
        return done

    def _publish_logged(self) -> None:
        try:
            self.publish_due()
        except Exception as exc:
            self._failed(exc, "publishing rankings due failed")

    def keep_figures(self) -> bool:
        """Count 总览's figures for the pages to read (bot/campaign/months.py's keep): the running
        month's ranking so far every minute; the finished months of the trend when they changed or
        ended, checked every ten minutes. Each replica's scheduler runs it; one that finds the
        ranking kept by another within the minute leaves it. False: nothing counted."""
        return months.keep(self.app, self.app.clock.now())

    def _keep_logged(self) -> None:
        try:
            self.keep_figures()
        except Exception as exc:  # the pages count what is not kept themselves
            self._failed(exc, "keeping the home page's figures failed")

    PRUNE_MARGIN = timedelta(hours=1)

    def prune(self) -> int:
        """Forget answers to MsgIds older than the replay window and a margin: the wire refuses such
        a message anyway, and the table would otherwise grow forever; pictures nobody said 附件
        for; expired web sessions. Runs daily."""
        before = self.app.clock.now() - self.app.config.server.max_clock_skew - self.PRUNE_MARGIN
        with self.app.session() as s:
            queries.prune_held(s, before)  # long past their ten minutes
            queries.prune_web(s, self.app.clock.now())  # expired sessions and sign-in links
            return queries.prune_processed(s, before)

    def calendar_gaps(self, upcoming: bool = True) -> list[int]:
        """Years whose holidays nobody knows yet (chinese-calendar learns a year once the State
        Council announces it; until then [schedule] holidays / workdays fill it in): this year,
        from December the coming one, and with `upcoming` the year of any job's next run."""
        today = self.app.clock.now().astimezone(self.tz).date()
        years = {today.year} | ({today.year + 1} if today.month == 12 else set())
        if upcoming:
            years |= {nxt.year for _, _, nxt, _ in self.next_runs() if nxt is not None}
        return sorted(y for y in years if not self.workdays.knows(y))

    def warn_admins_of_calendar_gaps(self) -> int:
        """Tell the admins, once a year (the outbox key) and from December, of missing holidays."""
        gaps = self.calendar_gaps(upcoming=False)
        if not gaps:
            return 0
        with self.app.session() as s:
            return sum(self.app.enqueue_push(s, Push(Target("app", a.userid), "calendar_gap", {"years": gaps},
                                                     markdown=False), f"calendar:{gaps[-1]}:{a.userid}")
                       for a in queries.admins(s))

    def _daily_logged(self) -> None:
        try:
            log.info("pruned %d answered MsgIds", self.prune())
            self.warn_admins_of_calendar_gaps()
        except Exception as exc:
            self._failed(exc, "daily housekeeping failed")

    def _fire_logged(self, name: str) -> None:
        try:
            self.fire(name)
        except Exception as exc:
            if unavailable(exc):
                self._failed(exc, "")
                return
            base = self.due(name)
            log.exception("job %s for %s failed", name, JOBS[name].period(base) if base else "-")

    def _failed(self, exc: Exception, what: str) -> None:
        """A scheduled step failed: the traceback, unless the database is away (logged once for the
        outage; the step runs again at its next time, and a missed job is caught up)."""
        if unavailable(exc):
            outage(self.app.engine).failed(exc)
        else:
            log.exception(what)

    def shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
