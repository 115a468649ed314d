"""The Application: wires config, database, clock, dispatcher and renderer, and runs the pipeline

    inbound text -> dispatcher -> handler (pure, through db/) -> template -> outbox

for chat messages; jobs use enqueue_push() with the same templates and outbox.

A batch of chat messages is one write transaction (handle_batch); each message in it runs through
the same short list of steps (handle_one):

    1. who, dedupe the sender and their unit (someone not on the roster is told whom to ask), and
                   the answer their MsgId got before, if any: given again, word for word
    2. savepoint   everything the message writes is kept apart from the other messages
    3. dispatch    router -> handler -> template -> outbox; a wrong form undoes the handler's writes
    4. remember    the answer is stored under the MsgId, in the same savepoint
"""
from __future__ import annotations

import logging

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.render import Renderer
from bot.reply import Push, UserError
from bot.router import Context, Dispatcher
from bot.text import split_message
from db import queries
from db.session import make_engine, migrate, session_scope

log = logging.getLogger("duban")

TEXT_LIMIT = 2048
MARKDOWN_LIMIT = 4096
MAX_TRIES = 3  # a message that collides with concurrent writers this often is given up


class Collided(Exception):
    """A concurrent writer got there first (another replica answered the same MsgId, took the same
    new code, or PostgreSQL chose this transaction to give way in a deadlock): handle the message
    again once the rest of its batch is committed."""


def _collided(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class Application:
    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        clock: Clock | None = None,
        dispatcher: Dispatcher | None = None,
    ):
        from handlers import ROUTERS, on_media

        self.on_media = on_media  # a picture or file message (handlers/evidence.py)
        self.config = config
        self.engine = engine or make_engine(config.database.url)
        self.clock = clock or SystemClock()
        self.dispatcher = dispatcher or Dispatcher(ROUTERS)
        self.renderer = Renderer(config.schedule.tz, org=config.org, ranking=config.ranking)

    @property
    def tz(self):
        return self.config.schedule.tz

    def migrate(self) -> None:
        migrate(self.engine)

    def session(self):
        return session_scope(self.engine)

    # ------------------------------------------------------------ inbound

    def handle_message(self, userid: str, text: str, msg_id: str = "") -> str:
        """Handle one chat message and return the reply; the same msg_id is handled once and
        answered the same way. Raises what handling raised."""
        result = self.handle_batch([(userid, text, msg_id)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def handle_batch(self, messages: list[tuple], tries: int = 1) -> list[str | Exception]:
        """Handle (userid, text, msg_id[, chat, once, media]) messages in order in one write transaction (one commit for
        many messages), each in a savepoint of its own: a message that fails loses only its own
        writes. Returns the reply, or the exception, for each message; none is answered before
        the transaction is committed. A message that collided with a concurrent writer is handled
        again after the others are committed; if the commit itself fails, every message is handled
        again alone, so that one message cannot fail the others."""
        results: dict[int, str | Exception] = {}
        again: list[int] = []
        try:
            with self.session() as s:
                for i, message in enumerate(messages):
                    try:
                        results[i] = self.handle_one(s, *message)
                    except Collided:
                        again.append(i)
                    except Exception as exc:
                        log.exception("message %s from %s failed", message[2], message[0])
                        results[i] = exc
        except Exception as exc:
            if len(messages) == 1:
                log.exception("message %s from %s: commit failed", messages[0][2], messages[0][0])
                return [exc]
            return [r for m in messages for r in self.handle_batch([m], tries)]
        for i in again:
            results[i] = (self.handle_batch([messages[i]], tries + 1)[0] if tries < MAX_TRIES else
                          RuntimeError(f"message {messages[i][2]!r} kept colliding with concurrent writes"))
        return [results[i] for i in range(len(messages))]

    def handle_one(self, s: Session, userid: str, text: str, msg_id: str, chat: str = "", once: bool = False,
                   media: tuple[str, str] | None = None) -> str:
        """One message inside the batch's transaction (the steps in the module docstring).
        `chat`: the group it was said in (the smart robot's chatid; "" in a 1:1 chat).
        `once`: a msg_id answered before gets "" (nothing) instead of the stored answer.
        `media`: a picture or file message, (kind, WeCom media_id), instead of text: it is recorded
        here and fetched afterwards (bot/evidence.py), never within this transaction."""
        now = self.clock.now()
        savepoint = s.begin_nested()
        try:
            who = queries.sender(s, userid, msg_id)
            if who is None:
                reply = self.renderer.render("unknown_user", userid=userid)  # nothing about them is stored
            elif msg_id and who.reply is not None:
                reply = "" if once else who.reply
            else:
                ctx = Context(session=s, member=who.member, unit=who.unit, now=now, config=self.config, msg_id=msg_id,
                              chat=chat, media=media)
                reply, refused = self._dispatch(s, ctx, text)
                if refused:  # a wrong form: the answer is kept, none of the handler's writes
                    savepoint.rollback()
                    savepoint = s.begin_nested()
                if msg_id:
                    queries.record_processed(s, msg_id, userid, reply, now)
            savepoint.commit()
        except Exception as exc:
            if savepoint.is_active:
                savepoint.rollback()
            if _collided(exc):
                raise Collided from exc
            raise
        finally:
            queries.forget_pending_outbox(s)
        return reply

    def _dispatch(self, s: Session, ctx: Context, text: str) -> tuple[str, bool]:
        """Router -> handler -> template -> outbox. Returns the reply and whether it was refused."""
        try:
            reply = self.on_media(ctx) if ctx.media else self.dispatcher.dispatch(ctx, text)
        except UserError as err:
            # Rendered here, while what it names is still loaded; the caller drops the writes. A format
            # error's example names the asker's own codes and units, and their role's form.
            data = {"asker": ctx.member, **err.data}
            if data.get("show_form"):
                data["own"] = queries.example_codes(s, ctx.member.userid, ctx.member.unit_id)
            return self.renderer.render(err.template, **data), True
        # Every reply knows where it is read: in a group it names the sender.
        rendered = self.renderer.render(reply.template, **{"in_group": ctx.in_group, "sender": ctx.member,
                                                           **reply.data})
        prefix = f"reply:{ctx.member.userid}:{ctx.msg_id}" if ctx.msg_id else f"reply:{ctx.now.isoformat()}"
        rendered = self._fit_reply(s, rendered, ctx.member.userid, prefix)
        for i, push in enumerate(reply.pushes):
            # What goes back to the sender (1:1 answers, files they asked for) is a reply; what goes to
            # others (a 督办 to a unit's group, a notice to the admins) is a push: [sender]
            # quiet_hours hold pushes only (the outbox worker tells them apart by the key).
            own = push.target.channel == "app" and push.target.id == ctx.member.userid
            self.enqueue_push(s, push, f"{prefix if own else 'push' + prefix[len('reply'):]}:{push.key or i}")
        return rendered, False

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

    def enqueue_response(self, url: str, text: str, key: str) -> bool:
        """Put a smart-robot answer that missed its passive reply in the outbox, for the message's
        response_url (markdown). True if added (a key is enqueued once)."""
        with self.session() as s:
            return queries.enqueue(s, f"response_url:{key}", "response_url", url, "markdown", {"content": text},
                                   self.clock.now())

    def enqueue_push(self, s: Session, push: Push, key: str) -> int:
        """Render a push and put it in the outbox (split to fit WeCom's limits). Returns rows added."""
        now = self.clock.now()
        target = push.target
        if push.file is not None:
            msgtype = "image" if push.image else "file"
            return int(queries.enqueue(s, key, target.channel, target.id, msgtype, push.file, now, push.filename))
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
