"""The WeCom API client: app messages, app chats and group robots, with one shared access token.

What this module writes (SendError texts, log lines) never holds the corp secret, an access token
or a whole robot key: request errors are described by their class, host and path (the query string,
where all three travel, is left out), and robot keys are shown by their last 4 characters.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from email.message import Message
from typing import Callable
from urllib.parse import urlsplit

import requests
from wechatpy.enterprise.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.config import WeComConfig
from db.models import Outbox

# urllib3 logs every request line, query string included (corpsecret, access_token, robot key), at
# DEBUG: keep it at WARNING even when the rest of the bot logs at DEBUG (`duban -v`).
logging.getLogger("urllib3").setLevel(logging.WARNING)

TOKEN_ERRORS = {40001, 40014, 41001, 42001, 42009}  # the token is missing, invalid or expired: refresh it
RETRYABLE_ERRORS = {-1, 45009, 45033, 45011}  # busy or rate limited: try again later
RATE_LIMITED = {45009, 45033}
TASK_ID_USED = 42014  # a template card's task_id was taken: the same card was delivered before
TOKEN_TRIES = 3
IMAGE_LIMIT = 2 * 1024 * 1024  # a robot's image message, and an uploaded image: JPG or PNG, at most 2 MB  # a send whose fresh token is rejected too is tried again later, not failed


class SendError(Exception):
    def __init__(self, message: str, retryable: bool, rate_limited: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.rate_limited = rate_limited  # WeCom said "too many": try again soon, not exponentially later


def describe_request_error(exc: requests.RequestException, url: str = "") -> str:
    """`ReadTimeout: 127.0.0.1:8080/cgi-bin/gettoken`: requests' own text carries the whole URL."""
    request = getattr(exc, "request", None)
    parts = urlsplit(getattr(request, "url", None) or url)
    return f"{type(exc).__name__}: {parts.netloc}{parts.path}"


class DubanWeChatClient(WeChatClient):
    """wechatpy's enterprise client pointed at a configurable API base, with timeouts everywhere,
    and one token for all sending threads: fetched once, refreshed once however many threads saw
    it rejected."""

    def __init__(self, cfg: WeComConfig):
        super().__init__(cfg.corp_id, cfg.secret, timeout=cfg.timeout_seconds, auto_retry=False)
        self.API_BASE_URL = f"{cfg.api_base}/cgi-bin/"
        self._api_base = cfg.api_base
        self._token_lock = threading.Lock()
        self._used = threading.local()  # the token this thread's last request carried

    def _cached_token(self) -> str | None:
        token = self.session.get(self.access_token_key)
        if token and self.expires_at and self.expires_at - time.time() > 60:
            return token
        return None

    @property
    def access_token(self) -> str:
        token = self._cached_token()
        if token is None:
            with self._token_lock:  # one thread fetches; the others wait for its token
                token = self._cached_token()
                if token is None:
                    self.fetch_access_token()
                    token = self.session.get(self.access_token_key)
        return token

    def refresh_token(self) -> None:
        """The token this thread sent was rejected: fetch a new one, unless another thread
        already has since this thread's request took its token."""
        rejected = getattr(self._used, "token", None)
        with self._token_lock:
            if self.session.get(self.access_token_key) == rejected:
                self.fetch_access_token()

    def _request(self, method, url_or_endpoint, **kwargs):
        params = kwargs.setdefault("params", {})
        if isinstance(params, dict) and "access_token" not in params:
            params["access_token"] = self.access_token
        self._used.token = params.get("access_token") if isinstance(params, dict) else None
        return super()._request(method, url_or_endpoint, **kwargs)

    def _handle_result(self, res, method=None, url=None, result_processor=None, **kwargs):
        # media/get answers with the file itself: only a JSON answer there is WeCom's own (an error)
        if url and url.endswith("/media/get") and not _json_answer(res):
            return res
        wecom_answer(res, urlsplit(url or "").path.rsplit("/cgi-bin/", 1)[-1])  # wechatpy takes any other as done
        return super()._handle_result(res, method, url, result_processor, **kwargs)

    def fetch_access_token(self):
        url = f"{self._api_base}/cgi-bin/gettoken"
        try:
            res = self._http.get(url, params={"corpid": self.corp_id, "corpsecret": self.secret},
                                 timeout=self.timeout)
        except requests.RequestException as exc:
            raise SendError(f"gettoken {describe_request_error(exc, url)}", retryable=True) from None
        if res.status_code >= 400:
            raise SendError(f"gettoken HTTP {res.status_code}", retryable=True)
        result = wecom_answer(res, "gettoken")
        code = result["errcode"]
        if code != 0:
            # -1 (busy) and the rate limits pass; a wrong corp id or secret does not
            raise SendError(f"gettoken errcode {code}: {result.get('errmsg')}", retryable=code in RETRYABLE_ERRORS)
        if not isinstance(result.get("access_token"), str):
            raise SendError("gettoken HTTP 200: no access_token", retryable=True)
        expires_in = int(result.get("expires_in", 7200))
        self.session.set(self.access_token_key, result["access_token"], expires_in)
        self.expires_at = int(time.time()) + expires_in
        return result


