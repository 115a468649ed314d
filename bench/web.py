"""Server time of each web page on a generated organisation (default 2,000 units, 10 tasks each,
a year of reports; bench/orggen.py), through the real ASGI app in this process (Starlette's
TestClient: routing, session cookie, queries, templates; no network). Prints milliseconds per
page: the first request (cold: the trend's finished months are computed and kept) and the median
of the next --repeat. Target: each page under 200 ms at 2,000 units, warm.

    python bench/web.py [--units 2000] [--repeat 5] [--db sqlite|postgres]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
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

    from sqlalchemy import create_engine, text
    from starlette.testclient import TestClient

    from bot.app import Application
    from bot.clock import FixedClock
    from bot.config import Config
    from bot.web.auth import make_link
    from bot.wecom.callback import build_asgi
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
    app = Application(Config.model_validate({"database": {"url": url}, "web": {"session_secret": "bench"}}),
                      clock=clock)
    app.migrate()
    t0 = time.perf_counter()
    made = generate(app, args.units)
    print(f"{args.db}: {made['units']} units, {made['tasks']} tasks, {made['reports']} reports "
          f"(generated in {time.perf_counter() - t0:.1f} s)")
    pages = {"总览": "/web/", "单位": "/web/unit/1", "我的": "/web/me", "管理": "/web/admin"}
    with TestClient(build_asgi(app)) as client:
        for who in ("admin", "u0-1"):
            client.cookies.clear()
            client.get(make_link(app, who).split(":8080", 1)[1], follow_redirects=False)  # sign in only
            for name, path in pages.items():
                if name == "管理" and who != "admin":
                    continue
                times = []
                for _ in range(args.repeat + 1):
                    t = time.perf_counter()
                    resp = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert resp.status_code == 200, (path, resp.status_code)
                print(f"{who:6s} {name}  cold {times[0]:7.1f} ms   warm median {statistics.median(times[1:]):7.1f} ms"
                      f"   ({len(resp.content) // 1024} KB)")
    app.engine.dispose()


if __name__ == "__main__":
    main()
