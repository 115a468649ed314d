"""Talk to the bot as WeCom does: AES-encrypted, signed XML over real HTTP (wechatpy's crypto)."""
from __future__ import annotations

import json
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


def image_xml(userid: str, media_id: str, msg_id: str, agent_id: int = 1000002) -> str:
    """A picture sent to the app, as WeCom delivers it: a PicUrl and the MediaId to fetch it by."""
    return (
        "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
        "<CreateTime>%d</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[https://p.qpic.cn/x]]></PicUrl>"
        "<MediaId><![CDATA[%s]]></MediaId><MsgId>%s</MsgId><AgentID>%d</AgentID></xml>"
        % (CORP_ID, userid, int(time.time()), media_id, msg_id, agent_id)
    )


def card_event_xml(userid: str, task_id: str, key: str, response_code: str, create_time: int | None = None,
                   agent_id: int = 1000002) -> str:
    """A tap on a template card's button (接收事件 → 模板卡片事件推送)."""
    return (
        "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
        "<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>"
        "<EventKey><![CDATA[%s]]></EventKey><TaskId><![CDATA[%s]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
        "<ResponseCode><![CDATA[%s]]></ResponseCode><AgentID>%d</AgentID></xml>"
        % (CORP_ID, userid, create_time or int(time.time()), key, task_id, response_code, agent_id)
    )


def file_xml(userid: str, media_id: str, msg_id: str, agent_id: int = 1000002) -> str:
    """A file sent to the app: MsgType file and the MediaId to fetch it by."""
    return (
        "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
        "<CreateTime>%d</CreateTime><MsgType><![CDATA[file]]></MsgType>"
        "<MediaId><![CDATA[%s]]></MediaId><MsgId>%s</MsgId><AgentID>%d</AgentID></xml>"
        % (CORP_ID, userid, int(time.time()), media_id, msg_id, agent_id)
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

    def send_image(self, userid: str, media_id: str, msg_id: str | None = None) -> str:
        """Send a picture message; returns the passive reply's text."""
        body, params = self.encrypt(image_xml(userid, media_id, msg_id or str(secrets.randbits(60))))
        resp = self.post_raw(body, params)
        assert resp.status_code == 200, resp.text
        return self.decrypt_reply(resp)["Content"]

    def send_file(self, userid: str, media_id: str, msg_id: str | None = None) -> str:
        """Send a file message; returns the passive reply's text."""
        body, params = self.encrypt(file_xml(userid, media_id, msg_id or str(secrets.randbits(60))))
        resp = self.post_raw(body, params)
        assert resp.status_code == 200, resp.text
        return self.decrypt_reply(resp)["Content"]

    def decrypt_reply(self, resp: httpx.Response) -> dict:
        env = xmltodict.parse(resp.text)["xml"]
        plain = self.crypto.decrypt_message(resp.text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
        return xmltodict.parse(plain)["xml"]

    def tap(self, userid: str, task_id: str, key: str, response_code: str = "", create_time: int | None = None) -> dict | None:
        """Tap a card's button; returns the passive reply (an update_button's XML as a dict), or None
        when the bot leaves the card as it is (an empty answer)."""
        xml = card_event_xml(userid, task_id, key, response_code, create_time or int(self.now()))
        resp = self.post_raw(*self.encrypt(xml))
        assert resp.status_code == 200, resp.text
        return self.decrypt_reply(resp) if resp.text else None

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


ROBOT_TOKEN = "duban-robot-token"
ROBOT_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"  # 43 characters
ROBOT_NAME = "争先督办"


class RobotSide:
    """Talk to the bot as WeCom's 智能机器人 does: JSON callbacks {"encrypt": ...} signed and
    AES-encrypted with the receive id "" (wechatpy's crypto), answered with encrypted JSON."""

    def __init__(self, base_url: str, path: str = "/wecom/aibot", token: str = ROBOT_TOKEN,
                 aes_key: str = ROBOT_AES_KEY, clock=None, response_base: str = "http://127.0.0.1:9"):
        self.url = base_url + path
        self.now = (lambda: clock.now().timestamp()) if clock is not None else time.time
        self.token = token
        self.prp = PrpCrypto(WeChatCrypto(token, aes_key, "").key)
        self.response_base = response_base  # where response_urls point (the fake WeCom)
        self.http = httpx.Client(timeout=10)

    def message(self, userid: str, content: str, msg_id: str | None = None, chatid: str = "") -> dict:
        """A text message: in the group `chatid` (with the robot @-mentioned first), else 1:1."""
        msg_id = msg_id or secrets.token_urlsafe(18)
        msg = {"msgid": msg_id, "aibotid": "AIBOTID", "chattype": "group" if chatid else "single",
               "from": {"userid": userid}, "msgtype": "text",
               "response_url": f"{self.response_base}/cgi-bin/aibot/response?response_code={msg_id}",
               "text": {"content": f"@{ROBOT_NAME} {content}" if chatid else content}}
        if chatid:
            msg["chatid"] = chatid
        return msg

    def event(self, userid: str, eventtype: str = "enter_chat") -> dict:
        return {"msgid": secrets.token_urlsafe(18), "create_time": int(self.now()), "aibotid": "AIBOTID",
                "chattype": "single", "from": {"userid": userid}, "msgtype": "event",
                "event": {"eventtype": eventtype, eventtype: {}}}

    def encrypt(self, plain: dict | str, ts: str | None = None) -> tuple[str, dict]:
        text = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
        encrypted = self.prp.encrypt(text, "").decode()
        nonce, ts = secrets.token_hex(5), ts or str(int(self.now()))
        params = {"msg_signature": _get_signature(self.token, ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
        return json.dumps({"encrypt": encrypted}), params

    def post(self, plain: dict | str, ts: str | None = None) -> httpx.Response:
        body, params = self.encrypt(plain, ts)
        return self.post_raw(body, params)

    def post_raw(self, body: str | bytes, params: dict) -> httpx.Response:
        return self.http.post(self.url, params=params, content=body, headers={"Content-Type": "application/json"})

    def decrypt_reply(self, resp: httpx.Response) -> dict:
        """The passive answer: checks its signature and decrypts it."""
        env = resp.json()
        assert set(env) == {"encrypt", "msgsignature", "timestamp", "nonce"}, env
        assert _get_signature(self.token, env["timestamp"], env["nonce"], env["encrypt"]) == env["msgsignature"]
        return json.loads(self.prp.decrypt(env["encrypt"], ""))

    def say(self, userid: str, content: str, msg_id: str | None = None, chatid: str = "") -> str:
        """Send a text message and return the finished stream's markdown."""
        resp = self.post(self.message(userid, content, msg_id, chatid))
        assert resp.status_code == 200, resp.text
        answer = self.decrypt_reply(resp)
        assert answer["msgtype"] == "stream" and answer["stream"]["finish"] is True, answer
        return answer["stream"]["content"]

    def verify_url(self, echo: str = "echo-123", ts: str | None = None) -> httpx.Response:
        encrypted = self.prp.encrypt(echo, "").decode()
        nonce, ts = secrets.token_hex(5), ts or str(int(self.now()))
        sig = _get_signature(self.token, ts, nonce, encrypted)
        return self.http.get(self.url, params={"msg_signature": sig, "timestamp": ts, "nonce": nonce,
                                               "echostr": encrypted})
