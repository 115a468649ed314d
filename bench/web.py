"""Server time of each web page on a generated organisation (default 2,000 units, 10 tasks each,
a year of reports; bench/orggen.py) with last month's ranking published, through the real ASGI app
in this process (Starlette's TestClient: routing, session cookie, queries, templates; no network).

First, one admin 总览 on a server that finds nothing kept (a fresh database, no scheduler run yet):
it counts the trend's finished months and the running month in the request and keeps them
(bot/campaign/months.py). Then, for an admin and for a member, a server started afresh on that
database, and for each page the first request (cold: for 总览, the kept months and the kept ranking
so far are read) and the median of the next --repeat (warm), with the SQL statements of the cold
and the last request. Last, in one server, the scheduler's job (months.keep, every minute: off the
request path) and an admin 总览 half a minute after each run: each minute for three minutes (the
running month counted; the medians), ten minutes on (the kept months' tasks, units and items are
checked too), and after the month ends (it is counted, provisionally, then settled). Target: each
page under 200 ms at 2,000 units, cold and warm. Times are wall clock and, in brackets, the
process's CPU time (the steadier of the two on a shared machine).

    python bench/web.py [--units 2000] [--repeat 5] [--db sqlite|postgres]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = ap.parse_args()

    from sqlalchemy import create_engine, event, text
    from starlette.testclient import TestClient

    from bot.app import Application
    from bot.campaign import digest, release
    from bot.clock import FixedClock
    from bot.config import Config
    from bot.web.auth import make_link
    from bot.wecom.callback import build_asgi
    from db.month import Month
    from jobs import JobQueue
    from orggen import generate

    tmp = tempfile.mkdtemp(prefix="duban-web-")
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        base = os.environ.get("DUBAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text('DROP DATABASE IF EXISTS "duban_bench_web"'))
            c.execute(text('CREATE DATABASE "duban_bench_web"'))
        url = base.rsplit("/", 1)[0] + "/duban_bench_web"
    clock = FixedClock(datetime(2026, 10, 20, 10, tzinfo=ZoneInfo("Asia/Shanghai")))

    def server() -> Application:
        return Application(Config.model_validate({"database": {"url": url}, "web": {"session_secret": "bench"}}),
                           clock=clock)

    app = first = server()
    app.migrate()
    t0 = time.perf_counter()
    made = generate(app, args.units)
    published = Month(2026, 9)
    with app.session() as s:  # what the monthly_ranking job did on October 1st, published at once
        when = datetime(2026, 10, 1, 10, tzinfo=clock.now().tzinfo)
        release.open_for_review(s, digest.rank(s, app.config, published, when), published, when, 0)
    print(f"{args.db}: {made['units']} units, {made['tasks']} tasks, {made['reports']} reports, {made['items']} 督办 "
          f"items, {published} published (generated in {time.perf_counter() - t0:.1f} s)")

    def sign_in(client: TestClient, who: str) -> None:
        client.cookies.clear()
        client.get(make_link(first, who).split(":8080", 1)[1], follow_redirects=False)

    statements = [0]

    def fresh_server() -> tuple[Application, TestClient]:
        """A server started afresh on the database: nothing counted in its process yet."""
        app = server()
        event.listen(app.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
        return app, TestClient(build_asgi(app))

    def timed(client: TestClient, path: str) -> tuple[float, float, int, int]:
        """(ms, CPU ms, SQL statements, KB) of one request."""
        statements[0] = 0
        t, c = time.perf_counter(), time.process_time()
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        ms, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
        return ms, cpu, statements[0], len(resp.content) // 1024

    def line(what: str, ms: float, cpu: float, sql: int) -> str:
        return f"{what:<58s} {ms:7.1f} ms (CPU {cpu:5.1f}), {sql:.0f} SQL statements"

    app, client = fresh_server()
    with client:
        sign_in(client, "admin")
        print(line("nothing kept (no scheduler yet): admin 总览 counts, keeps", *timed(client, "/web/")[:3]))
    app.engine.dispose()

    pages = {"总览": "/web/", "单位": "/web/unit/1", "我的": "/web/me", "管理": "/web/admin"}
    for who in ("admin", "u0-1"):
        app, client = fresh_server()
        with client:
            sign_in(client, who)
            for name, path in pages.items():
                if name == "管理" and who != "admin":
                    continue
                runs = [timed(client, path) for _ in range(args.repeat + 1)]
                ms, cpu = (statistics.median(r[i] for r in runs[1:]) for i in (0, 1))
                print(f"{who:6s} {name}  cold {runs[0][0]:6.1f} ms (CPU {runs[0][1]:5.1f})   warm median "
                      f"{ms:6.1f} ms (CPU {cpu:5.1f})   {runs[-1][3]} KB; SQL statements cold {runs[0][2]}, "
                      f"warm {runs[-1][2]}")
        app.engine.dispose()

    app, client = fresh_server()  # later, in one server with the scheduler's job: the clock moves
    jobs = JobQueue(app)

    def job() -> tuple[float, float, int]:
        """(ms, CPU ms, SQL statements) of the scheduler's run (months.keep): off the request path."""
        statements[0] = 0
        t, c = time.perf_counter(), time.process_time()
        assert jobs.keep_figures()
        return (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000, statements[0]

    def median(runs: list) -> list:
        return [statistics.median(r[i] for r in runs) for i in range(3)]

    with client:
        sign_in(client, "admin")
        timed(client, "/web/")
        start, counted, read = clock.now(), [], []
        for minute in (1, 2, 3):
            clock.set(start + timedelta(minutes=minute, seconds=1))
            counted.append(job())
            clock.set(start + timedelta(minutes=minute, seconds=31))
            read.append(timed(client, "/web/"))
        print(line("each minute: the job (running month counted), median", *median(counted)))
        print(line("each minute: admin 总览 between its runs, median", *median(read)))
        clock.set(start + timedelta(minutes=11, seconds=2))
        print(line("ten minutes on: the job (kept months checked too)", *job()))
        clock.set(start + timedelta(minutes=11, seconds=32))
        print(line("ten minutes on: admin 总览", *timed(client, "/web/")[:3]))
        end = datetime(2026, 11, 1, tzinfo=clock.now().tzinfo)
        for after in (timedelta(seconds=30), timedelta(minutes=11)):  # October counted: provisionally, then settled
            clock.set(end + after)
            print(line(f"a month ended {after} ago: the job", *job()))
            clock.set(end + after + timedelta(seconds=30))
            sign_in(client, "admin")  # days later by the app's clock: the session has expired
            print(line(f"a month ended {after} ago: admin 总览", *timed(client, "/web/")[:3]))
    app.engine.dispose()

if __name__ == "__main__":
    main()
