"""The Application: wires config, database, clock, dispatcher and renderer, and runs the pipeline

    inbound text -> dispatcher -> handler (pure, through db/) -> template -> outbox

for chat messages; jobs use enqueue_push() with the same templates and outbox.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.render import Renderer
from bot.reply import Push, Target, UserError
from bot.router import Context, Dispatcher
from bot.text import split_message
from db import queries
from db.models import Unit
from db.prepared import NeedsSavepoints, Savepoint, Unguarded, WholeTransaction
from db.session import make_engine, migrate, session_scope

log = logging.getLogger("duban")

TEXT_LIMIT = 2048
MARKDOWN_LIMIT = 4096


@dataclass
class Outcome:
    reply: str


def unit_target(unit: Unit) -> Target | None:
    """A unit's group: its app chat if it has one, else its group robot."""
    if unit.chat_id:
        return Target("appchat", unit.chat_id)
    if unit.webhook_key:
        return Target("webhook", unit.webhook_key)
    return None


def broadcast_target(config: Config) -> Target | None:
    if config.broadcast.chat_id:
        return Target("appchat", config.broadcast.chat_id)
    if config.broadcast.webhook_key:
        return Target("webhook", config.broadcast.webhook_key)
    return None


def _collided(exc: Exception) -> bool:
    """A concurrent writer got there first: the same key (IntegrityError), or PostgreSQL chose this
    transaction to give way (deadlock, serialisation failure)."""
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def _rollback(s: Session, savepoint: Savepoint | Unguarded | WholeTransaction) -> None:
    """Undo one message's writes; the outbox keys it queued are forgotten with them."""
    savepoint.rollback()
    s.info.pop("outbox_keys", None)


