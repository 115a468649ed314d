"""The WeCom callback: verify, decrypt, parse, dedupe, dispatch, and answer with an encrypted passive reply.

Order on POST: size limit and read timeout -> the signature over the envelope's Encrypt element
(found before the body is parsed) -> parse the envelope (entities refused) -> decrypt -> timestamp
within the replay window -> parse the inner message, its MsgId a 64-bit integer -> handle (dedupe by
sender and MsgId, in the writer). Anything that fails before "handle" is answered with a 4xx and one
log line, and leaves nothing behind. A reply not ready within REPLY_DEADLINE (the database slow or
away) is answered with a short "已收到" and follows as an app message once handled; WeCom's retry of
it is answered from the stored reply, never handled twice. The checks both callback paths share (this one and the smart
robot's, bot/wecom/aibot.py) are in bot/wecom/guard.py.

Slow clients: a request's headers must arrive within HEADER_TIMEOUT and its body within
BODY_TIMEOUT, and at most MAX_CONNECTIONS connections are served at once (beyond, 503), so
half-sent requests cannot hold the server's connections (server_options(), for uvicorn).
"""
from __future__ import annotations

import functools
import gc
import hashlib
import logging
import re
import secrets
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.enterprise.replies import TextReply
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.app import Application
from bot.wecom.aibot import REPLY_SECONDS, AibotCallback
from bot.wecom.guard import BODY_TIMEOUT, Refused, open_envelope, read_body, refusal, signed_params, verified_echo
from bot.wecom.sender import OutboxWorker
from bot.writer import MessageWriter
from db.session import check_database, unavailable

log = logging.getLogger("duban.wire")

HEADER_TIMEOUT = 10.0  # seconds; WeCom sends a whole callback in well under one
MAX_CONNECTIONS = 500
MAX_MSG_ID = 2 ** 64  # WeCom's MsgId is an unsigned 64-bit integer
_MSG_ID = re.compile(r"[0-9]{1,20}")
REPLY_DEADLINE = 4.0  # seconds a callback waits for its reply: WeCom gives up after 5 and sends again



