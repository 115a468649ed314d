"""A fake WeCom API on 127.0.0.1 that records what it receives and can fail on purpose.

Endpoints: gettoken, message/send (with WeCom's enable_duplicate_check), appchat/send,
media/upload, media/get (what fake.add_media() holds: the bytes with Content-Type and
Content-Disposition; an unknown media_id answers 40007), webhook/send (about 20 a minute per key, 45009 beyond), webhook/upload_media,
auth/getuserinfo (OAuth2 codes registered with fake.oauth_code("code", "userid"), one use each).

Image messages are checked as WeCom would: a robot's {"base64", "md5"} must decode to a PNG or JPG
of at most 2 MB whose md5 matches; an app chat's or app message's media_id must be an uploaded
image. images() gives each delivered image message with its bytes.
aibot/response (a smart robot message's response_url; recorded with target "response:<code>").

Template cards (发送应用消息 → 模板卡片消息, card_type button_interaction) are checked against WeCom's
documented required fields and limits (card_error(); 40058 when one is broken, 42014 for a task_id
used before) and answered with a response_code; message/update_template_card takes a response_code
once, within 72 hours, and is recorded with target "user:<id>" for each of its userids.
cards() gives each delivered card; card_updates() each update.

Faults, consumed in order by matching requests:
    fake.fail("message/send", errcode=45009)      # WeCom error code in a 200 answer
    fake.fail("appchat/send", http=500, times=2)  # HTTP status
    fake.fail("webhook/send", delay=3.0)          # a slow answer (the send is carried out, then answered)
    fake.fail("message/send", answer="<html>…")   # HTTP 200 that is not WeCom's: an HTML page (str) or
    fake.fail("appchat/send", answer={"ok": 1})   #   other JSON (dict); the send is not carried out
    fake.fail("webhook/send", http=500, times=9, match="坏")  # only requests whose body contains "坏"
    fake.fail("gettoken", errcode=-1)             # gettoken itself busy (also http=, delay=)
    fake.fail("media/get", http=500)              # a download that fails once
    fake.fail("message/send", errcode=42001, times=2)  # the fresh token rejected again
    fake.expire_token()                           # the current token answers 42001 from now on
    fake.freeze_after(10)                         # after 10 deliveries, hold every send until release()
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

SEND_PATHS = ("message/send", "appchat/send", "webhook/send", "aibot/response", "message/update_template_card")
TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")
RESPONSE_CODE_SECONDS = 72 * 3600
IMAGE_LIMIT = 2 * 1024 * 1024
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPG


@dataclass
class Fault:
    path: str
    errcode: int | None = None
    http: int | None = None
    delay: float = 0.0
    times: int = 1
    answer: str | dict | None = None
    match: str = ""


@dataclass
class Delivery:
    path: str
    target: str
    body: dict
    at: float


@dataclass
class State:
    token_seq: int = 0
    valid_tokens: set = field(default_factory=set)
    token_requests: int = 0
    deliveries: list = field(default_factory=list)
    requests: list = field(default_factory=list)  # every (path, query, body) in arrival order
    uploads: dict = field(default_factory=dict)  # media_id -> (filename, bytes)
    upload_types: dict = field(default_factory=dict)  # media_id -> "file" | "image" | ...
    faults: list = field(default_factory=list)
    webhook_times: dict = field(default_factory=dict)
    webhook_limit: int = 20
    latency: float = 0.0  # seconds added to every send, like a real network round trip
    rate_per_second: float = 0.0  # 0: no app-wide limit; else 45009 beyond this many sends a second
    rate_times: list = field(default_factory=list)
    dedupe: dict = field(default_factory=dict)  # (touser, content) -> time
    codes: dict = field(default_factory=dict)  # OAuth2 code -> userid ("" for someone outside the corp)
    media: dict = field(default_factory=dict)  # media_id -> (bytes, content type, file name): what people sent
    hold: dict | None = None
    held_count: int = 0
    task_ids: set = field(default_factory=set)  # every template card's task_id (unique in the app)
    response_codes: dict = field(default_factory=dict)  # code -> (userid, task_id, issued at, used)


class FakeWeCom:
    def __init__(self, corp_id: str = "wwfakecorp", secret: str = "fakesecret"):
        self.corp_id, self.secret = corp_id, secret
        self.state = State()
        self.lock = threading.Lock()
        self.held = threading.Event()  # set while a request is being held
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two writes wait on delayed ACKs

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients killed on purpose
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ------------------------------------------------------------ control
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeWeCom":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def fail(self, path: str, errcode: int | None = None, http: int | None = None, delay: float = 0.0,
             times: int = 1, answer: str | dict | None = None, match: str = "") -> None:
        with self.lock:
            self.state.faults.append(Fault(path, errcode, http, delay, times, answer, match))

    def oauth_code(self, code: str, userid: str) -> None:
        """Make `code` what WeCom hands a page opened by `userid` ("": a non-member, openid only)."""
        with self.lock:
            self.state.codes[code] = userid

    def add_media(self, media_id: str, data: bytes, content_type: str = "image/jpeg", filename: str = "") -> None:
        """Make `media_id` what media/get serves: a picture or file someone sent the app."""
        with self.lock:
            self.state.media[media_id] = (data, content_type, filename or f"{media_id}.jpg")

    def expire_token(self) -> None:
        with self.lock:
            self.state.valid_tokens.clear()

    def freeze_after(self, deliveries: int) -> None:
        """Once `deliveries` messages have been delivered, stall: every later send is held until
        release(). A held app message has been processed by WeCom (its answer is what is lost);
        a held group message has not been processed (it is dropped when released)."""
        with self.lock:
            self.state.hold = {"after": deliveries}
            self.state.held_count = 0
        self._release.clear()

    def release(self) -> None:
        with self.lock:
            self.state.hold = None
        self._release.set()

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.state.deliveries if path is None or d.path == path]

    def images(self) -> list[tuple[Delivery, bytes]]:
        """Every delivered image message with the picture's bytes, in order."""
        out = []
        for d in self.deliveries():
            if d.body.get("msgtype") != "image":
                continue
            image = d.body["image"]
            if "base64" in image:
                out.append((d, base64.b64decode(image["base64"])))
            else:
                with self.lock:
                    out.append((d, self.state.uploads[image["media_id"]][1]))
        return out

    def cards(self, userid: str | None = None) -> list[dict]:
        """Every delivered template card (its template_card object), in order; to `userid` only if given."""
        return [d.body["template_card"] for d in self.deliveries("message/send")
                if d.body.get("msgtype") == "template_card" and (userid is None or d.target == f"user:{userid}")]

    def card_updates(self) -> list[tuple[str, str]]:
        """(target, button text) of every card update made through message/update_template_card."""
        return [(d.target, d.body["button"]["replace_name"]) for d in self.deliveries("message/update_template_card")]

    def click_code(self, task_id: str) -> str:
        """The ResponseCode a tap on this card's button carries (valid once, like a sent card's)."""
        with self.lock:
            userid = next((u for u, t, _, _ in self.state.response_codes.values() if t == task_id), "")
            code = f"rc-{secrets.token_hex(6)}"
            self.state.response_codes[code] = (userid, task_id, time.monotonic(), False)
        return code

    def counts_by_target(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.deliveries():
            out[d.target] = out.get(d.target, 0) + 1
        return out

    # ------------------------------------------------------------ serving
    def _reply(self, h: BaseHTTPRequestHandler, status: int, payload: dict | str,
               content_type: str = "application/json") -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the client went away

    def _take_fault(self, path: str, raw: bytes = b"") -> Fault | None:
        with self.lock:
            for f in self.state.faults:
                if f.path == path and (not f.match or f.match in _readable(raw)):
                    f.times -= 1
                    if f.times <= 0:
                        self.state.faults.remove(f)
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = url.path.removeprefix("/cgi-bin/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self.lock:
            self.state.requests.append((path, query, raw))
        if path == "/_fake/stats":  # for a fake run in its own process (bench/fanout.py)
            with self.lock:
                return self._reply(h, 200, {"deliveries": len(self.state.deliveries),
                                            "targets": len({d.target for d in self.state.deliveries}),
                                            "rejected": getattr(self.state, "rejected", 0)})
        if path == "gettoken":
            fault = self._take_fault(path)
            if fault and fault.delay:
                time.sleep(fault.delay)
            if fault and fault.http:
                return self._reply(h, fault.http, "<html>server error</html>")
            if fault and fault.errcode:
                return self._reply(h, 200, {"errcode": fault.errcode, "errmsg": "injected"})
            if query.get("corpid") != self.corp_id or query.get("corpsecret") != self.secret:
                return self._reply(h, 200, {"errcode": 40001, "errmsg": "invalid credential"})
            with self.lock:
                self.state.token_seq += 1
                token = f"tok-{self.state.token_seq}"
                self.state.valid_tokens.add(token)
                self.state.token_requests += 1
            return self._reply(h, 200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

        fault = self._take_fault(path, raw)
        if fault and fault.delay:  # a slow answer: then the request is carried out as usual
            time.sleep(fault.delay)
        if fault and fault.http:
            return self._reply(h, fault.http, "<html>server error</html>")
        if fault and fault.errcode:
            return self._reply(h, 200, {"errcode": fault.errcode, "errmsg": "injected"})
        if fault and fault.answer is not None:
            return self._reply(h, 200, fault.answer, "text/html" if isinstance(fault.answer, str) else "application/json")

        if not path.startswith(("webhook/", "aibot/")):  # a response_url carries its own code
            with self.lock:
                ok = query.get("access_token") in self.state.valid_tokens
            if not ok:
                return self._reply(h, 200, {"errcode": 42001, "errmsg": "access_token expired"})

        if path in ("media/upload", "webhook/upload_media"):
            filename, data = _multipart_file(h.headers.get("Content-Type", ""), raw)
            kind = query.get("type", "")
            if kind == "image" and (error := _image_error(data)):
                return self._reply(h, 200, error)
            with self.lock:
                media_id = f"media-{len(self.state.uploads) + 1}"
                self.state.uploads[media_id] = (filename, data)
                self.state.upload_types[media_id] = kind
            return self._reply(h, 200, {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id})

        if path == "media/get":
            with self.lock:
                media = self.state.media.get(query.get("media_id", ""))
            if media is None:
                return self._reply(h, 200, {"errcode": 40007, "errmsg": "invalid media_id"})
            data, content_type, filename = media
            try:
                h.send_response(200)
                h.send_header("Content-Type", content_type)
                h.send_header("Content-Disposition", f'attachment; filename="{filename}"' if filename.isascii()
                              else f"attachment; filename*=UTF-8''{quote(filename)}")
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data)
            except OSError:
                pass
            return

        if path == "auth/getuserinfo":
            with self.lock:
                userid = self.state.codes.pop(query.get("code", ""), None)  # a code works once
            if userid is None:
                return self._reply(h, 200, {"errcode": 40029, "errmsg": "invalid code"})
            if not userid:
                return self._reply(h, 200, {"errcode": 0, "errmsg": "ok", "openid": "o-outsider"})
            return self._reply(h, 200, {"errcode": 0, "errmsg": "ok", "userid": userid})

        if path not in SEND_PATHS:
            return self._reply(h, 404, {"errcode": 404, "errmsg": "no such api"})
        if self.state.latency:
            time.sleep(self.state.latency)
        if self.state.rate_per_second and path in ("message/send", "appchat/send"):
            now = time.monotonic()
            with self.lock:
                times = [t for t in self.state.rate_times if now - t < 1.0]
                limited = len(times) >= self.state.rate_per_second
                if not limited:
                    times.append(now)
                self.state.rate_times = times
            if limited:
                self.state.rejected = getattr(self.state, "rejected", 0) + 1
                return self._reply(h, 200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        body = json.loads(raw or b"{}")
        if body.get("msgtype") == "image" and (error := self._bad_image(body.get("image") or {})):
            return self._reply(h, 200, error)
        if path == "message/update_template_card":
            return self._update_card(h, body)
        answer: dict = {"errcode": 0, "errmsg": "ok"}
        if path == "message/send" and body.get("msgtype") == "template_card":
            card = body.get("template_card")
            if (error := card_error(card)) is not None:
                return self._reply(h, 200, {"errcode": 40058, "errmsg": f"invalid template_card: {error}"})
            with self.lock:
                if card["task_id"] in self.state.task_ids:
                    return self._reply(h, 200, {"errcode": 42014, "errmsg": "taskid has existed"})
                self.state.task_ids.add(card["task_id"])
                code = f"rc-{secrets.token_hex(6)}"
                self.state.response_codes[code] = (body.get("touser", ""), card["task_id"], time.monotonic(), False)
            answer["response_code"] = code
        target = {"message/send": lambda: "user:" + body.get("touser", ""),
                  "appchat/send": lambda: "chat:" + body.get("chatid", ""),
                  "webhook/send": lambda: "robot:" + query.get("key", ""),
                  "aibot/response": lambda: "response:" + query.get("response_code", "")}[path]()

        if path == "webhook/send":
            now = time.monotonic()
            with self.lock:
                times = [t for t in self.state.webhook_times.get(target, []) if now - t < 60]
                if len(times) >= self.state.webhook_limit:
                    self.state.webhook_times[target] = times
                    return self._reply(h, 200, {"errcode": 45009, "errmsg": "api freq out of limit"})
                times.append(now)
                self.state.webhook_times[target] = times

        with self.lock:
            hold = self.state.hold is not None and len(self.state.deliveries) >= self.state.hold["after"]
            if hold:
                self.state.held_count += 1
        if hold:
            accept = path == "message/send"
            if accept:
                self._record(path, target, body)
            self.held.set()
            self._release.wait(60)
            if not accept:
                return  # dropped unprocessed; the connection just closes
            return self._reply(h, 200, {"errcode": 0, "errmsg": "ok"})
        self._record(path, target, body)
        return self._reply(h, 200, answer)

    def _update_card(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        """更新模版卡片消息: a response_code works once, within 72 hours; the button's new text is required."""
        code, userids = body.get("response_code", ""), body.get("userids") or []
        replace = (body.get("button") or {}).get("replace_name")
        if not isinstance(body.get("agentid"), int) or not isinstance(replace, str) or not replace or not userids:
            return self._reply(h, 200, {"errcode": 40058, "errmsg": "agentid, userids and button.replace_name required"})
        with self.lock:
            known = self.state.response_codes.get(code)
            if known is None or known[3] or time.monotonic() - known[2] > RESPONSE_CODE_SECONDS:
                return self._reply(h, 200, {"errcode": 40058, "errmsg": "invalid response_code"})
            self.state.response_codes[code] = (*known[:3], True)
        for userid in userids:
            self._record("message/update_template_card", f"user:{userid}", body)
        return self._reply(h, 200, {"errcode": 0, "errmsg": "ok", "invaliduser": []})

    def _bad_image(self, image: dict) -> dict | None:
        """WeCom's answer to an image message it would refuse, else None."""
        if "media_id" in image:
            with self.lock:
                ok = self.state.upload_types.get(image["media_id"]) == "image"
            return None if ok else {"errcode": 40007, "errmsg": "invalid media_id"}
        try:
            data = base64.b64decode(image.get("base64", ""), validate=True)
        except ValueError:
            return {"errcode": 40005, "errmsg": "invalid image: not base64"}
        if hashlib.md5(data).hexdigest() != image.get("md5"):
            return {"errcode": 40005, "errmsg": "invalid image: md5 does not match"}
        return _image_error(data)

    def _record(self, path: str, target: str, body: dict) -> None:
        with self.lock:
            if path == "message/send" and body.get("enable_duplicate_check"):
                msgtype = body.get("msgtype", "")
                key = (body.get("touser"), json.dumps(body.get(msgtype), sort_keys=True))
                interval = body.get("duplicate_check_interval", 1800)
                seen = self.state.dedupe.get(key)
                if seen is not None and time.monotonic() - seen < interval:
                    return  # WeCom's duplicate check: the same message again is not shown again
                self.state.dedupe[key] = time.monotonic()
            self.state.deliveries.append(Delivery(path, target, body, time.monotonic()))


def card_error(card) -> str | None:
    """What makes a button_interaction template card one WeCom refuses, by its documented required
    fields and limits (characters; bytes where named), else None."""
    if not isinstance(card, dict) or card.get("card_type") != "button_interaction":
        return "card_type must be button_interaction"
    if not isinstance(card.get("task_id"), str) or not TASK_ID.fullmatch(card["task_id"]):
        return "task_id: 1-128 digits, letters or _-@"
    title = card.get("main_title")
    if not isinstance(title, dict) or not title.get("title"):
        return "main_title.title required"
    limits = [(title.get("title", ""), 36, "main_title.title"), (title.get("desc", ""), 44, "main_title.desc"),
              ((card.get("source") or {}).get("desc", ""), 13, "source.desc"),
              (card.get("sub_title_text", ""), 160, "sub_title_text")]
    rows = card.get("horizontal_content_list", [])
    if len(rows) > 6:
        return "horizontal_content_list: at most 6"
    for row in rows:
        if not row.get("keyname"):
            return "horizontal_content_list.keyname required"
        limits += [(row["keyname"], 5, "horizontal_content_list.keyname"),
                   (row.get("value", ""), 30, "horizontal_content_list.value")]
    buttons = card.get("button_list")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
        return "button_list: 1 to 6 buttons"
    keys = [b.get("key", "") for b in buttons]
    for b in buttons:
        if not b.get("text"):
            return "button_list.text required"
        if b.get("type", 0) == 0 and not b.get("key"):
            return "button_list.key required for a callback button"
        if len(b.get("key", "").encode()) > 1024:
            return "button_list.key: at most 1024 bytes"
        if b.get("style", 1) not in (1, 2, 3, 4):
            return "button_list.style: 1 to 4"
        limits.append((b["text"], 10, "button_list.text"))
    if len(set(keys)) != len(keys):
        return "button_list.key must not repeat"
    for value, limit, name in limits:
        if len(value) > limit:
            return f"{name}: at most {limit} characters"
    return None


def _readable(raw: bytes) -> str:
    """A request body as text (JSON decoded, so non-ASCII reads as itself)."""
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _image_error(data: bytes) -> dict | None:
    if not data.startswith(IMAGE_MAGIC):
        return {"errcode": 40005, "errmsg": "invalid image: not JPG or PNG"}
    if len(data) > IMAGE_LIMIT:
        return {"errcode": 40009, "errmsg": "invalid image size"}
    return None


def _multipart_file(content_type: str, raw: bytes) -> tuple[str, bytes]:
    boundary = content_type.split("boundary=")[-1].strip().strip('"').encode()
    for part in raw.split(b"--" + boundary):
        if b"filename=" in part:
            head, _, data = part.partition(b"\r\n\r\n")
            name = head.split(b"filename=")[1].split(b"\r\n")[0].strip(b'"').decode("utf-8", "replace")
            return name, data.removesuffix(b"\r\n")
    return "", b""


if __name__ == "__main__":  # python tests/fake_wecom.py LATENCY RATE: serve until killed, print the base URL
    import sys

    fake = FakeWeCom()
    fake.state.latency, fake.state.rate_per_second = float(sys.argv[1]), float(sys.argv[2])
    print(fake.base, flush=True)
    fake.server.serve_forever()