def wecom_answer(res: requests.Response, what: str) -> dict:
    """WeCom's JSON answer: an object with an integer errcode. Anything else (an HTML page from a
    proxy or a captive portal, other text, JSON without errcode) is no sign that WeCom did anything:
    SendError, retried with backoff."""
    try:
        result = res.json()
    except ValueError:
        result = None
    if not isinstance(result, dict) or type(result.get("errcode")) is not int:
        kind = "JSON without errcode" if isinstance(result, dict) else "not WeCom's JSON"
        raise SendError(f"{what} HTTP {res.status_code}: {kind}", retryable=True)
    return result


def _json_answer(res: requests.Response) -> bool:
    return res.headers.get("Content-Type", "").split(";")[0].strip() in ("application/json", "text/plain")


@dataclass
class Media:
    """A file someone sent the app, as media/get gave it."""

    data: bytes | None  # None: larger than the limit asked for (not read further)
    size: int  # bytes (at least this many, when over the limit)
    name: str  # the file name WeCom gives (Content-Disposition): for showing only


def _filename(disposition: str) -> str:
    """The file name in a Content-Disposition header (filename= or RFC 2231 filename*=), without any path."""
    header = Message()
    header["Content-Disposition"] = disposition
    name = header.get_filename() or ""
    return name.replace("\\", "/").rsplit("/", 1)[-1][:255]