class Callback:
    def __init__(self, app: Application, writer: MessageWriter, body_timeout: float = BODY_TIMEOUT,
                 reply_timeout: float = REPLY_DEADLINE):
        self.app = app
        self.writer = writer
        self.body_timeout = body_timeout
        self.reply_timeout = reply_timeout
        wc = app.config.wecom
        self.token, self.corp_id = wc.token, wc.corp_id
        self.crypto = WeChatCrypto(wc.token, wc.encoding_aes_key, wc.corp_id) if not wc.console_mode else None
        self.prp = PrpCrypto(self.crypto.key) if self.crypto is not None else None

    async def _late(self, userid: str, msg_id: str, result: str | Exception) -> None:
        """The reply to a message that missed its deadline, or the note that it failed, as an app message."""
        failed = isinstance(result, Exception)  # (logged where it failed: Application.handle_batch)
        text = self.app.renderer.render("server_error") if failed else result
        if not text:
            return
        try:
            key = f"reply:{userid}:{msg_id}:{'failed' if failed else 'late'}"
            await anyio.to_thread.run_sync(self.app.enqueue_late, key, "app", userid, "text", text)
        except Exception as exc:
            if not unavailable(exc):
                log.exception("message %s from %s: storing the late reply", msg_id, userid)

    async def verify_url(self, request: Request) -> Response:
        if self.crypto is None:
            return PlainTextResponse("console mode: no WeCom credentials configured", status_code=503)
        try:
            echo = verified_echo(self.app, request, self.token, self.prp, self.corp_id)
        except Refused as refused:
            return refusal(request, refused)
        return Response(echo, media_type="text/plain")

    async def receive(self, request: Request) -> Response:
        if self.crypto is None:
            return PlainTextResponse("console mode: no WeCom credentials configured", status_code=503)
        try:
            sig, ts, nonce = signed_params(request)
            body = await read_body(request, self.body_timeout)
            plain = open_envelope(self.app, body, "xml", self.token, self.prp, self.corp_id, sig, ts, nonce)
            msg, kind, msg_id = _message(plain)
        except Refused as refused:
            return refusal(request, refused)

        # A self-built app receives text, image, voice, video, location and link messages; a picture is
        # evidence (bot/evidence.py), recorded now and fetched by its MediaId afterwards. A file message
        # (MsgType file with a MediaId; wechatpy does not know it) is taken the same way: from a unit's
        # 负责人 it is the unit's lists (handlers/lists.py).
        if kind in ("text", "image", "file"):
            media_id = msg.media_id if kind == "image" else _field(msg, "MediaId") if kind == "file" else ""
            media = (kind, media_id) if kind != "text" else None
            if media is not None and not media_id:
                return refusal(request, Refused(400, f"{kind} without MediaId"))
            text = "" if media else msg.content or ""
            late = functools.partial(self._late, msg.source, msg_id)
            try:
                reply_text = await self.writer.within(self.reply_timeout, late, msg.source, text, msg_id, media=media)
            except Exception as exc:
                if not unavailable(exc):  # (an outage is logged once, when it starts)
                    log.exception("handling message %s from %s", msg_id, msg.source)
                reply_text = self.app.renderer.render("server_error")
            if reply_text is None:  # not ready within the deadline: it follows as an app message
                reply_text = self.app.renderer.render("reply_later")
        elif msg.type == "event":
            return Response("", media_type="text/plain")  # nothing to say to enter_agent etc.
        elif (event := _card_event(msg)) is not None:
            return await self._tap(msg.source, event)
        else:
            reply_text = self.app.renderer.render("text_only", pictures=True)
        reply = TextReply(message=msg, content=reply_text)
        stamp = str(int(self.app.clock.now().timestamp()))
        xml = self.crypto.encrypt_message(reply.render(), secrets.token_hex(8), stamp)
        return Response(xml, media_type="application/xml")

    async def _tap(self, userid: str, event: dict) -> Response:
        """A tap on a decision card's button (模板卡片事件推送). WeCom sends no MsgId with it: the
        event's time, card and button stand for one (a retry is answered from the record). The
        answer updates the tapped card's buttons (被动回复: 模板卡片更新消息), or leaves it as it is."""
        seen = hashlib.sha1(f"{event['CreateTime']}|{event['TaskId']}|{event['EventKey']}".encode()).hexdigest()
        try:
            shown = await self.writer.handle(userid, "", f"card:{seen[:40]}", tap=(event["TaskId"], event["EventKey"]))
        except Exception:
            log.exception("handling a card tap from %s", userid)
            shown = ""
        if not shown:
            return Response("", media_type="text/plain")
        stamp = str(int(self.app.clock.now().timestamp()))
        plain = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
                 "<CreateTime>%s</CreateTime><MsgType><![CDATA[update_button]]></MsgType>"
                 "<Button><ReplaceName><![CDATA[%s]]></ReplaceName></Button></xml>"
                 % (_cdata(userid), _cdata(self.app.config.wecom.corp_id), stamp, _cdata(shown)))
        return Response(self.crypto.encrypt_message(plain, secrets.token_hex(8), stamp), media_type="application/xml")


def _card_event(msg) -> dict | None:
    """A template_card_event's fields (EventKey, TaskId, ...), or None for anything else."""
    if _field(msg, "MsgType") != "event" or _field(msg, "Event") != "template_card_event":
        return None
    fields = {k: _field(msg, k) for k in ("CreateTime", "TaskId", "EventKey")}
    return fields if all(fields.values()) else None


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


def _field(msg, name: str) -> str:
    """A field of the message as wechatpy read it (for what it has no type of its own for: a file, a
    card's tap), "" if missing or not text."""
    value = msg._data.get(name)
    return value if isinstance(value, str) else ""


