"""The limit for bench/callback.py: the least a WeCom callback can do on the same HTTP stack
(uvicorn + Starlette): check the signature, decrypt with wechatpy, answer a fixed encrypted reply.
bench/peer_server.py reuses `open_message` and `answer`."""
from __future__ import annotations

import sys

import uvicorn
import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.replies import TextReply

TOKEN, AES_KEY, CORP_ID = "duban-test-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wwfakecorp"
crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)


async def open_message(request: Request):
    """Verify the signature and decrypt: (the parsed message, the request's timestamp)."""
    q = request.query_params
    envelope = xmltodict.parse(await request.body())["xml"]
    plain = crypto.decrypt_message(envelope, q["msg_signature"], q["timestamp"], q["nonce"])
    return parse_message(plain), q["timestamp"]


def answer(msg, timestamp: str) -> Response:
    xml = crypto.encrypt_message(TextReply(message=msg, content="✅ 已收到").render(), "nonce", timestamp)
    return Response(xml, media_type="application/xml")


async def callback(request: Request) -> Response:
    return answer(*await open_message(request))


async def healthz(_: Request) -> Response:
    return Response("ok")


def serve(endpoint, port: int) -> None:
    """Serve `endpoint` at POST /wecom/callback, and /healthz, on 127.0.0.1:`port`."""
    app = Starlette(routes=[Route("/wecom/callback", endpoint, methods=["POST"]), Route("/healthz", healthz)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    serve(callback, int(sys.argv[1]))
