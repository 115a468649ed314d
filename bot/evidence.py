"""Evidence: pictures and files people send the app, fetched from WeCom after their message is answered.

A picture's message only records it (pending, with WeCom's media_id) in the message's transaction and
is answered at once. `Fetcher.run_once`, a step of the outbox worker's loop, then downloads it
(media/get), checks its size ([storage] max_mb) and its type by its content (the `filetype` package:
magic numbers, and the parts inside an Office file's zip), and stores it by the SHA-256 of its bytes,
or tells the sender why not. A download that fails is retried with the sender's backoff (WeCom keeps
the media three days); the 汇报 / 整改 / 反馈 it belongs to was stored with the message either way.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import filetype
from sqlmodel import Session

from bot.config import Config
from bot.excel.lists import is_workbook, take
from bot.reply import Push, Target
from bot.wecom.api import Media, SendError
from db import queries
from db.models import (
    ATTACH_FAILED, ATTACH_PENDING, ATTACH_REJECTED, ATTACH_STORED, LISTS_CODE, Attachment, Member, Unit,
)
from db.session import session_scope

log = logging.getLogger("duban.evidence")

# What may be kept, by the type its content shows: pictures, and the office documents a unit's
# evidence comes in. Not zip and the like: an archive can hold anything, and a reviewer cannot open it
# on a phone.
ALLOWED = ("jpg", "png", "gif", "webp", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx")


class Rejected(Exception):
    """The file is not kept: `reason` is too_large, bad_type or, for a unit's lists, not_workbook
    (what attach_push.j2 and lists_push.j2 say)."""

    def __init__(self, reason: str, found: str = ""):
        super().__init__(reason)
        self.reason, self.found = reason, found


class Store:
    """Files under one folder, named by content: <root>/ab/ab12….jpg. The same bytes are one file."""

    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), max_bytes

    def path(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, data: bytes) -> tuple[str, str]:
        """Keep `data`; returns its SHA-256 and the extension of its type. Raises Rejected."""
        if len(data) > self.max_bytes:
            raise Rejected("too_large")
        kind = filetype.guess(data)
        if kind is None or kind.extension not in ALLOWED:
            raise Rejected("bad_type", kind.extension if kind else "")
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha, kind.extension)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{sha}.{os.getpid()}.{threading.get_ident()}.part")
            with open(partial, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # on disk before the database says "stored"
            os.replace(partial, path)  # whole or not at all, also with two fetchers at once
        return sha, kind.extension

    def read(self, attachment: Attachment) -> bytes:
        return self.path(attachment.sha256, attachment.ext).read_bytes()


def store_for(config: Config) -> Store:
    return Store(config.storage.path(config.database.url), config.storage.max_bytes)


def read(s: Session, config: Config, attachment_id: int) -> bytes:
    """A stored attachment's bytes (an outbox image message of a 亮点's picture)."""
    return store_for(config).read(s.get(Attachment, attachment_id))


class MediaSource(Protocol):
    def media(self, media_id: str, limit: int) -> Media: ...


class LocalFiles:
    """Console mode (`duban chat --file PATH`): a media id `local:PATH` names a file on this machine,
    read as media/get would give it. Only `duban chat` fetches with it, and only without WeCom."""

    PREFIX = "local:"

    def media(self, media_id: str, limit: int) -> Media:
        path = Path(media_id.removeprefix(self.PREFIX))
        try:
            size = path.stat().st_size
            return Media(None, size, path.name) if size > limit else Media(path.read_bytes(), size, path.name)
        except OSError as exc:
            raise SendError(f"{type(exc).__name__}: {path}", retryable=False) from None


class Fetcher:
    """Downloads what is pending, one at a time (pictures are few); safe across replicas: each is
    claimed first, with a lease that runs out if the process dies mid-download."""

    def __init__(self, app, source: MediaSource):
        self.app, self.source = app, source
        self.store = store_for(app.config)

    def run_once(self, limit: int = 5) -> int:
        """Fetch what is due now, a few at a time (the outbox's sends wait meanwhile). Returns how
        many were tried."""
        with Session(self.app.engine) as s:
            ids = queries.due_attachment_ids(s, self.app.clock.now(), limit)
        return sum(self._fetch(i) for i in ids)

    def _fetch(self, attachment_id: int) -> bool:
        with session_scope(self.app.engine) as s:
            if not queries.claim_attachment(s, attachment_id, self.app.clock.now(),
                                            timedelta(seconds=self.app.config.sender.lease_seconds)):
                return False
            att = s.get(Attachment, attachment_id)
            media_id, for_lists = att.media_id, att.code == LISTS_CODE
        try:
            media = self.source.media(media_id, self.store.max_bytes)
            if media.data is None:
                raise Rejected("too_large")
            if for_lists:
                self._lists(attachment_id, media)
                return True
            sha, ext = self.store.put(media.data)
        except Rejected as exc:
            self._finish(attachment_id, ATTACH_REJECTED, found=exc.found, error=exc.reason)
        except SendError as exc:
            self._failed(attachment_id, str(exc), exc.retryable)
        except Exception as exc:  # a bug or a full disk: keep the attachment, try again later
            log.exception("fetching attachment %s", attachment_id)
            self._failed(attachment_id, f"{type(exc).__name__}: {exc}", True)
        else:
            self._finish(attachment_id, ATTACH_STORED, sha256=sha, ext=ext, size=media.size, name=media.name,
                         stored_at=self.app.clock.now(), error="")
        return True

    def _lists(self, attachment_id: int, media: Media) -> None:
        """A unit's lists from its 负责人: an .xlsx is checked and, when good, kept as the unit's
        submission (bot/excel/lists.py) and its file stored; the sender is told either way."""
        if not is_workbook(media.data):
            raise Rejected("not_workbook")
        now = self.app.clock.now()
        with session_scope(self.app.engine) as s:
            att = s.get(Attachment, attachment_id)
            reply = take(s, s.get(Unit, att.unit_id), s.get(Member, att.userid), media.data, now, "chat", media.name)
            stored = "submission" in reply.data
            if stored:
                att.sha256, att.ext = self.store.put(media.data)
                att.size, att.name, att.stored_at = media.size, media.name, now
            att.status, att.lease_until, att.error = (ATTACH_STORED, None, "") if stored else \
                (ATTACH_REJECTED, None, "lists_invalid")
            s.add(att)
            self.app.enqueue_push(s, Push(Target("app", att.userid), reply.template, reply.data, markdown=False),
                                  f"reply:{att.userid}:lists{att.id}")
            for i, push in enumerate(reply.pushes):
                self.app.enqueue_push(s, push, f"push:lists{att.id}:{push.key or i}")

    def _failed(self, attachment_id: int, error: str, retryable: bool) -> None:
        """The download failed: again after a while (the sender's backoff), or for good."""
        sender = self.app.config.sender
        with session_scope(self.app.engine) as s:
            att = s.get(Attachment, attachment_id)
            if retryable and att.attempts < sender.max_attempts:
                delay = sender.backoff(att.attempts)
                att.status, att.lease_until, att.error = ATTACH_PENDING, None, error
                att.next_attempt_at = self.app.clock.now() + delay
                s.add(att)
                log.warning("attachment %s: %s; trying again in %.0f s", attachment_id, error, delay.total_seconds())
                return
        log.warning("attachment %s: %s; given up", attachment_id, error)
        self._finish(attachment_id, ATTACH_FAILED, error=error)

    def _finish(self, attachment_id: int, status: str, found: str = "", **values) -> None:
        """Stored, rejected or failed for good; the sender hears of the last two."""
        with session_scope(self.app.engine) as s:
            att = s.get(Attachment, attachment_id)
            att.status, att.lease_until = status, None
            for key, value in values.items():
                setattr(att, key, value)
            s.add(att)
            if status != ATTACH_STORED:
                # Their own message caused it: a reply (the quiet hours never hold it).
                data = {"att": att, "found": found, "max_mb": self.app.config.storage.max_mb, "allowed": ALLOWED}
                what = "lists" if att.code == LISTS_CODE else "attach"
                self.app.enqueue_push(s, Push(Target("app", att.userid), f"{what}_push", data, markdown=False),
                                      f"reply:{att.userid}:{what}{att.id}")