def _message(plain: str):
    """The decrypted message, its kind and, for a text, picture or file message, its MsgId (digits of
    a 64-bit integer; dedupe is by it, so one missing, empty or malformed is refused, never taken as 0)."""
    try:
        msg = parse_message(plain)
    except Exception:
        msg = None
    if msg is None:
        raise Refused(400, "malformed message")
    kind = _field(msg, "MsgType") if msg.type == "unknown" else msg.type
    if kind not in ("text", "image", "file"):
        return msg, kind, ""
    raw = msg._data.get("MsgId")  # read before msg.id, which turns a missing or empty MsgId into 0
    if not isinstance(raw, str) or not _MSG_ID.fullmatch(raw) or int(raw) >= MAX_MSG_ID:
        raise Refused(400, "MsgId is not a 64-bit integer")
    return msg, kind, str(int(raw))


class _TimedHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline for each request's headers, which uvicorn lacks: a
    connection that sends its headers slowly, or nothing at all, is closed when it runs out."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:  # noqa: ANN001
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def on_headers_complete(self) -> None:
        self._deadline.cancel()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:  # noqa: ANN001
        self._deadline.cancel()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def server_options(header_timeout: float = HEADER_TIMEOUT) -> dict:
    """uvicorn's options for the callback server: header deadline, connection cap."""
    protocol = type("TimedHttp", (_TimedHttp,), {"header_timeout": header_timeout})
    return {"http": protocol, "limit_concurrency": MAX_CONNECTIONS}


HEALTH_TIMEOUT = 5.0  # seconds the database gets to answer /healthz's query


def health_problem(app: Application, worker: OutboxWorker | None) -> str | None:
    """What makes this server unusable now, in a few words; None when it is fine."""
    problem = check_database(app.engine)
    if problem:
        return problem
    stalled = worker.stalled_for() if worker is not None else None
    if stalled is not None and stalled > app.config.sender.stuck_seconds:
        return f"sender stuck: no send finished for {stalled:.0f} s"
    return None


def build_asgi(app: Application, worker: OutboxWorker | None = None, body_timeout: float = BODY_TIMEOUT,
               aibot_reply_timeout: float | None = None) -> Starlette:
    """The callback server: WeCom's callback path, the smart robot's (when [aibot] is enabled),
    /healthz (which also watches `worker`, the outbox sender running in this process, if given)
    and, unless [web] enabled = false, the pages under /web/ (bot/web).
    `aibot_reply_timeout`: how long the smart robot's passive reply waits for the answer."""
    writer = MessageWriter(app)
    cb = Callback(app, writer, body_timeout)
    path = app.config.server.callback_path
    robot_routes = []
    if app.config.aibot.enabled:
        robot = AibotCallback(app, writer, body_timeout,
                              REPLY_SECONDS if aibot_reply_timeout is None else aibot_reply_timeout)
        robot_path = app.config.aibot.callback_path
        robot_routes = [Route(robot_path, robot.verify_url, methods=["GET"]),
                        Route(robot_path, robot.receive, methods=["POST"])]

    async def healthz(_: Request) -> Response:
        # off the event loop: a hung database must not stop the server answering
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                problem = await anyio.to_thread.run_sync(health_problem, app, worker, abandon_on_cancel=True)
        except TimeoutError:
            problem = f"database did not answer within {HEALTH_TIMEOUT:.0f} s"
        if problem:
            return PlainTextResponse(problem, status_code=503)
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(_):
        writer.start()
        # What the process holds by now (modules, mappings, templates) lives as long as the server:
        # frozen, Python's full collections no longer walk it. Under a burst of chat messages, or
        # a page over 2,000 units, full collections come every few seconds; over that heap each
        # stopped the whole process for 50-100 ms on a 2-core machine (now about 10 ms), which was
        # most of the callback's p99 and half of a page's recount (bench/README.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            writer.stop()  # what was handed in is answered before the server closes

    routes = [
        Route(path, cb.verify_url, methods=["GET"]),
        Route(path, cb.receive, methods=["POST"]),
        *robot_routes,
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if app.config.web.enabled:
        from bot.web.routes import build_web

        routes.append(Mount("/web", app=build_web(app, writer)))
    asgi = Starlette(
        routes=routes,
        lifespan=lifespan,
    )
    asgi.state.writer = writer
    return asgi
