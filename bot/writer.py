"""The inbound writer: chat messages from the callback are handled in batches, one write transaction
per batch (group commit). `duban serve` runs it in a child process, on a core of its own
(bot/writer_process.py); tests and `build_asgi(app)` run it in the server process.

Under load, callbacks arrive faster than one transaction each can be committed; whatever arrived
together becomes one batch. A lone message is handled at once, so there is no waiting to fill a
batch.

SQLite has one writer at a time and a message costs it about 0.1 ms, so a batch is handled right
on the event loop, once per loop iteration, with what the loop has read meanwhile. Handing it to a
thread costs more than the handling itself: the thread and the loop pass the GIL back and forth at
every SQLite call (bench/callback.py: 2,000 -> 2,300 callbacks a second). Two kinds of work go to
the writer thread instead, so the loop never waits long: commands that work over every unit (状态,
排名, 提醒 ...), and batches that find the write lock held (a job writing). While the thread has
work, later messages queue behind it, so one person's messages are handled in the order they came.

PostgreSQL waits on a network round trip at every statement, so it uses two threads, each taking
whatever has queued as one batch. Measured with bench/callback.py at 64 clients, writer process,
AMD machine: one message a transaction on 3 threads 317 callbacks a second; batches on 1 thread
287, on 2 threads 404-408, on 3 threads 355 (the round trips of one thread overlap the other's
Python; more threads only contend for the GIL); again with 3 statements a 汇报 instead of 8:
1 thread 856, 2 threads 1,041-1,162, 3 threads 1,027. Two batches can take the same rows in opposite
order (two people closing each other's problems at once): PostgreSQL then cancels one statement
(deadlock, after deadlock_timeout); its batch is rolled back and run again with savepoints, where
a message that collides is handled again after the batch commits (bot/app.py). A person's next
message waits until their last one is answered, so each person's messages are handled in the
order they came, whichever thread takes them.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading

from bot.app import Application, Outcome
from db.session import write_lock

log = logging.getLogger("duban.writer")

_STOP = object()

Message = tuple[str, str, str]  # userid, text, msg_id


class MessageWriter:
    def __init__(self, app: Application, max_batch: int | None = None, threads: int | None = None,
                 inline: bool | None = None):
        self.app = app
        sqlite = app.engine.dialect.name == "sqlite"
        self.max_batch = max_batch or 64
        self.threads = threads or (1 if sqlite else 2)
        self._lock = write_lock(app.engine)
        # Inline needs the write lock to try without waiting (SQLite); inline=False: threads only.
        self.inline = self._lock is not None and inline is not False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Touched on the event loop only:
        self._pending: list[tuple[Message, asyncio.Future]] = []  # for the next inline batch
        self._in_threads = 0  # handed to the threads and not answered yet
        self._last: dict[str, asyncio.Future] = {}  # threads only: each person's latest message

    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._run, name=f"duban-writer-{n}", daemon=True)
                             for n in range(self.threads)]
            for t in self._threads:
                t.start()

    def stop(self) -> None:
        """Finish what was handed in, then end the threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join()
        self._threads = []

    async def handle(self, userid: str, text: str, msg_id: str) -> Outcome:
        """Handle one message; raises what handling raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        item = ((userid, text, msg_id), future)
        if not self.inline:
            self._in_turn(loop, userid, item)
            # Shielded: a caller that gives up does not cancel the message while it waits its turn or
            # runs, so the person's next message still waits for it to be answered.
            return await asyncio.shield(future)
        if not self._in_threads and not self.app.dispatcher.whole_org(text):
            self._pending.append(item)
            if len(self._pending) == 1:
                loop.call_soon(self._flush, loop)
        else:
            # Whatever waits for the next inline batch came first: it goes first.
            pending, self._pending = self._pending, []
            self._to_threads(loop, [*pending, item])
        return await future

    def _in_turn(self, loop: asyncio.AbstractEventLoop, userid: str, item: tuple[Message, asyncio.Future]) -> None:
        """Hand the message to the threads once the person's previous message is answered."""
        future = item[1]
        previous, self._last[userid] = self._last.get(userid), future

        def forget(_):
            if self._last.get(userid) is future:
                del self._last[userid]

        future.add_done_callback(forget)
        if previous is None:
            self._to_threads(loop, [item])
        else:
            previous.add_done_callback(lambda _: self._to_threads(loop, [item]))

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the messages read in this loop iteration as one batch, on the loop."""
        batch, self._pending = self._pending, []
        if not batch:
            return  # they went to the threads meanwhile
        if not self._lock.acquire(blocking=False):
            self._to_threads(loop, batch)  # a job is writing: don't hold up the loop waiting for it
            return
        try:
            results = self._handle([message for message, _ in batch])
        finally:
            self._lock.release()
        for (_, future), result in zip(batch, results):
            _settle(future, result)

    def _to_threads(self, loop: asyncio.AbstractEventLoop, items: list[tuple[Message, asyncio.Future]]) -> None:
        self.start()  # an app served without its lifespan (e.g. mounted elsewhere) still works
        self._in_threads += len(items)
        for message, future in items:
            self._queue.put((message, loop, future))

    def _answered(self, future: asyncio.Future, result) -> None:
        self._in_threads -= 1
        _settle(future, result)

    def _handle(self, messages: list[Message]) -> list:
        try:
            return self.app.handle_batch(messages)
        except Exception as exc:  # handle_batch reports per message; this is a bug guard
            log.exception("writer batch failed")
            return [exc] * len(messages)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:  # this thread's stop: end after this batch
                    stop = True
                    break
                batch.append(item)
            results = self._handle([message for message, _, _ in batch])
            for (_, loop, future), result in zip(batch, results):
                try:
                    loop.call_soon_threadsafe(self._answered, future, result)
                except RuntimeError:  # the event loop is gone (server shut down): nobody waits
                    pass
            if stop:
                return


def _settle(future: asyncio.Future, result) -> None:
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
