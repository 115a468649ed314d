"""Scale: time and peak memory of monthly_prompt, monthly_ranking and the annual export for one
period, on generated organisations of 200 to 2,000 units (10 tasks each, a year of reports).

    python bench/scale.py [--sizes 200,500,1000,2000] [--db sqlite|postgres]
    python bench/scale.py --import [--db sqlite|postgres]   # `duban import` of the largest allowed workbook

Each measurement runs in a fresh process on a prepared database; peak memory is that process's
peak RSS growth during the job (VmHWM after minus VmRSS before). Targets: < 3 s and < 300 MB
at 2,000 units, growing linearly.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

JOBS = ("monthly_prompt", "monthly_ranking", "annual_export")


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process. Not ru_maxrss: on Linux a
    child started by subprocess inherits its parent's high-water mark there."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def measure(url: str, job: str) -> dict:
    """Run in a child process: one job on a prepared database."""
    from bot.app import Application
    from bot.clock import FixedClock
    from bot.config import Config
    from bot.excel.export import generate
    from jobs import JobQueue
    from conftest_free import at
    from sqlmodel import Session

    app = Application(Config.model_validate({"database": {"url": url}, "broadcast": {"chat_id": "all"}}),
                      clock=FixedClock(at(2026, 12, 31, 16)))
    q = JobQueue(app)
    before = rss_mb()
    t0 = time.perf_counter()
    if job == "monthly_prompt":
        app.clock.set(at(2026, 11, 20, 9))
        result = q.run("monthly_prompt", at(2026, 11, 20, 9))
        detail = f"{result.messages} messages queued"
    elif job == "monthly_ranking":
        app.clock.set(at(2026, 12, 1, 10))
        result = q.run("monthly_ranking", at(2026, 12, 1, 10))
        detail = f"{result.messages} messages queued"
    else:
        with Session(app.engine) as s:
            data = generate(s, app.config, {"kind": "year", "year": 2026, "at": app.clock.now().isoformat()})
        detail = f"{len(data) // 1024} KiB workbook"
    seconds = time.perf_counter() - t0
    return {"job": job, "seconds": seconds, "peak_mb": rss_mb("VmHWM") - before, "detail": detail}


def prepare(url: str, units: int) -> dict:
    from bot.app import Application
    from bot.config import Config
    from orggen import generate as gen

    app = Application(Config.model_validate({"database": {"url": url}}))
    app.migrate()
    t0 = time.perf_counter()
    stats = gen(app, units)
    stats["generate_s"] = time.perf_counter() - t0
    app.engine.dispose()
    return stats


def fresh_db(kind: str, units: int, tmp: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        path = tmp / f"scale-{units}.db"
        for p in tmp.glob(f"scale-{units}.db*"):
            p.unlink()
        return f"sqlite:///{path}", lambda: None
    from sqlalchemy import create_engine, text

    base = os.environ.get("DUBAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"duban_bench_{units}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return base.rsplit("/", 1)[0] + "/" + name, drop


def largest_workbook(path: Path, max_mb: float) -> dict:
    """A roster workbook at the import's limits (bot/excel/limits.py): every sheet at the row cap
    (units, people, tasks, problems all distinct and valid), the tasks' and problems' text long
    enough that the file comes close to `max_mb`."""
    from openpyxl import Workbook

    from bot.excel.limits import MAX_ROWS
    from bot.excel.roster import SHEETS

    import random

    rnd = random.Random(21)
    text = lambda n: "".join(chr(rnd.randrange(0x4E00, 0x9FA5)) for _ in range(n))  # noqa: E731 (compresses as prose does)
    wb = Workbook(write_only=True)
    rows = MAX_ROWS
    sheets = {name: wb.create_sheet(name) for name in SHEETS}
    for name, header in SHEETS.items():
        sheets[name].append(header)
    lines = ("深学争优", "敢为争先", "实干争效")
    pad = 38  # characters of text in a task and a problem: the file comes close to the 10 MB limit
    for i in range(rows):
        unit = f"第{i:05d}党支部"
        sheets["单位"].append([unit, "直属党支部", f"u{i:05d}", f"wrkChat{i:08d}", "", ""])
        sheets["人员"].append([f"u{i:05d}", f"人员{i:05d}", unit, "负责人", ""])
        sheets["任务清单"].append([f"T{i + 1}", unit, lines[i % 3], f"完成第{i}项重点工作：{text(pad)}",
                                   "", f"u{i:05d}", "2026-03-01", "2026-12-31"])
        sheets["问题清单"].append([f"P{i + 1}", unit, f"问题{i}：{text(pad)}", text(pad), f"u{i:05d}", "2026-06-30"])
    wb.save(path)
    size = path.stat().st_size
    assert size <= max_mb * 1024 * 1024, f"{size} bytes: over the {max_mb} MB limit"
    return {"rows": rows, "mb": size / 1048576}


def measure_import(url: str, path: str) -> dict:
    """Run in a child process: `duban import`'s work on an empty, migrated database."""
    from bot.app import Application
    from bot.config import Config
    from bot.excel.roster import import_roster

    app = Application(Config.model_validate({"database": {"url": url}}))
    before = rss_mb()
    t0 = time.perf_counter()
    with app.session() as s:
        result = import_roster(s, path, app.clock.now(), max_mb=app.config.storage.max_import_mb)
    assert not result.errors, result.errors[:3]
    return {"seconds": time.perf_counter() - t0, "peak_mb": rss_mb("VmHWM") - before,
            "counts": {k: v[0] for k, v in result.counts.items()}}


