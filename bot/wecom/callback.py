"""The WeCom callback: verify, decrypt, parse, dedupe, dispatch, and answer with an encrypted passive reply.

Order on POST: size limit and read timeout -> parse the outer envelope (entities refused) -> check
the signature -> decrypt -> timestamp within the replay window -> parse the inner message, its
MsgId a 64-bit integer -> handle (dedupe by sender and MsgId, in the writer). Anything that fails
before "handle" is answered with a 4xx and leaves nothing behind. A reply not ready within
REPLY_DEADLINE (the database slow or away) is answered with a short "已收到" and follows as an app
message once handled; WeCom's retry of it is answered from the stored reply, never handled twice.

Slow clients: a request's headers must arrive within HEADER_TIMEOUT and its body within
BODY_TIMEOUT, and at most MAX_CONNECTIONS connections are served at once (beyond, 503), so
half-sent requests cannot hold the server's connections (server_options(), for uvicorn).
"""
from __future__ import annotations

import asyncio
import functools
import gc
import logging
import secrets
from contextlib import asynccontextmanager
from xml.parsers.expat import ExpatError

import anyio
import anyio.to_thread
import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.replies import TextReply
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.app import Application
from bot.wecom.sender import OutboxWorker
from bot.writer import MessageWriter
from db.session import check_database, unavailable

log = logging.getLogger("duban.wire")

MAX_BODY = 64 * 1024  # WeCom callbacks are a few KB; anything larger is refused unread
HEADER_TIMEOUT = 10.0  # seconds; WeCom sends a whole callback in well under one
BODY_TIMEOUT = 10.0
MAX_CONNECTIONS = 500
MAX_MSG_ID = 2 ** 64  # WeCom's MsgId is an unsigned 64-bit integer
REPLY_DEADLINE = 4.0  # seconds a callback waits for its reply: WeCom gives up after 5 and sends again


def signed_params(request: Request) -> tuple[str, str, str] | None:
    q = request.query_params
    sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
    return (sig, ts, nonce) if sig and ts and nonce else None


async def read_body(request: Request, timeout: float) -> bytes | Response:
    """The request's body, or the 4xx that refuses it: larger than MAX_BODY, or slower than `timeout`."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        return PlainTextResponse("body too large", status_code=413)
    body = b""
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return PlainTextResponse("body too large", status_code=413)
    except TimeoutError:
        return PlainTextResponse("body too slow", status_code=408, headers={"Connection": "close"})
    return body


def fresh(app: Application, ts: str) -> bool:
    """Whether WeCom's timestamp lies within server.max_clock_skew of now (a replay does not)."""
    try:
        return abs(app.clock.now().timestamp() - int(ts)) <= app.config.server.max_clock_skew.total_seconds()
    except ValueError:
        return False


class Callback:
    def __init__(self, app: Application, writer: MessageWriter, body_timeout: float = BODY_TIMEOUT,
                 reply_timeout: float = REPLY_DEADLINE):
        self.app = app
        self.writer = writer
        self.body_timeout = body_timeout
        self.reply_timeout = reply_timeout
        wc = app.config.wecom
        self.crypto = WeChatCrypto(wc.token, wc.encoding_aes_key, wc.corp_id) if not wc.console_mode else None

    async def _late(self, userid: str, msg_id: str, result: str | Exception) -> None:
        """The reply to a message that missed its deadline, or the note that it failed, as an app message."""
        failed = isinstance(result, Exception)  # (logged where it failed: Application.handle_batch)
        text = self.app.renderer.render("server_error") if failed else result
        if not text:
            return
        try:
            await anyio.to_thread.run_sync(self.app.enqueue_late_reply, userid, msg_id, text, failed)
        except Exception as exc:
            if not unavailable(exc):
                log.exception("message %s from %s: storing the late reply", msg_id, userid)

    async def verify_url(self, request: Request) -> Response:
        params = signed_params(request)
        echostr = request.query_params.get("echostr", "")
        if self.crypto is None:
            return PlainTextResponse("console mode: no WeCom credentials configured", status_code=503)
        if params is None or not echostr:
            return PlainTextResponse("missing parameters", status_code=400)
        sig, ts, nonce = params
        try:
            echo = self.crypto.check_signature(sig, ts, nonce, echostr)
        except InvalidSignatureException:
            return PlainTextResponse("invalid signature", status_code=403)
        except Exception:  # undecryptable echostr
            return PlainTextResponse("invalid echostr", status_code=400)
        if not fresh(self.app, ts):
            return PlainTextResponse("timestamp outside the replay window", status_code=403)
        body = echo.decode() if isinstance(echo, bytes) else echo
        return Response(body, media_type="text/plain")

    async def receive(self, request: Request) -> Response:
        if self.crypto is None:
            return PlainTextResponse("console mode: no WeCom credentials configured", status_code=503)
        params = signed_params(request)
        if params is None:
            return PlainTextResponse("missing parameters", status_code=400)
        body = await read_body(request, self.body_timeout)
        if isinstance(body, Response):
            return body
        sig, ts, nonce = params
        try:
            envelope = xmltodict.parse(body, disable_entities=True)["xml"]
            if not isinstance(envelope, dict) or not isinstance(envelope.get("Encrypt"), str):
                raise ValueError("no Encrypt element")
        except (ExpatError, ValueError, KeyError, TypeError):
            return PlainTextResponse("malformed body", status_code=400)
        try:
            plain = self.crypto.decrypt_message(envelope, sig, ts, nonce)
        except InvalidSignatureException:
            return PlainTextResponse("invalid signature", status_code=403)
        except InvalidCorpIdException:
            return PlainTextResponse("wrong receive id", status_code=400)
        except Exception:
            return PlainTextResponse("undecryptable body", status_code=400)
        if not fresh(self.app, ts):
            return PlainTextResponse("timestamp outside the replay window", status_code=403)
        try:
            msg = parse_message(plain)
        except Exception:
            return PlainTextResponse("malformed message", status_code=400)
        if msg is None:
            return PlainTextResponse("malformed message", status_code=400)

        # A self-built app receives text, image, voice, video, location and link messages (no files);
        # a picture is evidence (bot/evidence.py), recorded now and fetched by its MediaId afterwards.
        if msg.type in ("text", "image"):
            try:
                msg_id = int(msg.id)
            except (TypeError, ValueError):
                msg_id = -1
            if not 0 <= msg_id < MAX_MSG_ID:
                return PlainTextResponse("MsgId is not a 64-bit integer", status_code=400)
            msg_id = str(msg_id)
            media = ("image", msg.media_id) if msg.type == "image" else None
            if media is not None and not msg.media_id:
                return PlainTextResponse("image without MediaId", status_code=400)
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
        else:
            reply_text = self.app.renderer.render("text_only", pictures=True)
        reply = TextReply(message=msg, content=reply_text)
        stamp = str(int(self.app.clock.now().timestamp()))
        xml = self.crypto.encrypt_message(reply.render(), secrets.token_hex(8), stamp)
        return Response(xml, media_type="application/xml")


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
    from bot.wecom.aibot import REPLY_SECONDS, AibotCallback  # it builds on this module's helpers

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
