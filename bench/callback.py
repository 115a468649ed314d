"""Callback throughput and latency of three servers side by side, on the same HTTP stack (uvicorn +
Starlette) and the same database, as keep-alive clients on 127.0.0.1 post encrypted `汇报` messages:

  baseline  the limit: verify, decrypt, a fixed encrypted reply, no database (bench/baseline_server.py)
  peer      the least a durable bot does, written the usual way: the same, plus one SQLAlchemy INSERT
            and one commit a message in Starlette's thread pool (bench/peer_server.py)
  duban     `duban serve` on a generated organisation of 200 units
  robot     the same duban process, through its smart-robot path: JSON callbacks, each an @-mention
            in the sender's unit group (bench/callback.py binds a group to every unit)

    python bench/callback.py [--levels 1,16,64] [--requests 2000] [--rounds 3] [--db sqlite,postgres] [--quick]

The servers take turns round by round, so drift in the machine's speed moves all three. For each
database and number of clients it prints requests per second (median of the rounds), p50/p99
latency (over all rounds' requests), the server process's CPU time a request (on PostgreSQL, the
database server's too) and errors; at the end, the figures the floors are judged by: duban ÷ peer
throughput at 64 clients (at least ×1.0 on SQLite, ×0.5 on PostgreSQL), duban's p99 at 64 clients
(under 100 ms on SQLite, 250 ms on PostgreSQL) and duban's p50 at 1 client (under 5 ms); and
the goals beside them (×1.5 and ×1.0; under 100 and 150 ms; under 2 and 3 ms).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from serving import free_port, wait_healthy  # noqa: E402
from wecom_client import (AES_KEY, CORP_ID, ROBOT_AES_KEY, ROBOT_TOKEN, TOKEN, RobotSide,  # noqa: E402
                          WeComSide, text_xml)

UNITS = 200
SCRATCH_PG = "duban_bench_cb"
TICK = os.sysconf("SC_CLK_TCK")
# The floors duban is judged by, and the goals it aims at, per database: (duban ÷ peer throughput
# at 64 clients at least, duban p99 at 64 clients under this many ms, duban p50 at 1 client under
# this many ms).
FLOORS = {"sqlite": (1.0, 100, 5), "postgres": (0.5, 250, 5)}
GOALS = {"sqlite": (1.5, 100, 2), "postgres": (1.0, 150, 3)}


def prepare_db(kind: str, work: Path) -> str:
    """A fresh database with duban's schema and a generated organisation; its SQLAlchemy URL."""
    from bot.app import Application
    from bot.config import Config
    from orggen import generate

    if kind == "sqlite":
        for p in work.glob("callback.db*"):
            p.unlink()
        url = f"sqlite:///{work / 'callback.db'}"
    else:
        url = postgres_admin(f'DROP DATABASE IF EXISTS "{SCRATCH_PG}" WITH (FORCE)', f'CREATE DATABASE "{SCRATCH_PG}"')
    app = Application(Config.model_validate({"database": {"url": url}}))
    app.migrate()
    generate(app, UNITS)
    with app.engine.begin() as conn:  # every unit's group talks to the smart robot
        conn.exec_driver_sql("UPDATE unit SET aibot_chatid = 'group' || id")
    app.engine.dispose()
    return app.config.database.url  # postgresql+psycopg://...


