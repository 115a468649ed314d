"""Fan-out: a broadcast to 2,000 unit groups through the fake WeCom API with its limits.

    python bench/fanout.py [--groups 2000] [--latency 0.02] [--rate 200] [--concurrency 8]

The fake answers each send after `latency` seconds and refuses (45009) more than `rate` sends a
second. The wall time can be no less than max(groups / rate, groups × latency / concurrency):
the script prints the wall time against that bound, and the baseline of the same sends made by
a bare loop of HTTP calls with the same concurrency and no outbox, so duban's own share shows.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))



class FakeProcess:
    """The fake WeCom API in its own process, so its CPU does not compete with the sender's."""

    def __init__(self, latency: float, rate: float):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_wecom.py"), str(latency), str(rate)],
                                     stdout=subprocess.PIPE, text=True)
        self.base = self.proc.stdout.readline().strip()

    def stats(self) -> dict:
        return requests.get(f"{self.base}/_fake/stats").json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_duban(fake: FakeProcess, groups: int, concurrency: int, work: Path) -> tuple[float, float, int]:
    from bot.app import Application
    from bot.cli import _worker
    from bot.config import Config
    from bot.reply import Push, Target

    db = work / "fanout.db"
    for p in work.glob("fanout.db*"):
        p.unlink()
    config = Config.model_validate({
        "database": {"url": f"sqlite:///{db}"},
        "wecom": {"corp_id": "wwfakecorp", "secret": "fakesecret", "token": "t",
                  "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "api_base": fake.base},
        "sender": {"concurrency": concurrency, "poll_seconds": 0.05},
    })
    app = Application(config)
    app.migrate()
    t0 = time.perf_counter()
    with app.session() as s:
        for i in range(groups):
            app.enqueue_push(s, Push(Target("appchat", f"chat-{i:04d}"), "server_error", markdown=False),
                             f"job:bench:2026-03:{i}")
    enqueue_s = time.perf_counter() - t0
    worker = _worker(app)
    t0 = time.perf_counter()
    result = worker.drain(600)
    wall = time.perf_counter() - t0
    worker.stop()
    assert fake.stats()["targets"] == groups and result.failed == 0, result
    return enqueue_s, wall, result.retried


def run_bare(fake: FakeProcess, groups: int, concurrency: int) -> float:
    """The same sends from a plain thread pool: token once, then POST appchat/send, retry on 45009."""
    token = requests.get(f"{fake.base}/cgi-bin/gettoken", params={"corpid": "wwfakecorp",
                                                                  "corpsecret": "fakesecret"}).json()["access_token"]
    session = requests.Session()

    def send(i: int) -> None:
        body = {"chatid": f"bare-{i:04d}", "msgtype": "text", "text": {"content": "x"}}
        while session.post(f"{fake.base}/cgi-bin/appchat/send", params={"access_token": token},
                           json=body).json()["errcode"] == 45009:
            time.sleep(0.05)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(groups)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    work = ROOT / "bench" / "results"
    work.mkdir(parents=True, exist_ok=True)
    bound = max(args.groups / args.rate if args.rate else 0, args.groups * args.latency / args.concurrency)
    print(f"# {args.groups} groups, fake WeCom: {args.latency * 1000:.0f} ms a send, {args.rate:.0f} sends/s "
          f"(45009 beyond), sender concurrency {args.concurrency}; lower bound {bound:.1f} s")
    for name in ("bare", "duban"):
        fake = FakeProcess(args.latency, args.rate)
        try:
            if name == "bare":
                wall = run_bare(fake, args.groups, args.concurrency)
                extra = ""
            else:
                enqueue_s, wall, retried = run_duban(fake, args.groups, args.concurrency, work)
                extra = f"  (outbox enqueue {enqueue_s:.1f} s before; {retried} sends retried after 45009)"
            rejected = fake.stats()["rejected"]
            print(f"{name:<6} wall {wall:6.1f} s   ×{wall / bound:.2f} of the bound   {args.groups / wall:6.0f} sends/s"
                  f"   45009 answers {rejected}{extra}", flush=True)
        finally:
            fake.stop()


if __name__ == "__main__":
    main()