class Application:
    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        clock: Clock | None = None,
        dispatcher: Dispatcher | None = None,
    ):
        from handlers import ROUTERS

        self.config = config
        self.engine = engine or make_engine(config.database.url)
        self.clock = clock or SystemClock()
        self.dispatcher = dispatcher or Dispatcher(ROUTERS)
        self.renderer = Renderer(config.schedule.tz)

    @property
    def tz(self):
        return self.config.schedule.tz

    def migrate(self) -> None:
        migrate(self.engine)

    def session(self):
        return session_scope(self.engine)

    # ------------------------------------------------------------ inbound

    def handle_message(self, userid: str, text: str, msg_id: str = "") -> Outcome:
        """Handle one chat message; the same msg_id is handled once and answered the same way."""
        result = self.handle_batch([(userid, text, msg_id)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def handle_batch(self, messages: list[tuple[str, str, str]]) -> list[Outcome | Exception]:
        """Handle (userid, text, msg_id) messages in order, in one write transaction (group commit:
        one commit for many messages). Each message is kept apart: a wrong form or a failing handler
        drops only that message's writes. Most messages are never undone, or are found wrong before
        they write, so a batch is first tried without savepoints; if a message that wrote has to be
        undone, the transaction is rolled back and the batch run again with a savepoint a message.
        A message whose write collides with a concurrent writer (the same MsgId from another
        replica, two new codes at once) is handled again after the others are committed; if the
        transaction as a whole fails, every message is handled again alone, so one cannot fail the
        others. Returns an Outcome or the exception."""
        results: dict[int, Outcome | Exception] = {}
        todo = list(range(len(messages)))
        guard = Unguarded
        attempts = 0
        while todo and attempts < 3:
            collided = []
            # Without savepoints, the answers are remembered all at once, at the end of the batch.
            answered: dict[str, tuple] | None = {} if guard is Unguarded and len(todo) > 1 else None
            try:
                with self.session() as s:
                    for i in todo:
                        begin = WholeTransaction if len(todo) == 1 else guard
                        result = self._handle_one(s, *messages[i], begin=begin, answered=answered)
                        if result is None:
                            collided.append(i)
                        else:
                            results[i] = result
                    if answered:
                        try:
                            queries.record_processed_many(s, list(answered.values()))
                        except IntegrityError:  # another writer answered one of these MsgIds meanwhile
                            raise NeedsSavepoints from None
            except NeedsSavepoints:
                # Rolled back: the same messages again, each in a savepoint (not counted as a try).
                guard = Savepoint
                for i in todo:
                    results.pop(i, None)
                continue
            except Exception as exc:
                # Nothing of the transaction is kept; alone, a message can fail only itself.
                for i in todo:
                    results[i] = exc if len(todo) == 1 else self.handle_batch([messages[i]])[0]
                collided = []
            todo = collided
            attempts += 1
        for i in todo:
            results[i] = RuntimeError(f"message {messages[i][2]!r} kept colliding with concurrent writes")
        return [results[i] for i in range(len(messages))]

    def _handle_one(self, s: Session, userid: str, text: str, msg_id: str,
                    begin: type[Savepoint | Unguarded | WholeTransaction] = Savepoint,
                    answered: dict[str, tuple] | None = None) -> Outcome | Exception | None:
        """One message inside the batch transaction. None: it collided, try again later. `begin`:
        how its writes are kept apart (a savepoint; none, as long as it need not be undone once it
        wrote; or, where the transaction holds this message only, the transaction itself).
        `answered`: where to leave the answer to its MsgId for the batch to record, instead of
        recording it at once; a MsgId answered earlier in the batch gets the same answer."""
        now = self.clock.now()
        if answered is not None and msg_id in answered:
            return Outcome(answered[msg_id][2])
        seen, member, unit = queries.incoming(s, userid, msg_id)
        if seen is not None:
            return Outcome(seen)
        if member is None:
            # Unknown people are told whom to ask; nothing about them is stored.
            return Outcome(self.renderer.render("unknown_user", userid=userid))
        ctx = Context(session=s, member=member, unit=unit, now=now, config=self.config, msg_id=msg_id)
        savepoint = begin(s)
        try:
            try:
                reply = self.dispatcher.dispatch(ctx, text)
                text_out = self.renderer.render(reply.template, **reply.data)
                prefix = f"reply:{msg_id or now.isoformat()}"
                text_out = self._fit_reply(s, text_out, userid, prefix)
                for i, push in enumerate(reply.pushes):
                    self.enqueue_push(s, push, f"{prefix}:{push.key or i}")
            except UserError as err:
                # Render while the objects it names are still loaded, then drop every write.
                text_out = self.renderer.render(err.template, **err.data)
                _rollback(s, savepoint)
                savepoint = begin(s)
            if msg_id and answered is not None:
                answered[msg_id] = (msg_id, userid, text_out, now)
            elif msg_id:
                queries.record_processed(s, msg_id, userid, text_out, now)
            savepoint.release()
        except NeedsSavepoints:
            raise
        except Exception as exc:
            if answered is not None:
                answered.pop(msg_id, None)
            _rollback(s, savepoint)
            if _collided(exc):
                return None  # a concurrent writer got there first: again, after this batch commits
            return exc
        return Outcome(text_out)

    def _fit_reply(self, s: Session, text: str, userid: str, prefix: str) -> str:
        """A passive reply is a text message (2048 bytes at most): a longer answer (状态, 排名 of many
        units) goes out as its first part, and the rest follows as app messages, in order."""
        if len(text.encode()) <= TEXT_LIMIT:
            return text
        note = self.renderer.render("reply_continued")
        parts = split_message(text, TEXT_LIMIT - len(note.encode()) - 1)
        now = self.clock.now()
        for n, part in enumerate(parts[1:], 2):
            queries.enqueue(s, f"{prefix}:part{n}", "app", userid, "text", {"content": part}, now)
        return f"{parts[0]}\n{note}"

    # ------------------------------------------------------------ outbound

    def enqueue_push(self, s: Session, push: Push, key: str) -> int:
        """Render a push and put it in the outbox (split to fit WeCom's limits). Returns rows added."""
        now = self.clock.now()
        target = push.target
        if push.file is not None:
            return int(queries.enqueue(s, key, target.channel, target.id, "file", push.file, now, push.filename))
        content = self.renderer.render(push.template, channel=target.channel, **push.data)
        msgtype = "markdown" if push.markdown else "text"
        limit = TEXT_LIMIT if msgtype == "text" else MARKDOWN_LIMIT
        chunks = split_message(content, limit)
        added = 0
        for n, chunk in enumerate(chunks, 1):
            payload: dict = {"content": chunk}
            if push.mentions and target.channel == "webhook" and msgtype == "text":
                payload["mentioned_list"] = push.mentions
            part_key = key if len(chunks) == 1 else f"{key}#{n}/{len(chunks)}"
            added += queries.enqueue(s, part_key, target.channel, target.id, msgtype, payload, now)
        return added
