"""The inbound writer in a child process: `duban serve` answers WeCom on one core and handles the
messages on another.

One Python process runs one thread of Python at a time (the GIL). Handling a 汇报 costs about as
much CPU as the whole wire around it (verify, decrypt, parse, encrypt the reply, HTTP), so a server
doing both in one process is held to one core: about half of what a server doing only the wire can
answer (bench/callback.py). Here the server process keeps the wire and forwards each message over a
pipe to a child process, which runs the same MessageWriter (bot/writer.py: batches, threads,
per-person order) on its own event loop and sends back the replies.

What crosses the pipe: the server sends lists of (seq, (userid, text, msg_id)) in the order the
messages came, the child sends back lists of (seq, reply) or (seq, _Failed(text)). One list per
event-loop iteration each way, so a burst costs a few pipe writes, not one per message.

The child goes away with the server: it reads end-of-file when the server process dies (SIGKILL
included), finishes what it holds, and exits; it ignores SIGINT and SIGTERM, which a terminal or a
service manager sends to the whole process group, so the server decides when it stops. If the
child dies, the server starts another and sends it every message not yet answered, in order:
whatever the dead child committed is answered from the MsgId dedupe, word for word, so nothing is
lost and nothing is stored twice. A child that holds a message for two minutes without answering is
taken for stuck and replaced the same way. A message on which a child died twice is answered with
an error instead of killing a third.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bot.app import Application, Outcome
from bot.writer import Message, MessageWriter, _settle

log = logging.getLogger("duban.writer")

START_TIMEOUT = 60.0
MAX_TRIES = 2  # children a message may take down with it before it is answered with an error
# A child that has not answered a message for this long is stuck (a hung C call, a lock never
# released): it is killed and replaced like one that died. Far above the slowest command measured
# (the annual export of 2,000 units, 2.3 s) and a job holding the write lock meanwhile.
STALL_SECONDS = 120.0
_ROOT = str(Path(__file__).resolve().parent.parent)  # where the `bot` package is
_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
         "from bot.writer_process import child_main; child_main(int(sys.argv[1]))")


@dataclass(frozen=True)
class _Failed:
    """Handling raised in the child (logged there with its traceback); the server answers an error."""

    text: str


@dataclass
class _Waiting:
    message: Message
    future: asyncio.Future
    tries: int = 0
    sent_at: float | None = None  # loop time it went to the current child


def build_app(config, clock) -> Application:
    """The child's Application: the server's config and a copy of its clock."""
    return Application(config, clock=clock)


class ProcessWriter:
    """MessageWriter's interface (start, stop, handle), with the handling done in a child process.
    `factory` builds the child's Application there; it must pickle (a module-level function or a
    functools.partial of one)."""

    def __init__(self, app: Application, factory: Callable[[], Application] | None = None,
                 start_timeout: float = START_TIMEOUT, stall_seconds: float = STALL_SECONDS):
        self.factory = factory or functools.partial(build_app, app.config, app.clock)
        self.start_timeout = start_timeout
        self.stall_seconds = stall_seconds
        self._seq = itertools.count()
        # Touched on the event loop only:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc = None
        self._conn = None
        self._waiting: dict[int, _Waiting] = {}  # sent or to send, not answered yet
        self._outgoing: list[int] = []  # to send at the end of this loop iteration
        self._restarting = False
        self._stopping = False
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None while there is none)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child and wait until it is ready; call it on the event loop (the server's
        lifespan). Raises RuntimeError if the child cannot start (its reason in the message)."""
        if self._conn is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._attach(*self._spawn())

    def stop(self) -> None:
        """Let the child finish and answer what it holds, then end it."""
        self._stopping = True
        conn, proc = self._conn, self._proc
        if conn is not None:
            self._detach()
            try:
                conn.send(None)
                # Read its answers while it finishes: a child blocked on a full pipe never ends.
                deadline = time.monotonic() + self.start_timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    if conn.poll(0.05):
                        self._settle_all(conn.recv())
                while conn.poll():
                    self._settle_all(conn.recv())
            except (EOFError, OSError):
                pass
            conn.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        self._proc = None
        self._fail_all("the server stopped before this message was handled")

    async def handle(self, userid: str, text: str, msg_id: str) -> Outcome:
        """Handle one message in the child; raises RuntimeError if it could not be handled."""
        if self._conn is None and not self._restarting:
            self.start()  # an app served without its lifespan still works
        seq = next(self._seq)
        future = self._loop.create_future()
        self._waiting[seq] = _Waiting((userid, text, msg_id), future)
        self._outgoing.append(seq)
        if len(self._outgoing) == 1:
            self._loop.call_soon(self._send)
        return Outcome(await future)

    # ------------------------------------------------------------ the pipe

    def _spawn(self):
        """A new child, ready for messages: (process, connection). Blocks until it is ready.

        A plain `python -c` with the pipe's socket passed down, not multiprocessing's spawn: that
        re-runs the main module of whatever program started the server, and starts a resource
        tracker process besides."""
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno()), _ROOT],
                                pass_fds=[theirs.fileno()])
        theirs.close()
        conn = Connection(ours.detach())
        try:
            conn.send(sys.path)
            conn.send((self.factory, logging.getLogger().level))
            if not conn.poll(self.start_timeout):
                raise RuntimeError(f"did not start within {self.start_timeout:.0f} s")
            hello = conn.recv()
        except (EOFError, OSError):
            hello = ("failed", f"exited with code {proc.wait()}")
        except RuntimeError as exc:
            hello = ("failed", str(exc))
        if hello[0] != "ready":
            conn.close()
            proc.kill()
            proc.wait()
            raise RuntimeError(f"writer process could not start: {hello[1]}")
        log.info("writer process %s started", proc.pid)
        return proc, conn

    def _attach(self, proc, conn) -> None:
        self._proc, self._conn = proc, conn
        self._loop.add_reader(conn.fileno(), self._readable)
        self._watch()
        # A new child takes every message not answered yet, in the order they came.
        self._outgoing = sorted(self._waiting)
        if self._outgoing:
            self._send()

    def _detach(self) -> None:
        if self._conn is not None:
            self._loop.remove_reader(self._conn.fileno())
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._conn = None

    def _watch(self) -> None:
        """Kill a child that has held a message for stall_seconds; _lost() then replaces it."""
        waited = self._loop.time() - min((w.sent_at for w in self._waiting.values() if w.sent_at is not None),
                                         default=self._loop.time())
        if waited > self.stall_seconds and self._proc is not None:
            log.error("writer process %s has not answered for %.0f s; replacing it", self._proc.pid, waited)
            self._proc.kill()  # its end of the pipe closes: _readable() sees end-of-file
        self._watchdog = self._loop.call_later(min(self.stall_seconds / 4, 5.0), self._watch)

    def _send(self) -> None:
        if self._conn is None:
            return  # the next child takes them
        seqs, self._outgoing = self._outgoing, []
        items = [(seq, self._waiting[seq].message) for seq in seqs if seq in self._waiting]
        if not items:
            return
        try:
            self._conn.send(items)
        except OSError:
            self._outgoing = seqs + self._outgoing  # not delivered: the next child takes them
            self._lost()
            return
        now = self._loop.time()
        for seq, _ in items:
            self._waiting[seq].sent_at = now

    def _readable(self) -> None:
        try:
            while self._conn is not None and self._conn.poll():
                self._settle_all(self._conn.recv())
        except (EOFError, OSError):
            self._lost()

    def _settle_all(self, answers: list[tuple[int, object]]) -> None:
        for seq, result in answers:
            waiting = self._waiting.pop(seq, None)
            if waiting is not None:
                _settle(waiting.future, RuntimeError(f"writer process: {result.text}")
                        if isinstance(result, _Failed) else result)

    def _fail_all(self, why: str, seqs=None) -> None:
        for seq in list(self._waiting if seqs is None else seqs):
            _settle(self._waiting.pop(seq).future, RuntimeError(why))

    # ------------------------------------------------------------ a child that died

    def _lost(self) -> None:
        """The child is gone: start another and give it what is not answered yet."""
        if self._conn is None:
            return
        conn, proc = self._conn, self._proc
        self._detach()
        self._proc = None
        conn.close()
        if self._stopping:
            return
        log.error("writer process %s ended unexpectedly; starting another", proc.pid)
        given_up = []
        for seq, waiting in self._waiting.items():
            if waiting.sent_at is None:
                continue  # never sent: not handled by the dead child
            waiting.sent_at = None
            waiting.tries += 1
            # Without a MsgId a message cannot be told apart from its retry: if the child had
            # stored it, handling it again would store it twice.
            if waiting.tries >= MAX_TRIES or not waiting.message[2]:
                given_up.append(seq)
        if given_up:
            log.error("giving up on %d message(s) the writer process died on", len(given_up))
            self._fail_all("the writer process died while handling this message", given_up)
        self._restarting = True
        self._loop.run_in_executor(None, self._replace, proc).add_done_callback(self._replaced)

    def _replace(self, dead: subprocess.Popen):
        try:
            dead.wait(5)
        except subprocess.TimeoutExpired:
            dead.kill()
            dead.wait()
        log.error("writer process %s exited with code %s", dead.pid, dead.returncode)
        return self._spawn()

    def _replaced(self, future: asyncio.Future) -> None:
        self._restarting = False
        if self._stopping:
            if not future.exception():
                proc, conn = future.result()
                conn.close()
                proc.kill()
            return
        if future.exception():
            log.error("%s", future.exception())
            self._fail_all("the writer process could not be started again")
            return
        self._attach(*future.result())


