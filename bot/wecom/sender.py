"""Outbound delivery: the outbox worker and the transports behind it.

Every message is in the outbox table before it is sent. The worker claims a row (a conditional
UPDATE, safe across replicas), sends it, and marks it sent; a crash leaves the row claimed with
a lease that runs out, after which another pass sends it. Messages to the same target go out in
outbox order, one at a time; different targets are sent in parallel. The order is kept among
messages that can be sent: one that fails is tried again after its own backoff while the target's
later messages go on (only a target that is rate limited, or whose message another sender holds,
waits as a whole). A file or picture that cannot be built fails at once with the reason; only
the database being away while building is tried again.

The WeCom API client itself is in bot/wecom/api.py.

WeCom side: app messages go out with WeCom's own duplicate check (enable_duplicate_check), so a
message whose send was cut off after WeCom accepted it is not shown twice when it is retried.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bot import cards
from bot.config import SenderConfig
from bot.reply import show_target
from bot.wecom.api import SendError
from db import queries
from db.models import Outbox
from db.session import outage, session_scope, unavailable

log = logging.getLogger("duban.sender")

POLL_BACKOFF_MAX = 30.0  # seconds between polls at most while the database is away


SENT, FAILED, BLOCKED = "sent", "failed", "blocked"  # what one send did (OutboxWorker._send_one)


def why_waiting(row: Outbox, now: datetime, cfg: SenderConfig, tz) -> tuple[str, datetime | None]:
    """Why a pending message has not gone out yet, as `duban outbox` says it: ("backoff", the next
    try) after a failed send, ("quiet", the end of the quiet hours) for a push (replies are never
    held), or ("", None): due now."""
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        return "backoff", row.next_attempt_at
    end = cfg.quiet_end(now, tz)
    if end is not None and not row.key.startswith(queries.REPLY_KEYS):
        return "quiet", end
    return "", None


class Transport(Protocol):
    def send(self, row: Outbox, attachment: bytes | None) -> dict | None: ...


class ConsoleTransport:
    """No WeCom credentials: print what would be sent; files and images are written to a folder."""

    def __init__(self, out: Callable[[str], None] = print, files_dir: str | Path = "exports"):
        self.out = out
        self.files_dir = Path(files_dir)

    def send(self, row: Outbox, attachment: bytes | None) -> None:
        if row.msgtype in ("file", "image"):
            self.files_dir.mkdir(parents=True, exist_ok=True)
            suffix = ".png" if row.msgtype == "image" else ".xlsx"
            path = self.files_dir / (row.filename or f"outbox-{row.id}{suffix}")
            path.write_bytes(attachment or b"")
            kind = "图片" if row.msgtype == "image" else "文件"
            self.out(f"[推送 → {show_target(row.channel, row.target)}] {kind} {path}")
            return
        payload = json.loads(row.payload)
        if row.msgtype == "template_card":  # the card as text, then the push's text with its commands
            lines = "\n".join(cards.as_text(payload["card"]))
            self.out(f"[卡片 → {show_target(row.channel, row.target)}]\n{lines}\n{payload['content']}\n")
            return
        if row.msgtype == "card_update":
            self.out(f"[卡片更新 → {show_target(row.channel, row.target)}] {payload['content']}")
            return
        self.out(f"[推送 → {show_target(row.channel, row.target)}]\n{payload.get('content', '')}\n")


class RateLimiter:
    """At most `limit` sends per key in any 60 s window (group robots: about 20 a minute)."""

    def __init__(self, limit: int, window: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.monotonic = limit, window, monotonic
        self.sent: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def wait_time(self, key: str) -> float:
        with self.lock:
            q, now = self.sent[key], self.monotonic()
            while q and now - q[0] >= self.window:
                q.popleft()
            return 0.0 if len(q) < self.limit else self.window - (now - q[0])

    def record(self, key: str) -> None:
        with self.lock:
            self.sent[key].append(self.monotonic())


@dataclass
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0

    def add(self, other: "PassResult") -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred


class OutboxWorker:
    def __init__(self, engine, transport: Transport, clock, cfg: SenderConfig,
                 file_source: Callable[[Session, Outbox], bytes] | None = None, tz: ZoneInfo | None = None,
                 quiet_hours: bool = True, fetch: Callable[[], int] | None = None):
        self.engine = engine
        self.tz = tz or ZoneInfo("Asia/Shanghai")  # the quiet hours are local time
        self.quiet_hours = quiet_hours  # False: deliver everything now (an operator's `duban jobs run`)
        self.transport = transport
        self.clock = clock
        self.cfg = cfg
        self.limiter = RateLimiter(cfg.webhook_per_minute)
        self.pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="outbox")
        self.file_source = file_source  # builds a file message's bytes at send time
        self.fetch = fetch  # a step of the background loop: fetch pictures people sent (bot/evidence.py)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = time.monotonic()  # when a pass or a send last finished (any outcome)

    def run_once(self, limit: int = 500) -> PassResult:
        """One pass over what is due now: each target's messages in order, targets in parallel."""
        now = self.clock.now()
        with Session(self.engine) as s:
            rows = queries.outbox_by_ids(s, queries.due_outbox_ids(s, now, limit, replies_only=self.quiet(now)))
            s.expunge_all()
        by_target: dict[tuple[str, str], list[Outbox]] = defaultdict(list)
        for row in rows:
            by_target[(row.channel, row.target)].append(row)
        futures = [self.pool.submit(self._send_target, group) for group in by_target.values()]
        total = PassResult()
        for f in futures:
            total.add(f.result())
        return total

    def quiet(self, now: datetime) -> bool:
        """Within [sender] quiet_hours: only replies to people's own messages go out; pushes wait."""
        return self.quiet_hours and self.cfg.quiet_end(now, self.tz) is not None

    def _send_target(self, rows: list[Outbox]) -> PassResult:
        result = PassResult()  # one per thread; run_once adds them up
        for row in rows:
            outcome = self._send_one(row, result)
            self._progress = time.monotonic()
            if outcome == BLOCKED:
                break  # the target waits as a whole (rate limit, or a row another sender holds)
        return result

    def stalled_for(self) -> float | None:
        """Seconds since the running background loop last finished a pass or a send; None when
        it is not running (not started, or stopped); infinite if its thread died."""
        if self._thread is None or self._stop.is_set():
            return None
        if not self._thread.is_alive():
            return float("inf")
        return time.monotonic() - self._progress

    def _send_one(self, row: Outbox, result: PassResult) -> str:
        """SENT, FAILED (tried again after its backoff; the target's later messages go on) or
        BLOCKED (the target's later messages wait too)."""
        now = self.clock.now()
        if row.channel == "webhook":
            wait = self.limiter.wait_time(row.target)
            if wait > 0:
                with session_scope(self.engine) as s:
                    obj = s.get(Outbox, row.id)
                    if obj.status == "pending":
                        obj.next_attempt_at = now + timedelta(seconds=wait)
                        s.add(obj)
                result.deferred += 1
                return BLOCKED
        with session_scope(self.engine) as s:
            if not queries.claim_outbox(s, row.id, now, timedelta(seconds=self.cfg.lease_seconds)):
                return BLOCKED
        try:
            attachment = self._build(row) if row.msgtype in ("file", "image") else None
            if row.channel == "webhook":
                self.limiter.record(row.target)
            if row.msgtype == "card_update":
                row = self._with_response_code(row)
            answer = self.transport.send(row, attachment)
        except SendError as exc:
            self._failed(row, str(exc), exc.retryable, result, exc.rate_limited)
            return BLOCKED if exc.rate_limited else FAILED
        except Exception as exc:  # a bug or an unexpected answer: keep the message, retry later
            log.exception("sending outbox %s %s", row.id, row.key)
            self._failed(row, f"{type(exc).__name__}: {exc}", True, result)
            return FAILED
        with session_scope(self.engine) as s:
            obj = s.get(Outbox, row.id)
            obj.status, obj.sent_at, obj.lease_until, obj.last_error = "sent", self.clock.now(), None, ""
            s.add(obj)
            if row.msgtype == "template_card" and isinstance(answer, dict):
                queries.card_sent(s, json.loads(row.payload)["card"]["task_id"], answer.get("response_code", ""),
                                  obj.sent_at)
        result.sent += 1
        return SENT

    def _build(self, row: Outbox) -> bytes:
        """A file or picture message's bytes, built now. One that cannot be built (a bug, data it
        cannot draw) is SendError, not retryable: it fails once with the reason instead of being
        retried max_attempts times; the database failing meanwhile is retried."""
        if self.file_source is None:
            raise SendError("no file generator configured", retryable=False)
        try:
            with Session(self.engine) as s:
                return self.file_source(s, row)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            log.exception("building outbox %s %s", row.id, row.key)
            raise SendError(f"cannot build the {row.msgtype}: {type(exc).__name__}: {exc}", retryable=False) from None

    def _with_response_code(self, row: Outbox) -> Outbox:
        """An update of a decision card carries the response_code the card's own sending got; the
        card went to the same person earlier in the outbox, so it was sent (or failed) first."""
        payload = json.loads(row.payload)
        with Session(self.engine) as s:
            card = queries.card_by_task(s, payload["task_id"])
        payload["response_code"] = card.response_code if card is not None else ""
        row.payload = json.dumps(payload, ensure_ascii=False)
        return row

    def _failed(self, row: Outbox, error: str, retryable: bool, result: PassResult,
                rate_limited: bool = False) -> None:
        with session_scope(self.engine) as s:
            obj = s.get(Outbox, row.id)
            obj.last_error = error[:1000]
            obj.lease_until = None
            if rate_limited:
                # A rate limit is a window, not an outage: come back when it has moved on, and do
                # not count it against max_attempts.
                obj.attempts -= 1
            if retryable and obj.attempts < self.cfg.max_attempts:
                obj.status = "pending"
                delay = timedelta(seconds=self.cfg.rate_limit_retry_seconds) if rate_limited \
                    else self.cfg.backoff(obj.attempts)
                obj.next_attempt_at = self.clock.now() + delay
                result.retried += 1
            else:
                obj.status = "failed"
                result.failed += 1
            s.add(obj)
        log.log(logging.INFO if rate_limited else logging.WARNING, "outbox %s %s to %s: %s",
                row.id, row.key, show_target(row.channel, row.target), error)

    def drain(self, timeout: float) -> PassResult:
        """Send until nothing is due or pending, or until `timeout` seconds pass (real time)."""
        total = PassResult()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            total.add(self.run_once())
            with Session(self.engine) as s:
                counts = queries.outbox_counts(s)
            if not counts.get("pending") and not counts.get("sending"):
                break
            time.sleep(min(self.cfg.poll_seconds, max(0.0, end - time.monotonic())))
        return total

    # -- background loop for `serve`
    def start(self) -> None:
        self._progress = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="outbox-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        idle = self.cfg.poll_seconds
        watch = outage(self.engine)
        while not self._stop.is_set():
            busy = False
            try:
                if self.fetch is not None:  # first: what it has to tell people goes out in this pass
                    try:
                        busy = self.fetch() > 0
                    except Exception as exc:
                        if unavailable(exc):
                            raise
                        log.exception("fetching attachments failed")
                r = self.run_once()
                self._progress = time.monotonic()
                busy = busy or bool(r.sent or r.retried)
                watch.ok()
                idle = self.cfg.poll_seconds
            except Exception as exc:
                if not unavailable(exc):
                    log.exception("outbox pass failed")
                else:  # logged once for the outage; polled less and less often, up to POLL_BACKOFF_MAX
                    watch.failed(exc)
                    idle, busy = min(idle * 2, max(POLL_BACKOFF_MAX, self.cfg.poll_seconds)), False
            if not busy:
                self._stop.wait(idle)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.pool.shutdown(wait=True)
