"""Callback latency and throughput: concurrent clients on 127.0.0.1 post encrypted `汇报` messages
to `duban serve` (SQLite, then PostgreSQL) and, in the same run, to a baseline server on the same
HTTP stack that only verifies, decrypts and answers a fixed encrypted reply.

    python bench/callback.py [--levels 1,16,64] [--requests 2000] [--rounds 3] [--db sqlite,postgres]

Prints requests per second (median of the rounds), p50/p99 latency (over all rounds' requests) and
the server's CPU time a request (on PostgreSQL, the database server's too), per concurrency level,
and duban ÷ baseline. The two servers run side by side and take turns, round by round, so drift in
the machine's speed moves both. For the highest level it also prints the CPU a request costs on
this machine in all (server, writer process, database, and this load generator), and the
throughput that would take every core the machine has.
Targets: p99 under 50 ms at 64 clients; at least half the baseline's throughput.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from serving import child_pids, free_port, proc_stat, wait_healthy  # noqa: E402
from wecom_client import AES_KEY, CORP_ID, TOKEN, WeComSide, text_xml  # noqa: E402

UNITS = 200


def start(cmd: list[str], port: int, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait_healthy(port, proc, timeout=30):
        proc.kill()
        raise RuntimeError("server did not start: " + proc.stderr.read().decode())
    return proc


def prepare_db(kind: str, work: Path) -> str:
    from bot.app import Application
    from bot.config import Config
    from orggen import generate

    if kind == "sqlite":
        for p in work.glob("callback.db*"):
            p.unlink()
        url = f"sqlite:///{work / 'callback.db'}"
    else:
        from sqlalchemy import create_engine, text

        base = os.environ.get("DUBAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text('DROP DATABASE IF EXISTS "duban_bench_cb" WITH (FORCE)'))
            c.execute(text('CREATE DATABASE "duban_bench_cb"'))
        url = base.rsplit("/", 1)[0] + "/duban_bench_cb"
    app = Application(Config.model_validate({"database": {"url": url}}))
    app.migrate()
    generate(app, UNITS)
    app.engine.dispose()
    return url


def write_config(path: Path, url: str, port: int, writer_process: bool = True) -> None:
    jobs = "".join(f"[schedule.jobs.{n}]\nenabled = false\n" for n in (
        "deploy_check", "monthly_prompt", "escalation", "monthly_ranking", "midyear_review", "annual_summary"))
    path.write_text(f"""[wecom]