def import_bench(db: str) -> None:
    from bot.app import Application
    from bot.config import Config

    tmp = ROOT / "bench" / "results"
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "largest-roster.xlsx"
    info = largest_workbook(path, Config().storage.max_import_mb)
    url, drop = fresh_db(db, 0, tmp)
    app = Application(Config.model_validate({"database": {"url": url}}))
    app.migrate()
    app.engine.dispose()
    out = subprocess.run([sys.executable, __file__, "--child-import", url, str(path)], capture_output=True,
                         text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    drop()
    verdict = "OK" if r["peak_mb"] < 300 else "MISSED"
    print(f"# {db}: import of {path.name}: {info['mb']:.1f} MB, {info['rows']} rows on each of 4 sheets")
    print(f"import  {r['seconds']:7.2f} s  peak RSS +{r['peak_mb']:.0f} MB  added {r['counts']}  "
          f"(target < 300 MB: {verdict})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200,500,1000,2000")
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--import", dest="import_", action="store_true",
                    help="measure `duban import` of the largest workbook the limits allow")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-import", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    if args.child_import:
        print(json.dumps(measure_import(*args.child_import)))
        return
    if args.import_:
        import_bench(args.db)
        return
    tmp = ROOT / "bench" / "results"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for units in [int(x) for x in args.sizes.split(",")]:
        url, drop = fresh_db(args.db, units, tmp)
        stats = prepare(url, units)
        print(f"# {args.db}: {stats['units']} units, {stats['tasks']} tasks, {stats['reports']} reports, "
              f"{stats['items']} 督办 (generated in {stats['generate_s']:.1f} s)", flush=True)
        for job in JOBS:
            out = subprocess.run([sys.executable, __file__, "--child", url, job], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((units, r))
            print(f"{units:>6} units  {job:<16} {r['seconds']:7.2f} s  {r['peak_mb']:7.1f} MB  ({r['detail']})",
                  flush=True)
        drop()
    print("\n# growth from the smallest to the largest size (linear = same ratio as units)")
    sizes = sorted({u for u, _ in rows})
    lo, hi = sizes[0], sizes[-1]
    for job in JOBS:
        a = next(r for u, r in rows if u == lo and r["job"] == job)
        b = next(r for u, r in rows if u == hi and r["job"] == job)
        verdict = "OK" if b["seconds"] < 3 and b["peak_mb"] < 300 else "MISSED"
        print(f"{job:<16} time x{b['seconds'] / a['seconds']:.1f} for units x{hi / lo:.0f}; "
              f"at {hi}: {b['seconds']:.2f} s, {b['peak_mb']:.0f} MB (target < 3 s, < 300 MB: {verdict})")


if __name__ == "__main__":
    main()