class WeComTransport:
    """message/send and appchat/send through wechatpy; group robots through plain HTTP."""

    def __init__(self, cfg: WeComConfig):
        self.cfg = cfg
        self.client = DubanWeChatClient(cfg)
        self.http = requests.Session()

    # -- API calls; a rejected token is refreshed and the call made again
    def _api(self, call: Callable[[], dict]) -> dict:
        for _ in range(TOKEN_TRIES):
            try:
                return call()
            except WeChatClientException as exc:
                code = exc.errcode
                if code in TOKEN_ERRORS:
                    self.client.refresh_token()
                    continue
                if code is None:
                    status = getattr(exc.response, "status_code", None)
                    raise SendError(f"HTTP {status}", retryable=True) from None
                raise SendError(f"errcode {code}: {exc.errmsg}", retryable=code in RETRYABLE_ERRORS,
                                rate_limited=code in RATE_LIMITED) from None
            except requests.RequestException as exc:
                raise SendError(describe_request_error(exc), retryable=True) from None
        raise SendError(f"access token rejected {TOKEN_TRIES} times", retryable=True)

    def user_from_code(self, code: str) -> dict:
        """auth/getuserinfo: who opened a page with this OAuth2 code; a member's answer carries
        `userid`, anyone else's `openid` instead."""
        return self._api(lambda: self.client.get("auth/getuserinfo", params={"code": code}))

    def media(self, media_id: str, limit: int) -> Media:
        """media/get: a picture or file someone sent the app (WeCom keeps it three days). Read up to
        `limit` bytes: a larger one comes back with data None, unread beyond that."""
        res = self._api(lambda: self.client.get("media/get", params={"media_id": media_id}, stream=True))
        if not isinstance(res, requests.Response):  # JSON that is not an error: not a file
            raise SendError("media/get answered JSON, not a file", retryable=False)
        try:
            name = _filename(res.headers.get("Content-Disposition", ""))
            length = res.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                return Media(None, int(length), name)
            data = bytearray()
            for chunk in res.iter_content(64 * 1024):
                data += chunk
                if len(data) > limit:
                    return Media(None, len(data), name)
            return Media(bytes(data), len(data), name)
        except requests.RequestException as exc:
            raise SendError(f"media/get {describe_request_error(exc)}", retryable=True) from None
        finally:
            res.close()

    @property
    def group_timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts of a send WeCom does not deduplicate (app chats, robots,
        response_urls): a connection not made was never sent, but an answer not yet read may be
        of a send WeCom carried out, so it is waited for (wecom.group_timeout_seconds) rather than
        sent again."""
        return self.cfg.timeout_seconds, max(self.cfg.group_timeout_seconds, self.cfg.timeout_seconds)

    def _webhook(self, path: str, key: str, params: dict | None = None, **kwargs) -> dict:
        url = f"{self.cfg.api_base}/cgi-bin/webhook/{path}"
        return self._post(url, params={"key": key, **(params or {})}, **kwargs)

    def _post(self, url: str, timeout: float | tuple[float, float] | None = None, **kwargs) -> dict:
        """A plain HTTP POST to WeCom that answers {"errcode": ...} (group robots, response_url)."""
        try:
            res = self.http.post(url, timeout=timeout or self.cfg.timeout_seconds, **kwargs)
        except requests.RequestException as exc:
            raise SendError(describe_request_error(exc, url), retryable=True) from None
        if res.status_code >= 500 or res.status_code == 429:
            raise SendError(f"HTTP {res.status_code}", retryable=True)
        result = wecom_answer(res, urlsplit(url).path.rsplit("/cgi-bin/", 1)[-1])
        code = result["errcode"]
        if code != 0:
            raise SendError(f"errcode {code}: {result.get('errmsg')}", retryable=code in RETRYABLE_ERRORS,
                            rate_limited=code in RATE_LIMITED)
        return result

    def send(self, row: Outbox, attachment: bytes | None) -> dict | None:
        """Send one outbox row; a decision card's answer carries its response_code."""
        payload = json.loads(row.payload)
        msgtype = row.msgtype
        if msgtype in ("template_card", "card_update"):
            return self._card(row, payload)
        if msgtype == "file":
            payload = {"media_id": self._upload(row, attachment, "file")}
        elif msgtype == "image":
            payload = self._image(row, attachment)
        if row.channel == "webhook":
            self._webhook("send", row.target, json={"msgtype": msgtype, msgtype: payload}, timeout=self.group_timeout)
        elif row.channel == "response_url":  # the smart robot's answer to one message, from its callback
            if msgtype == "file":
                raise SendError("a response_url takes no files", retryable=False)
            self._post(row.target, json={"msgtype": msgtype, msgtype: payload}, timeout=self.group_timeout)
        elif row.channel == "appchat":
            data = {"chatid": row.target, "msgtype": msgtype, msgtype: payload, "safe": 0}
            self._api(lambda: self.client.post("appchat/send", data=data, timeout=self.group_timeout))
        elif row.channel == "app":
            msg = {"msgtype": msgtype, msgtype: payload, "enable_duplicate_check": 1,
                   "duplicate_check_interval": 1800}
            self._api(lambda: self.client.message.send(self.cfg.agent_id, row.target, msg=msg))
        else:
            raise SendError(f"unknown channel {row.channel}", retryable=False)

    def _card(self, row: Outbox, payload: dict) -> dict:
        """A decision card to one person (message/send, template_card), or the update of one sent
        before (message/update_template_card, with the response_code its sending gave)."""
        if row.channel != "app":
            raise SendError(f"{row.msgtype} goes to a person only", retryable=False)
        if row.msgtype == "template_card":
            msg = {"msgtype": "template_card", "template_card": payload["card"], "enable_duplicate_check": 1,
                   "duplicate_check_interval": 1800}
            try:
                return self._api(lambda: self.client.message.send(self.cfg.agent_id, row.target, msg=msg))
            except SendError as exc:
                if str(exc).startswith(f"errcode {TASK_ID_USED}:"):  # sent before, its answer lost: delivered
                    return {}
                raise
        if not payload.get("response_code"):
            raise SendError("no response_code for this card (not delivered, or its answer was lost): "
                            "it keeps its buttons", retryable=False)
        data = {"userids": [row.target], "agentid": self.cfg.agent_id, "response_code": payload["response_code"],
                "button": {"replace_name": payload["content"]}}
        return self._api(lambda: self.client.post("message/update_template_card", data=data))

    def _image(self, row: Outbox, data: bytes | None) -> dict:
        """A group robot takes the picture itself (base64 and the md5 of the bytes); an app chat or an
        app message takes uploaded media. WeCom takes JPG or PNG of at most 2 MB."""
        if not data:
            raise SendError("image message without content", retryable=False)
        if len(data) > IMAGE_LIMIT:
            raise SendError(f"image of {len(data)} bytes is over WeCom's 2 MB", retryable=False)
        if row.channel == "webhook":
            return {"base64": base64.b64encode(data).decode("ascii"), "md5": hashlib.md5(data).hexdigest()}
        return {"media_id": self._upload(row, data, "image")}

    def _upload(self, row: Outbox, data: bytes | None, kind: str) -> str:
        """Temporary media (media/upload, or a robot's upload_media) of `kind` "file" or "image"."""
        if data is None:
            raise SendError("file message without content", retryable=False)
        if kind == "image":
            files = {"media": (row.filename or "image.png", data, "image/png")}
        else:
            files = {"media": (row.filename or "file.xlsx", data)}
        if row.channel == "webhook":
            result = self._webhook("upload_media", row.target, params={"type": kind}, files=files)
        else:
            result = self._api(lambda: self.client.post("media/upload", params={"type": kind}, files=files))
        if not isinstance(result.get("media_id"), str) or not result["media_id"]:
            raise SendError(f"upload of {kind} answered without media_id", retryable=True)
        return result["media_id"]
