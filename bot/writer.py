"""The inbound writer: one thread handles chat messages from the callback in batches, one write
transaction per batch (group commit).

Under load, callbacks arrive faster than one transaction each can be committed; whatever arrived
while the previous batch ran becomes the next batch. A lone message is handled at once, so there is
no waiting to fill a batch. One thread also means the event loop hands work to one place instead of
forty pool threads queueing on a lock (and on the GIL behind it). SQLite has one writer at a time,
so it gets one thread; PostgreSQL takes writers in parallel and each statement waits on a round
trip, so it gets a few.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading

from bot.app import Application, Outcome

log = logging.getLogger("duban.writer")

_STOP = object()


class MessageWriter:
    def __init__(self, app: Application, max_batch: int | None = None, threads: int | None = None):
        self.app = app
        sqlite = app.engine.dialect.name == "sqlite"
        # SQLite: one writer at a time, so one thread and large batches. PostgreSQL: several
        # threads, one message per transaction; a batch would hold the row locks of several tasks
        # while another thread's batch takes them in another order (deadlock), and its throughput
        # is the same either way (bench/callback.py).
        self.max_batch = max_batch or (64 if sqlite else 1)
        self.threads = threads or (1 if sqlite else 8)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

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
        """Handle one message in the writer thread; raises what handling raised."""
        if not self._threads:
            self.start()  # an app served without its lifespan (e.g. mounted elsewhere) still works
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(((userid, text, msg_id), loop, future))
        return await future

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
            try:
                results = self.app.handle_batch([message for message, _, _ in batch])
            except Exception as exc:  # handle_batch reports per message; this is a bug guard
                log.exception("writer batch failed")
                results = [exc] * len(batch)
            for (_, loop, future), result in zip(batch, results):
                try:
                    loop.call_soon_threadsafe(_settle, future, result)
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
