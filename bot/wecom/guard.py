"""What every callback path (the app's and the smart robot's) checks before it handles anything:
the signed query parameters, a body of bounded size read within a deadline, and WeCom's timestamp
within the replay window."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot.app import Application

MAX_BODY = 64 * 1024  # WeCom callbacks are a few KB; anything larger is refused unread
BODY_TIMEOUT = 10.0  # seconds; WeCom sends a whole callback in well under one


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
