"""The baseline for bench/callback.py: the least a WeCom callback can do on the same HTTP stack
(uvicorn + Starlette): check the signature, decrypt with wechatpy, answer a fixed encrypted reply."""
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


async def callback(request: Request) -> Response:
    q = request.query_params
    body = await request.body()
    envelope = xmltodict.parse(body)["xml"]
    plain = crypto.decrypt_message(envelope, q["msg_signature"], q["timestamp"], q["nonce"])
    msg = parse_message(plain)
    xml = crypto.encrypt_message(TextReply(message=msg, content="✅ 已收到").render(), "nonce", q["timestamp"])
    return Response(xml, media_type="application/xml")


async def healthz(_: Request) -> Response:
    return Response("ok")


app = Starlette(routes=[Route("/wecom/callback", callback, methods=["POST"]), Route("/healthz", healthz)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
