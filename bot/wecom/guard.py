"""What every callback path (the app's and the smart robot's) checks before it handles anything, in
this order: the signed query parameters; a body of bounded size, read within a deadline; the
signature, over the body's encrypted field found without parsing the body; only then the body
parsed (XML without entities, JSON to a bounded depth); decryption; WeCom's timestamp within the
replay window. A request that fails a check is refused (Refused: a 4xx and its reason) with one
log line and no traceback, and leaves nothing behind."""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from xml.parsers.expat import ExpatError

import xmltodict
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException

from bot.app import Application

log = logging.getLogger("duban.wire")

MAX_BODY = 64 * 1024  # WeCom callbacks are a few KB; anything larger is refused unread
BODY_TIMEOUT = 10.0  # seconds; WeCom sends a whole callback in well under one
MAX_DEPTH = 16  # WeCom's JSON nests three or four levels; deeper is refused before it is parsed

# The encrypted field, found by a linear scan of the raw body: base64 (in JSON "/" may come as "\/").
_XML_ENCRYPT = re.compile(rb"<Encrypt>\s*(?:<!\[CDATA\[)?([A-Za-z0-9+/=]+)(?:\]\]>)?\s*</Encrypt>")
_JSON_ENCRYPT = re.compile(rb'"encrypt"\s*:\s*"((?:[A-Za-z0-9+=]|\\?/)+)"')
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


class Refused(Exception):
    """A request refused before it is handled: the HTTP status, and the reason as its answer."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.headers = status, headers


def refusal(request: Request, refused: Refused) -> Response:
    """The answer to a refused request, logged in one line."""
    client = request.client.host if request.client else "-"
    log.warning("%s %s from %s refused: %d %s", request.method, request.url.path, client, refused.status, refused)
    return PlainTextResponse(str(refused), status_code=refused.status, headers=refused.headers)


def signed_params(request: Request) -> tuple[str, str, str]:
    q = request.query_params
    sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
    if not (sig and ts and nonce):
        raise Refused(400, "missing parameters")
    return sig, ts, nonce


async def read_body(request: Request, timeout: float) -> bytes:
    """The request's body; Refused if larger than MAX_BODY, or slower than `timeout`."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise Refused(413, "body too large")
    body = b""
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    raise Refused(413, "body too large")
    except TimeoutError:
        raise Refused(408, "body too slow", {"Connection": "close"}) from None
    except ClientDisconnect:
        raise Refused(400, "client went away") from None
    return body


def fresh(app: Application, ts: str) -> bool:
    """Whether WeCom's timestamp lies within server.max_clock_skew of now (a replay does not)."""
    try:
        return abs(app.clock.now().timestamp() - int(ts)) <= app.config.server.max_clock_skew.total_seconds()
    except ValueError:
        return False


def check_signature(token: str, sig: str, ts: str, nonce: str, encrypted: str) -> None:
    if not hmac.compare_digest(_get_signature(token, ts, nonce, encrypted), sig):
        raise Refused(403, "invalid signature")


def parse_json(raw: bytes | str) -> object:
    """JSON nested at most MAX_DEPTH deep (counted before parsing); ValueError otherwise."""
    data = raw.encode() if isinstance(raw, str) else raw
    depth = 0
    for c in _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data)):
        depth += 1 if c in b"[{" else -1
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH}")
    return json.loads(data)


def open_envelope(app: Application, body: bytes, fmt: str, token: str, crypto: PrpCrypto, receive_id: str,
                  sig: str, ts: str, nonce: str) -> str:
    """The decrypted message of a callback whose body is WeCom's envelope in `fmt` ("xml": the app's
    <xml><Encrypt>, "json": the smart robot's {"encrypt"}); Refused if any check fails."""
    found = (_XML_ENCRYPT if fmt == "xml" else _JSON_ENCRYPT).search(body)
    if found is None:
        raise Refused(400, "malformed body")
    encrypted = found.group(1).decode("ascii").replace("\\/", "/")
    check_signature(token, sig, ts, nonce, encrypted)
    try:  # signed; still parsed with care (a replayed signature may come with any body)
        if fmt == "xml":
            envelope = xmltodict.parse(body, disable_entities=True)["xml"]
            field = envelope.get("Encrypt") if isinstance(envelope, dict) else None
        else:
            envelope = parse_json(body)
            field = envelope.get("encrypt") if isinstance(envelope, dict) else None
    except (ExpatError, ValueError, KeyError, TypeError):
        raise Refused(400, "malformed body") from None
    if field != encrypted:
        raise Refused(400, "malformed body")
    try:
        plain = crypto.decrypt(encrypted, receive_id)
    except InvalidCorpIdException:
        raise Refused(400, "wrong receive id") from None
    except Exception:
        raise Refused(400, "undecryptable body") from None
    if not fresh(app, ts):
        raise Refused(403, "timestamp outside the replay window")
    return plain.decode() if isinstance(plain, bytes) else plain


def verified_echo(app: Application, request: Request, token: str, crypto: PrpCrypto, receive_id: str) -> str:
    """URL verification (a GET): the decrypted echostr, once its signature and timestamp hold."""
    sig, ts, nonce = signed_params(request)
    echostr = request.query_params.get("echostr", "")
    if not echostr:
        raise Refused(400, "missing parameters")
    check_signature(token, sig, ts, nonce, echostr)
    try:
        echo = crypto.decrypt(echostr, receive_id)
    except Exception:  # undecryptable, or another receive id
        raise Refused(400, "invalid echostr") from None
    if not fresh(app, ts):
        raise Refused(403, "timestamp outside the replay window")
    return echo.decode() if isinstance(echo, bytes) else echo