def postgres_admin(*statements: str) -> str:
    """Run statements on the PostgreSQL server outside a transaction; the scratch database's URL."""
    import psycopg

    base = os.environ.get("DUBAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with psycopg.connect(base, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
    return base.rsplit("/", 1)[0] + "/" + SCRATCH_PG


def checkpoint(url: str) -> None:
    """Copy the SQLite WAL into the database file and empty it (the servers are idle between turns)."""
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def write_config(path: Path, url: str) -> None:
    jobs = "".join(f"[schedule.jobs.{n}]\nenabled = false\n" for n in (
        "deploy_check", "monthly_prompt", "escalation", "monthly_ranking", "midyear_review", "annual_summary"))
    path.write_text(f"""[wecom]
corp_id = "{CORP_ID}"
secret = "unused"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base = "http://127.0.0.1:9"
[aibot]
enabled = true
token = "{ROBOT_TOKEN}"
encoding_aes_key = "{ROBOT_AES_KEY}"
[database]
url = "{url}"
{jobs}""", encoding="utf-8")


def bodies(side: WeComSide | RobotSide, n: int, offset: int) -> list[tuple[str, dict]]:
    """n encrypted `汇报` messages with distinct MsgIds, spread over units and tasks (to the smart
    robot: said in the unit's group)."""
    out = []
    for i in range(n):
        k = offset + i
        unit = k % UNITS
        task = unit * 10 + (k // UNITS) % 10 + 1
        user = f"u{unit}-{(task - 1) % 5}"
        text = f"汇报 T{task} {k % 100}% 第{k}次压测汇报"
        if isinstance(side, RobotSide):
            out.append(side.encrypt(side.message(user, text, f"m{10_000_000 + k}", chatid=f"group{unit + 1}")))
        else:
            out.append(side.encrypt(text_xml(user, text, str(10_000_000 + k))))
    return out


def raw_request(port: int, path: str, body: str, params: dict) -> bytes:
    """A pre-built HTTP/1.1 request, so the load generator spends its CPU on nothing but sockets."""
    data = body.encode()
    kind = "application/json" if path.endswith("aibot") else "text/xml"
    return (f"POST {path}?{urlencode(params)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


async def load(port: int, path: str, work: list[tuple[str, dict]], concurrency: int):
    """`concurrency` keep-alive connections, each sending its next request when the answer is in."""
    requests = [raw_request(port, path, body, params) for body, params in work]
    answered = b'"encrypt"' if path.endswith("aibot") else b"<Encrypt>"
    latencies: list[float] = []
    errors = 0

    async def connection(mine: list[bytes]):
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in mine:
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200") or answered not in payload:
                errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(requests[i::concurrency]) for i in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def ticks(pid: int | str) -> int:
    """User + system CPU ticks a process (all its threads) has used so far; 0 if it is gone (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def postgres_ticks() -> dict[int, int]:
    """CPU ticks used so far by each PostgreSQL server process on this machine, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"postgres"):
                found[int(entry.name)] = ticks(entry.name)
        except OSError:
            continue
    return found


class Server:
    """A running server under test; `measure` runs one round at one number of clients."""

    path = "/wecom/callback"

    def __init__(self, name: str, cmd: list[str], offset: int, postgres: bool, work: Path):
        """Start `cmd` + [a free port] and wait until it answers /healthz."""
        self.name, self.offset, self.postgres = name, offset, postgres
        self.port = free_port()
        log = work / f"callback-{name}.log"
        with log.open("wb") as err:  # a file, not a pipe: a pipe nobody reads would stall a chatty server
            self.proc = subprocess.Popen([*cmd, str(self.port)], cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                         stdout=subprocess.DEVNULL, stderr=err)
        if not wait_healthy(self.port, self.proc, timeout=30):
            self.proc.kill()
            raise RuntimeError(f"{name} did not start: " + log.read_text(errors="replace"))
        self.side: WeComSide | RobotSide = WeComSide(f"http://127.0.0.1:{self.port}")
        self.rounds: dict[int, list] = {}

    def measure(self, c: int, requests: int) -> None:
        n = requests if c > 1 else requests // 4
        work = bodies(self.side, 50 + n, self.offset)  # MsgIds never repeat: duban would answer from its dedupe
        self.offset += 50 + n
        asyncio.run(load(self.port, self.path, work[:50], min(c, 50)))  # warm up
        cpu0, pg0 = ticks(self.proc.pid), postgres_ticks() if self.postgres else {}
        wall, lat, errors = asyncio.run(load(self.port, self.path, work[50:], c))
        cpu1, pg1 = ticks(self.proc.pid), postgres_ticks() if self.postgres else {}
        # A backend that started meanwhile counts whole; one that ended meanwhile is lost.
        pg = sum(t - pg0.get(pid, 0) for pid, t in pg1.items())
        self.rounds.setdefault(c, []).append((len(lat) / wall, lat, errors, (cpu1 - cpu0) / TICK / len(lat),
                                              pg / TICK / len(lat)))

    def figures(self, c: int) -> dict:
        """Median throughput of the rounds; p50/p99 over all their requests (ms); errors; CPU µs a request."""
        rounds = self.rounds[c]
        cuts = statistics.quantiles([x for r in rounds for x in r[1]], n=100)
        return {"rps": statistics.median(r[0] for r in rounds), "p50": cuts[49] * 1000, "p99": cuts[98] * 1000,
                "errors": sum(r[2] for r in rounds), "cpu": statistics.median(r[3] for r in rounds) * 1e6,
                "pg": statistics.median(r[4] for r in rounds) * 1e6}

    def row(self, c: int) -> str:
        f = self.figures(c)
        cpu = f"{f['cpu']:6.0f}" + (f" + {f['pg']:5.0f}" if self.postgres else "")
        return f"{self.name:<9}{c:>8}{f['rps']:>9.0f}{f['p50']:>9.1f}{f['p99']:>9.1f}   {cpu:<24}{f['errors']:>6}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class RobotPath(Server):
    """The smart-robot path of a running duban server (its own MsgIds and rounds, the same process)."""

    path = "/wecom/aibot"

    def __init__(self, duban: Server, offset: int):
        self.name, self.offset, self.postgres = "robot", offset, duban.postgres
        self.port, self.proc = duban.port, duban.proc
        self.side = RobotSide(f"http://127.0.0.1:{self.port}")
        self.rounds = {}

    def stop(self) -> None:
        pass  # the duban server's


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"


def run(kind: str, levels: list[int], requests: int, rounds: int, work: Path) -> dict[str, Server]:
    url = prepare_db(kind, work)
    pg = kind == "postgres"
    servers: dict[str, Server] = {}
    try:
        config = work / f"callback-{kind}.toml"
        write_config(config, url)
        py = sys.executable
        servers["baseline"] = Server("baseline", [py, str(ROOT / "bench" / "baseline_server.py")], 0, pg, work)
        servers["peer"] = Server("peer", [py, str(ROOT / "bench" / "peer_server.py"), url], 1_000_000, pg, work)
        servers["duban"] = Server("duban", [py, "-m", "bot.cli", "serve", "--config", str(config), "--port"],
                                  2_000_000, pg, work)
        servers["robot"] = RobotPath(servers["duban"], 3_000_000)
        print(f"\n## {kind}\n{'server':<9}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}   "
              f"{'CPU µs/req' + (' + PostgreSQL' if pg else ''):<24}{'errors':>6}", flush=True)
        for c in levels:
            for _ in range(rounds):  # taking turns: a machine that speeds up or slows down moves all three
                for server in servers.values():
                    if not pg:  # each server's turn starts with an empty WAL: SQLite's automatic
                        checkpoint(url)  # checkpoint copies every writer's pages, so whoever crosses
                    server.measure(c, requests)  # its threshold would pay for the others' writes
            for server in servers.values():
                print(server.row(c), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        if pg:
            postgres_admin(f'DROP DATABASE IF EXISTS "{SCRATCH_PG}" WITH (FORCE)')
    return servers


def floors(kind: str, s: dict[str, Server], levels: list[int]) -> list[str]:
    """The lines judging duban on one database: figure, then floor and goal, each met / MISSED
    (void if any request failed). Figure 0 (the ratio) must reach its bound, 1 and 2 stay under."""
    checks = []
    for name in ("duban", "robot"):
        figures = s[name].figures
        if 64 in levels:
            checks.append((f"{name} ÷ peer throughput, 64 clients", 0,
                           figures(64)["rps"] / s["peer"].figures(64)["rps"]))
            checks.append((f"{name} p99, 64 clients", 1, figures(64)["p99"]))
        if 1 in levels:
            checks.append((f"{name} p50, 1 client", 2, figures(1)["p50"]))
    errors = sum(server.figures(c)["errors"] for server in s.values() for c in levels)

    def judged(i: int, figure: float, bound: float) -> str:
        bound_text = f"≥ ×{bound}" if i == 0 else f"< {bound} ms"
        ok = figure >= bound if i == 0 else figure < bound
        return f"{bound_text:<9} {f'void: {errors} requests failed' if errors else 'met' if ok else 'MISSED':<7}"

    return [f"{kind:<9} {what:<37} {f'×{figure:.2f}' if i == 0 else f'{figure:.1f} ms':>10}   "
            f"floor {judged(i, figure, FLOORS[kind][i])} goal {judged(i, figure, GOALS[kind][i])}".rstrip()
            for what, i, figure in checks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,16,64", help="numbers of keep-alive clients")
    ap.add_argument("--requests", type=int, default=2000, help="requests a server a round (a quarter at 1 client)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds the servers take turns; throughput is the median")
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 requests a round, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 200, 1
    levels = [int(x) for x in args.levels.split(",")]
    work = ROOT / "bench" / "results"
    work.mkdir(parents=True, exist_ok=True)
    print(f"# callback bench: {machine()}\n# {args.requests} requests a round ({args.requests // 4} at 1 client), "
          f"{args.rounds} round(s); CPU is the server process's", flush=True)
    verdicts = []
    for kind in args.db.split(","):
        verdicts += floors(kind, run(kind, levels, args.requests, args.rounds, work), levels)
    print("\n## floors\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
