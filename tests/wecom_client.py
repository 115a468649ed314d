"""Talk to the bot as WeCom does: AES-encrypted, signed XML over real HTTP (wechatpy's crypto)."""
from __future__ import annotations

import secrets
import time

import httpx
import xmltodict
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

TOKEN = "duban-test-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
CORP_ID = "wwfakecorp"


def text_xml(userid: str, content: str, msg_id: str, agent_id: int = 1000002) -> str:
    return (
        "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
        "<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content>"
        "<MsgId>%s</MsgId><AgentID>%d</AgentID></xml>" % (CORP_ID, userid, int(time.time()), content, msg_id, agent_id)
    )


class WeComSide:
    def __init__(self, base_url: str, path: str = "/wecom/callback", token: str = TOKEN, aes_key: str = AES_KEY,
                 corp_id: str = CORP_ID, clock=None):
        """`clock`: the bot's clock, which WeCom's timestamps must agree with (default: real time)."""
        self.url = base_url + path
        self.now = (lambda: clock.now().timestamp()) if clock is not None else time.time
        self.crypto = WeChatCrypto(token, aes_key, corp_id)
        self.token, self.corp_id = token, corp_id
        self.http = httpx.Client(timeout=10)

    def encrypt(self, xml: str, ts: str | None = None) -> tuple[str, dict]:
        nonce, ts = secrets.token_hex(5), ts or str(int(self.now()))
        envelope = self.crypto.encrypt_message(xml, nonce, ts)
        parsed = xmltodict.parse(envelope)["xml"]
        params = {"msg_signature": parsed["MsgSignature"], "timestamp": ts, "nonce": nonce}
        body = f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><Encrypt><![CDATA[{parsed['Encrypt']}]]></Encrypt><AgentID>1000002</AgentID></xml>"
        return body, params

    def post_raw(self, body: str | bytes, params: dict) -> httpx.Response:
        return self.http.post(self.url, params=params, content=body)

    def send_text(self, userid: str, content: str, msg_id: str | None = None) -> httpx.Response:
        body, params = self.encrypt(text_xml(userid, content, msg_id or str(secrets.randbits(60))))
        return self.post_raw(body, params)

    def decrypt_reply(self, resp: httpx.Response) -> dict:
        env = xmltodict.parse(resp.text)["xml"]
        plain = self.crypto.decrypt_message(resp.text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
        return xmltodict.parse(plain)["xml"]

    def say(self, userid: str, content: str, msg_id: str | None = None) -> str:
        resp = self.send_text(userid, content, msg_id)
        assert resp.status_code == 200, resp.text
        return self.decrypt_reply(resp)["Content"]

    def verify_url(self, echo: str = "echo-123", ts: str | None = None) -> httpx.Response:
        encrypted = PrpCrypto(self.crypto.key).encrypt(echo, self.corp_id).decode()
        nonce, ts = secrets.token_hex(5), ts or str(int(self.now()))
        sig = _get_signature(self.token, ts, nonce, encrypted)
        return self.http.get(self.url, params={"msg_signature": sig, "timestamp": ts, "nonce": nonce,
                                               "echostr": encrypted})