# ---------------------------------------------------------------- the child


def child_main(fd: int) -> None:
    """The child's entry point: `fd` is its end of the pipe to the server."""
    # The server decides when this process stops: it sends None, or its end of the pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        # First the server's import path, so that its factory (perhaps from a module of its own)
        # unpickles here; then the factory and the server's log level.
        sys.path[:] = conn.recv()
        factory, log_level = conn.recv()
        logging.basicConfig(level=log_level or logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s[writer]: %(message)s")
        app = factory()
    except (EOFError, OSError):
        return  # the server is gone
    except BaseException as exc:  # noqa: BLE001 - told to the server, which refuses to start
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        asyncio.run(_serve(conn, app))
    finally:
        app.engine.dispose()


async def _serve(conn, app: Application) -> None:
    loop = asyncio.get_running_loop()
    writer = MessageWriter(app)
    writer.start()
    stopped = asyncio.Event()
    tasks: set[asyncio.Task] = set()
    answers: list[tuple[int, object]] = []

    def send_answers() -> None:
        batch = answers[:]
        answers.clear()
        try:
            conn.send(batch)
        except OSError:
            pass  # the server is gone: nobody waits for these

    def answered(seq: int, msg_id: str, task: asyncio.Task) -> None:
        tasks.discard(task)
        exc = task.exception()
        if exc is None:
            result: object = task.result().reply
        else:
            log.error("handling message %s", msg_id, exc_info=exc)
            result = _Failed(f"{type(exc).__name__}: {exc}")
        answers.append((seq, result))
        if len(answers) == 1:
            loop.call_soon(send_answers)

    def readable() -> None:
        try:
            while conn.poll():
                items = conn.recv()
                if items is None:
                    stopped.set()
                    return
                for seq, message in items:
                    task = loop.create_task(writer.handle(*message))
                    tasks.add(task)
                    task.add_done_callback(functools.partial(answered, seq, message[2]))
        except (EOFError, OSError):  # the server died: finish what is here, then end
            stopped.set()

    loop.add_reader(conn.fileno(), readable)
    gc.collect()
    gc.freeze()  # as in the server (bot/wire.py): full collections pause every message in flight
    conn.send(("ready", os.getpid()))
    await stopped.wait()
    loop.remove_reader(conn.fileno())
    while tasks:
        await asyncio.wait(list(tasks))
    await asyncio.sleep(0)  # the last answers' send_answers
    if answers:
        send_answers()
    writer.stop()