corp_id = "{CORP_ID}"
secret = "unused"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base = "http://127.0.0.1:9"
[server]
port = {port}
writer_process = {str(writer_process).lower()}
[database]
url = "{url}"
{jobs}""", encoding="utf-8")


def bodies(side: WeComSide, n: int, offset: int) -> list[tuple[str, dict]]:
    """n encrypted `汇报` messages with distinct MsgIds, spread over units and tasks."""
    out = []
    for i in range(n):
        k = offset + i
        unit = k % UNITS
        task = unit * 10 + (k // UNITS) % 10 + 1
        user = f"u{unit}-{(task - 1) % 5}"
        text = f"汇报 T{task} {k % 100}% 第{k}次压测汇报"
        out.append(side.encrypt(text_xml(user, text, str(10_000_000 + k))))
    return out


def raw_request(port: int, path: str, body: str, params: dict) -> bytes:
    """A pre-built HTTP/1.1 request, so the load generator spends its CPU on nothing but sockets."""
    from urllib.parse import urlencode

    data = body.encode()
    return (f"POST {path}?{urlencode(params)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


async def load(port: int, path: str, work: list[tuple[str, dict]], concurrency: int):
    """`concurrency` keep-alive connections, each sending its next request when the answer is in."""
    requests = [raw_request(port, path, body, params) for body, params in work]
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
            if not head.startswith(b"HTTP/1.1 200") or b"<Encrypt>" not in payload:
                errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(requests[i::concurrency]) for i in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def cpu_seconds(proc: subprocess.Popen) -> tuple[float, float] | None:
    """CPU time the server process and its children (duban's writer process) have used so far:
    (server, children). Linux /proc; None elsewhere."""
    own = proc_stat(proc.pid)
    if own is None:
        return None
    children = 0
    for pid in child_pids(proc.pid):
        fields = proc_stat(pid)
        if fields is not None:
            children += int(fields[11]) + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return (int(own[11]) + int(own[12])) / tick, children / tick


def postgres_ticks() -> dict[int, int]:
    """CPU ticks used so far by each PostgreSQL server process on this machine (its backends, WAL
    writer ...), by pid; empty where /proc can't tell."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"postgres"):
                continue
        except OSError:
            continue
        fields = proc_stat(entry.name)
        if fields is not None:
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def postgres_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """PostgreSQL's CPU seconds between two postgres_ticks() readings (a backend that started
    meanwhile counts whole; one that ended meanwhile is lost, and duban's pool keeps them open)."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / os.sysconf("SC_CLK_TCK")


class Server:
    """A running server under test; `measure` runs one round at one concurrency level."""

    def __init__(self, name: str, proc: subprocess.Popen, port: int, offset: int, postgres: bool = False):
        self.name, self.proc, self.port, self.offset = name, proc, port, offset
        self.postgres = postgres  # also measure the PostgreSQL server's CPU
        self.side = WeComSide(f"http://127.0.0.1:{port}")
        self.rounds: dict[int, list] = {}

    def measure(self, c: int, requests: int) -> None:
        n = max(200, requests if c > 1 else requests // 4)
        work = bodies(self.side, n, self.offset)  # MsgIds never repeat: duban would answer from its dedupe
        self.offset += n
        asyncio.run(load(self.port, "/wecom/callback", work[:50], min(c, 50)))  # warm up
        cpu0, pg0 = cpu_seconds(self.proc), postgres_ticks() if self.postgres else {}
        client0 = time.process_time()
        wall, lat, errors = asyncio.run(load(self.port, "/wecom/callback", work[50:], c))
        client = time.process_time() - client0
        cpu1, pg1 = cpu_seconds(self.proc), postgres_ticks() if self.postgres else {}
        cpu = None
        if cpu0 is not None and cpu1 is not None:
            cpu = ((cpu1[0] - cpu0[0]) / len(lat), (cpu1[1] - cpu0[1]) / len(lat),
                   postgres_seconds(pg0, pg1) / len(lat), client / len(lat))
        self.rounds.setdefault(c, []).append((len(lat) / wall, lat, errors, cpu))

    def figures(self, c: int) -> tuple:
        """Median throughput over the rounds; p50/p99 over all their requests; errors; CPU a request."""
        rounds = self.rounds[c]
        lat = sorted(x for r in rounds for x in r[1])
        cpus = [r[3] for r in rounds if r[3] is not None]
        return (statistics.median(r[0] for r in rounds), statistics.median(lat) * 1000,
                lat[int(len(lat) * 0.99) - 1] * 1000, sum(r[2] for r in rounds),
                tuple(statistics.median(c[k] for c in cpus) * 1e6 for k in range(4)) if cpus else None)

    def line(self, c: int) -> str:
        rps, p50, p99, errors, cpu = self.figures(c)
        if cpu is None:
            cpu_text = "CPU n/a"
        elif cpu[1]:
            cpu_text = f"{cpu[0]:5.0f} + {cpu[1]:.0f} µs CPU/req (server + writer process)"
        else:
            cpu_text = f"{cpu[0]:5.0f} µs CPU/req"
        if cpu is not None and self.postgres:
            cpu_text += f" + {cpu[2]:.0f} µs PostgreSQL"
        return (f"{self.name:<18} c={c:<3} {rps:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
                f"{cpu_text}   errors {errors}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--requests", type=int, default=2000, help="requests a round (a quarter of it at 1 client)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="baseline and duban take turns this many times at each level; throughput is the median")
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--writer-in-server", action="store_true",
                    help="handle messages in the server process (server.writer_process = false), for comparison")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    work = ROOT / "bench" / "results"
    work.mkdir(parents=True, exist_ok=True)

    for kind in args.db.split(","):
        url = prepare_db(kind, work)
        servers = []
        try:
            port = free_port()
            servers.append(Server("baseline", start([sys.executable, str(ROOT / "bench" / "baseline_server.py"),
                                                     str(port)], port, work), port, 0))
            port = free_port()
            write_config(work / f"callback-{kind}.toml", url, port, not args.writer_in_server)
            servers.append(Server(f"duban ({kind})", start(
                [sys.executable, "-m", "bot.cli", "serve", "--config", str(work / f"callback-{kind}.toml")],
                port, work), port, 1_000_000, postgres=kind == "postgres"))
            baseline, duban = servers
            for c in levels:
                # Taking turns, so a machine that speeds up or slows down during the run moves both.
                for _ in range(args.rounds):
                    for server in servers:
                        server.measure(c, args.requests)
                print(baseline.line(c), flush=True)
                print(duban.line(c), flush=True)
                rps, _, p99, _, _ = duban.figures(c)
                ratio = rps / baseline.figures(c)[0]
                verdict = ""
                if c == max(levels):
                    verdict = f"   target p99 < 50 ms: {'OK' if p99 < 50 else 'MISSED'}; ratio ≥ 0.5: " \
                              f"{'OK' if ratio >= 0.5 else 'MISSED'}"
                print(f"{duban.name} ÷ baseline  c={c:<3} throughput ×{ratio:.2f}{verdict}", flush=True)
                if c == max(levels):
                    for server in servers:
                        cpu = server.figures(c)[4]
                        if cpu is not None:
                            total = sum(cpu)
                            print(f"{server.name:<18} c={c:<3} {total:5.0f} µs CPU a request in all, with the load "
                                  f"generator's {cpu[3]:.0f}: {os.cpu_count()} cores allow "
                                  f"{os.cpu_count() / total * 1e6:,.0f} req/s", flush=True)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
