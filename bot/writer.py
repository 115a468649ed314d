"""The inbound writer: one thread that handles chat messages from the callback.

The callback puts each decrypted message on a queue and awaits its reply. The thread takes
whatever has queued (up to `max_batch`), handles it as one batch in one write transaction
(Application.handle_batch: one commit for many messages under load, each message kept apart), and
only then hands each reply back to the event loop. One thread takes the messages in the order
they came, so a person's messages are handled in that order; the event loop never waits on the
database, so the server keeps answering (health checks, URL checks, other callbacks) while a long
admin command or a job holds the database. A callback waits for its reply until a deadline
(`within`): WeCom gives up after 5 s, so what is not ready by then is handed on once it is.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Awaitable, Callable

from bot.app import Application

log = logging.getLogger("duban.writer")

Message = tuple  # userid, text, msg_id[, chat, once, media, tap]: Application.handle_one's arguments
_STOP = object()


class MessageWriter:
    def __init__(self, app: Application, max_batch: int = 64):
        self.app = app
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._late: set[asyncio.Future] = set()  # replies on their way past their callback's deadline

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="duban-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Finish what was handed in, then end the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def handle(self, userid: str, text: str, msg_id: str, chat: str = "", once: bool = False,
                     media: tuple[str, str] | None = None, tap: tuple[str, str] | None = None) -> str:
        """Handle one message and return its reply; raises what handling raised. `chat`: the group
        it was said in ("" for 1:1); `once`: a repeated msg_id gets "" (see Application.handle_one);
        `media`: a picture or file message, (kind, media_id); `tap`: a card's button, (TaskId, EventKey)."""
        self.start()  # an app served without its lifespan (mounted elsewhere) still works
        future = asyncio.get_running_loop().create_future()
        self._queue.put(((userid, text, msg_id, chat, once, media, tap), future))
        return await future

    async def within(self, seconds: float, late: Callable[[str | Exception], Awaitable[None]], userid: str,
                     text: str, msg_id: str, chat: str = "", media: tuple[str, str] | None = None) -> str | None:
        """handle(), waiting `seconds` at most: the reply; or None when it is not ready by then, and
        `late` gets the reply (or what handling raised) once it is. Raises what handling raised in time."""
        task = asyncio.ensure_future(self.handle(userid, text, msg_id, chat, media=media))
        try:
            return await asyncio.wait_for(asyncio.shield(task), seconds)
        except TimeoutError:
            follow = asyncio.ensure_future(self._hand_on(task, late))
            self._late.add(follow)  # (a reference, so the task is not collected half-way)
            follow.add_done_callback(self._late.discard)
            return None

    @staticmethod
    async def _hand_on(task: asyncio.Future, late: Callable[[str | Exception], Awaitable[None]]) -> None:
        try:
            result = await task
        except Exception as exc:
            result = exc
        await late(result)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:  # end after this batch
                    stop = True
                    break
                batch.append(item)
            try:
                results = self.app.handle_batch([message for message, _ in batch])
            except Exception as exc:  # handle_batch reports per message; this is a bug guard
                log.exception("writer batch of messages %s failed", " ".join(m[2] for m, _ in batch))
                results = [exc] * len(batch)
            # One wake-up of the event loop for the whole batch, not one a message.
            by_loop: dict = {}
            for (_, future), result in zip(batch, results):
                by_loop.setdefault(future.get_loop(), []).append((future, result))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # the event loop is gone (server shut down): nobody waits
                    pass


def _settle(settled: list[tuple[asyncio.Future, object]]) -> None:
    for future, result in settled:
        if future.cancelled():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
