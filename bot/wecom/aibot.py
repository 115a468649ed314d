"""WeCom's 智能机器人 (smart robot) in API mode: what people send it 1:1, or @ it with in a group.

WeCom's developer documentation (智能机器人 → 回调和回复的加解密方案 / 接收消息 / 接收事件 / 被动回复消息):
- URL verification is a GET like the app's (msg_signature, timestamp, nonce, echostr), the same AES
  scheme with the receive id "" (empty) for a company's own robot.
- A callback is a POST whose body is JSON {"encrypt": "..."}; decrypted, it is JSON with msgid (a
  string), aibotid, chatid, chattype (single / group), from.userid, msgtype, text.content and
  response_url; events have msgtype "event" and event.eventtype (enter_chat: the first time that
  day a person opens the 1:1 chat).
- The passive answer is encrypted JSON {"encrypt", "msgsignature", "timestamp", "nonce"}; its
  plaintext here is a finished stream message with markdown (or, for enter_chat, a text message).

Order on POST, as for the app (bot/wecom/guard.py): size limit and read deadline -> signature over
the envelope's encrypt field (found before the body is parsed) -> parse the envelope (JSON of bounded
depth) -> decrypt -> timestamp within the replay window -> parse the message (msgid a string of at most 64
characters) -> handle through the same writer, dedupe, handlers and templates as the app's 1:1
chat. Anything that fails before "handle" is answered with a 4xx and leaves nothing behind.

An answer not ready within REPLY_SECONDS (WeCom waits about 5 s) is replaced by a short "正在处理"
and sent through the message's response_url once ready (outbox channel "response_url").
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from bot.app import Application
from bot.wecom.guard import (BODY_TIMEOUT, Refused, open_envelope, parse_json, read_body, refusal, signed_params,
                             verified_echo)
from bot.writer import MessageWriter
from db.session import unavailable

log = logging.getLogger("duban.aibot")

RECEIVE_ID = ""  # a company's own smart robot
MAX_ID = 64  # msgid and userid are stored in 64-character columns (ProcessedMessage)
REPLY_SECONDS = 4.0  # WeCom waits about 5 s for a passive answer
WELCOME_COMMAND = "帮助"
# "@争先督办 汇报 T3 60%": the robot's @-mention (and any others in front) is not part of the command.
_MENTIONS = re.compile(r"^(?:\s*[@＠]\S+)+\s*")


def strip_mentions(text: str) -> str:
    return _MENTIONS.sub("", text, count=1)


class AibotCallback:
    def __init__(self, app: Application, writer: MessageWriter, body_timeout: float = BODY_TIMEOUT,
                 reply_timeout: float = REPLY_SECONDS):
        cfg = app.config.aibot
        self.app = app
        self.writer = writer
        self.body_timeout = body_timeout
        self.reply_timeout = reply_timeout
        self.token = cfg.token
        self.crypto = PrpCrypto(WeChatCrypto(cfg.token, cfg.encoding_aes_key, RECEIVE_ID).key)
        self._late: set[asyncio.Task] = set()  # answers on their way to a response_url

    async def verify_url(self, request: Request) -> Response:
        try:
            echo = verified_echo(self.app, request, self.token, self.crypto, RECEIVE_ID)
        except Refused as refused:
            return refusal(request, refused)
        return Response(echo, media_type="text/plain")

    async def receive(self, request: Request) -> Response:
        try:
            sig, ts, nonce = signed_params(request)
            body = await read_body(request, self.body_timeout)
            plain = open_envelope(self.app, body, "json", self.token, self.crypto, RECEIVE_ID, sig, ts, nonce)
            msg, msg_id, userid, chat = _message(plain)
        except Refused as refused:
            return refusal(request, refused)
        group = bool(chat)
        msgtype = msg.get("msgtype")
        if msgtype == "text":
            content = (msg.get("text") or {}).get("content") if isinstance(msg.get("text"), dict) else None
            if not isinstance(content, str):
                return refusal(request, Refused(400, "malformed message"))
            url = msg.get("response_url")
            reply = await self._answer(userid, strip_mentions(content), msg_id, chat,
                                       url if isinstance(url, str) else "")
        elif msgtype == "event":
            event = msg.get("event") if isinstance(msg.get("event"), dict) else {}
            if event.get("eventtype") != "enter_chat" or group:
                return Response("", media_type="text/plain")  # nothing to say to the others
            return await self._welcome(userid, nonce)
        elif msgtype == "stream":
            return Response("", media_type="text/plain")  # every stream here is finished at once
        else:
            reply = self.app.renderer.render("text_only")
        if not reply:
            return Response("", media_type="text/plain")
        stream = {"id": secrets.token_hex(8), "finish": True, "content": reply}
        return self._encrypted({"msgtype": "stream", "stream": stream}, nonce)

    async def _answer(self, userid: str, text: str, msg_id: str, chat: str, url: str) -> str:
        """The reply, if the writer has it within reply_timeout; else a short note now, and the
        reply through the message's response_url once it is there."""
        task = asyncio.ensure_future(self.writer.handle(userid, text, msg_id, chat))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.reply_timeout)
        except TimeoutError:
            late = asyncio.ensure_future(self._send_late(task, userid, msg_id, url))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            return self.app.renderer.render("aibot_later")
        except Exception as exc:
            if not unavailable(exc):  # (an outage is logged once, when it starts)
                log.exception("handling smart robot message %s from %s", msg_id, userid)
            return self.app.renderer.render("server_error")

    async def _send_late(self, task: asyncio.Future, userid: str, msg_id: str, url: str) -> None:
        try:
            reply = await task
        except Exception as exc:
            if not unavailable(exc):
                log.exception("handling smart robot message %s from %s", msg_id, userid)
            reply = self.app.renderer.render("server_error")
        if not url.startswith(("https://", "http://")):
            log.warning("smart robot message %s from %s: answer ready late and no response_url", msg_id, userid)
            return
        await asyncio.to_thread(self.app.enqueue_late, f"response_url:{userid}:{msg_id}", "response_url", url,
                                "markdown", reply)

    async def _welcome(self, userid: str, nonce: str) -> Response:
        """enter_chat: a short welcome and 帮助, at most once a day a person."""
        day = self.app.clock.now().astimezone(self.app.tz).date().isoformat()
        try:
            reply = await self.writer.handle(userid, WELCOME_COMMAND, f"enter_chat:{day}", "", True)
        except Exception as exc:
            if not unavailable(exc):
                log.exception("welcoming %s", userid)
            return Response("", media_type="text/plain")
        if not reply:
            return Response("", media_type="text/plain")
        content = f"{self.app.renderer.render('aibot_welcome')}\n{reply}"
        return self._encrypted({"msgtype": "text", "text": {"content": content}}, nonce)

    def _encrypted(self, answer: dict, nonce: str) -> Response:
        """The passive reply's envelope, signed with the callback URL's `nonce` (WeCom's smart-robot
        docs, 加密与被动回复: the reply carries the nonce of the request it answers)."""
        plain = json.dumps(answer, ensure_ascii=False)
        encrypted = self.crypto.encrypt(plain, RECEIVE_ID).decode()
        ts = str(int(self.app.clock.now().timestamp()))
        return JSONResponse({"encrypt": encrypted, "msgsignature": _get_signature(self.token, ts, nonce, encrypted),
                             "timestamp": ts, "nonce": nonce})


def _message(plain: str) -> tuple[dict, str, str, str]:
    """The decrypted message with its msgid, sender and chatid ("" for 1:1); Refused if malformed."""
    try:
        msg = parse_json(plain)
        if not isinstance(msg, dict):
            raise ValueError("not an object")
        msg_id, userid = msg.get("msgid"), (msg.get("from") or {}).get("userid")
        group = msg.get("chattype") == "group"
        chat = msg.get("chatid") if group else ""
    except (ValueError, TypeError, AttributeError):
        raise Refused(400, "malformed message") from None
    for name, value in (("msgid", msg_id), ("from.userid", userid), ("chatid", chat)):
        if not isinstance(value, str) or len(value) > MAX_ID or (not value and name != "chatid"):
            raise Refused(400, f"{name} is not a string of 1 to {MAX_ID} characters")
    if group and not chat:
        raise Refused(400, "a group message without chatid")
    return msg, msg_id, userid, chat
