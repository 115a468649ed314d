"""The Application: wires config, database, clock, dispatcher and renderer, and runs the pipeline

    inbound text -> dispatcher -> handler (pure, through db/) -> template -> outbox

for chat messages; jobs use enqueue_push() with the same templates and outbox.

A batch of chat messages is one write transaction (handle_batch); each message in it runs through
the same short list of steps (handle_one):

    1. who, dedupe the sender and their unit (someone not on the roster is told whom to ask), and
                   the answer their MsgId got before, if any: given again, word for word (read for
                   the whole batch in one query)
    2. dispatch    router -> handler -> template -> outbox; a wrong form keeps none of the handler's
                   writes
    3. remember    the answer is kept under the MsgId; the batch's answers are written together
                   before its commit (a retry in the same batch is answered from memory)

Messages share the batch's transaction without savepoints, as long as each one either succeeds or
is refused before it writes anything (the usual case: a wrong form is found before any write). One
that fails otherwise sends the whole batch round again, each message then in a savepoint of its
own, so that its writes alone are undone. A savepoint costs PostgreSQL a round trip and SQLAlchemy
a third of a 汇报's time, so most batches do without (bench/README.md).

A tap on a decision card's button (bot/cards.py) runs the same steps with the command the button
stands for; its answer is what the tapped card shows.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from bot import cards
from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.render import Renderer
from bot.reply import Push, UserError
from bot.router import Context, Dispatcher
from bot.text import split_message
from db import queries
from db.session import CONFLICT_STATES, make_engine, migrate, outage, pipeline, session_scope, unavailable, writes

log = logging.getLogger("duban")

TEXT_LIMIT = 2048
MARKDOWN_LIMIT = 4096
MAX_TRIES = 3  # a message that collides with concurrent writers this often is given up


class Collided(Exception):
    """A concurrent writer got there first (another replica answered the same MsgId, took the same
    new code, or PostgreSQL chose this transaction to give way in a deadlock): handle the message
    again once the rest of its batch is committed."""


class Apart(BaseException):
    """A message failed after it wrote, in a batch handled without savepoints: the batch is handled
    again with a savepoint a message. (Not an Exception: the handling of one message's error lets
    it through to handle_batch.)"""


def _collided(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in CONFLICT_STATES


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
        """The schema up to date, and a campaign year recorded (bot/campaign/years.py ensure)."""
        from bot.campaign import years

        migrate(self.engine)
        with self.session() as s:
            years.ensure(s, self.config, self.clock.now())

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
        """Handle (userid, text, msg_id[, chat, once, media, tap]) messages in order in one write
        transaction (one commit for many messages): a message that fails loses only its own writes
        (the module docstring). Returns the reply, or the exception, for each message; none is
        answered before the transaction is committed. A message that collided with a concurrent
        writer is handled again after the others are committed; if the commit itself fails, every
        message is handled again alone, so that one message cannot fail the others."""
        try:
            return self._batch(messages, tries, apart=False)
        except Apart:
            return self._batch(messages, tries, apart=True)

    def _batch(self, messages: list[tuple], tries: int, apart: bool) -> list[str | Exception]:
        """handle_batch; `apart`: each message in a savepoint of its own."""
        results: dict[int, str | Exception] = {}
        again: list[int] = []
        try:
            with self.session() as s, (nullcontext() if apart else pipeline(s)):
                queries.expect(s, [(m[0], m[2]) for m in messages])
                self.dispatcher.read_ahead(s, [m[1] for m in messages], self.clock.now(), self.config)
                for i, message in enumerate(messages):
                    try:
                        results[i] = self.handle_one(s, *message, apart=apart)
                    except Collided:
                        again.append(i)
                    except Exception as exc:
                        if unavailable(exc):
                            raise  # not this message: the database; the whole batch fails alike
                        log.exception("message %s from %s failed", message[2], message[0])
                        results[i] = exc
                queries.write_answers(s)
        except Exception as exc:
            if unavailable(exc):  # logged once for the outage, not once a message
                outage(self.engine).failed(exc)
                return [exc] * len(messages)
            if len(messages) == 1 and _collided(exc) and tries < MAX_TRIES:  # another replica answered it
                return self.handle_batch(messages, tries + 1)
            if len(messages) == 1:
                log.exception("message %s from %s: commit failed", messages[0][2], messages[0][0])
                return [exc]
            return [r for m in messages for r in self.handle_batch([m], tries)]
        outage(self.engine).ok()
        for i in again:
            results[i] = (self.handle_batch([messages[i]], tries + 1)[0] if tries < MAX_TRIES else
                          RuntimeError(f"message {messages[i][2]!r} kept colliding with concurrent writes"))
        return [results[i] for i in range(len(messages))]

    def handle_one(self, s: Session, userid: str, text: str, msg_id: str, chat: str = "", once: bool = False,
                   media: tuple[str, str] | None = None, tap: tuple[str, str] | None = None,
                   apart: bool = True) -> str:
        """One message inside the batch's transaction (the steps in the module docstring).
        `apart`: in a savepoint of its own; without, a failure after a write raises Apart.
        `chat`: the group it was said in (the smart robot's chatid; "" in a 1:1 chat).
        `once`: a msg_id answered before gets "" (nothing) instead of the stored answer.
        `media`: a picture or file message, (kind, WeCom media_id), instead of text: it is recorded
        here and fetched afterwards (bot/evidence.py), never within this transaction.
        `tap`: a tap on a decision card's button, (TaskId, EventKey), instead of text: the answer is
        what the tapped card now shows ("" to leave it as it is; see _tap)."""
        now = self.clock.now()
        savepoint = s.begin_nested() if apart else None
        try:
            written = None if apart else writes(s)
            who = queries.sender(s, userid, msg_id)
            if who is None:
                reply = self.renderer.render("unknown_user", userid=userid)  # nothing about them is stored
            elif msg_id and who.reply is not None:
                reply = "" if once else who.reply
            else:
                ctx = Context(session=s, member=who.member, unit=who.unit, now=now, config=self.config, msg_id=msg_id,
                              chat=chat, media=media)
                if tap is not None:
                    reply, refused = self._tap(s, ctx, *tap)
                else:
                    text, lapsed = self._complete_ask(s, ctx, text)
                    reply, refused = self._dispatch(s, ctx, text) if lapsed is None else (lapsed, False)
                if refused:  # a wrong form: the answer is kept, none of the handler's writes
                    if savepoint is None:
                        if writes(s) != written:
                            raise Apart
                    else:
                        savepoint.rollback()
                        savepoint = s.begin_nested()
                    if tap is not None:  # the card stays as it is; the refusal goes to the person 1:1
                        self._tell(s, ctx, reply, "refused")
                        reply = ""
                    else:  # words a tap asked for get one try: the refusal shows the command's form
                        queries.take_ask(s, userid, now)
            if savepoint is not None:
                savepoint.commit()
            if msg_id and who is not None and who.reply is None:
                queries.record_processed(s, msg_id, userid, reply, now)
        except Exception as exc:
            if savepoint is None:
                if unavailable(exc):
                    raise
                raise Apart from exc
            if savepoint.is_active:
                savepoint.rollback()
            if _collided(exc):
                raise Collided from exc
            raise
        finally:
            queries.forget_pending_outbox(s)
        return reply

    def _dispatch(self, s: Session, ctx: Context, text: str, tapped: str = "") -> tuple[str, bool]:
        """Router -> handler -> template -> outbox. Returns the reply and whether it was refused.
        `tapped`: the task_id of the card whose tap this is (the passive reply updates that one)."""
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
        for subject, data in reply.settles:
            self.settle(s, subject, {"by": ctx.member, "when": ctx.now, **data}, ctx.now, tapped)
        return rendered, False

    # ------------------------------------------------------------ decision cards (bot/cards.py)

    def _tap(self, s: Session, ctx: Context, task_id: str, key: str) -> tuple[str, bool]:
        """A tap on a card's button is the command it stands for, by the person who tapped, through
        the same dispatcher (rights, transaction, timeline, pushes). Returns what the tapped card
        shows now ("" unchanged) and whether the command was refused (its words are the reply)."""
        card = queries.card_by_task(s, task_id)
        if card is None or card.userid != ctx.member.userid:
            return "", False  # not a card this bot sent this person: nothing to do
        if card.outcome:  # decided already (a second tap, another admin, a typed command): show it
            return card.outcome, False
        try:
            mode, command, words = cards.parse_key(key)
        except ValueError:
            return "", False
        if mode == "ask":  # the words come with the person's next message
            cmd, _ = self.dispatcher.match(command)
            if cmd is None or not cmd.allowed(ctx.member):
                return self._dispatch(s, ctx, command)[0], True
            queries.ask_words(s, ctx.member.userid, command, task_id, ctx.now)
            self._tell(s, ctx, self.renderer.render("card_ask", words=words, command=command), "ask")
            return "", False
        reply, refused = self._dispatch(s, ctx, command, tapped=task_id)
        return (reply, True) if refused else (card.outcome, False)

    def _complete_ask(self, s: Session, ctx: Context, text: str) -> tuple[str, str | None]:
        """A 1:1 text message after a tap that asked for words completes that command. Returns the
        text to handle, and the answer instead of handling it when the tap's time ran out and
        the message is no command of its own (None otherwise)."""
        if ctx.in_group or ctx.media:
            return text, None
        ask, fresh = queries.take_ask(s, ctx.member.userid, ctx.now)
        if ask is None:
            return text, None
        if fresh:
            return f"{ask.command} {text}", None
        if self.dispatcher.match(text)[0] is None:
            return text, self.renderer.render("card_ask_lapsed", command=ask.command)
        return text, None

    def _tell(self, s: Session, ctx: Context, text: str, what: str) -> None:
        """A word to the person who tapped, 1:1 (a tap's passive reply can only change the card)."""
        if text:
            queries.enqueue(s, f"reply:{ctx.member.userid}:{ctx.msg_id}:{what}", "app", ctx.member.userid, "text",
                            {"content": text}, ctx.now)

    def settle(self, s: Session, subject: str, data: dict, now, tapped: str = "") -> None:
        """Close every open card of a decision: each shows the outcome (card_outcome.j2). The tapped
        card is updated by the tap's passive reply; every other by message/update_template_card
        with its response_code, which WeCom honours once, within 72 hours of sending."""
        outcome = cards.cut(self.renderer.render("card_outcome", **data), 64)
        for card in queries.open_cards(s, subject):
            card.outcome = outcome
            s.add(card)
            if card.task_id == tapped or (card.sent_at and now - card.sent_at > cards.RESPONSE_CODE_TTL):
                continue
            queries.enqueue(s, f"card:{card.task_id}:update", "app", card.userid, "card_update",
                            {"task_id": card.task_id, "content": outcome}, now)

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

    def enqueue_late(self, key: str, channel: str, to: str, msgtype: str, text: str) -> bool:
        """An answer that missed its passive reply, in the outbox: to the person as an app message,
        or to a smart-robot message's response_url. True if added (a key is enqueued once)."""
        with self.session() as s:
            return queries.enqueue(s, key, channel, to, msgtype, {"content": text}, self.clock.now())

    def enqueue_push(self, s: Session, push: Push, key: str) -> int:
        """Render a push and put it in the outbox (split to fit WeCom's limits). Returns rows added."""
        now = self.clock.now()
        target = push.target
        if push.file is not None:
            msgtype = "image" if push.image else "file"
            return int(queries.enqueue(s, key, target.channel, target.id, msgtype, push.file, now, push.filename))
        content = self.renderer.render(push.template, channel=target.channel, **push.data)
        if push.card is not None and target.channel == "app" and self.config.wecom.cards:
            task = cards.task_id(push.card.subject, key)
            card = cards.build(self.renderer.render(push.card.template, **push.data), push.card, task,
                               self.config.org.name)
            if not queries.enqueue(s, key, "app", target.id, "template_card", {"content": content, "card": card}, now):
                return 0
            queries.add_card(s, task, push.card.subject, target.id, now)
            return 1
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
