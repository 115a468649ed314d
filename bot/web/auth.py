"""Who is looking at a page: WeCom OAuth2 (snsapi_base: WeCom opens the page with a `code`, which
auth/getuserinfo turns into the userid), or a one-time link printed by `duban link`.

OAuth2's `state` is random for each sign-in: it goes to WeCom in the redirect and into a short-lived
signed cookie with it, and the page WeCom sends back must carry the same, once. So nobody can sign
a browser in with a code of their own (login CSRF), and a link with a code in it signs in nobody.

A sign-in starts a session kept on the server (db WebSession; the cookie holds its token), so that
logging out ends it everywhere, and a role or unit change ends it too."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

from bot.config import Config
from db import queries

LINK_VALID = timedelta(minutes=10)
STATE_VALID = timedelta(minutes=10)  # from the redirect to WeCom to the page it sends back
STATE_COOKIE = "duban_state"
AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"


class SignInError(Exception):
    """The code or link does not sign anyone in; str() is a Chinese sentence for the page."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def base_url(config: Config) -> str:
    """How people reach this server: [web] base_url, else the address it listens on."""
    return config.web.base_url or f"http://{config.server.host}:{config.server.port}"


def make_link(app, userid: str) -> str:
    """A sign-in link for `userid`, valid for LINK_VALID and for one use. Only the token's hash is stored."""
    token = secrets.token_urlsafe(24)
    with app.session() as s:
        queries.add_web_link(s, token_hash(token), userid, app.clock.now() + LINK_VALID)
    return f"{base_url(app.config)}/web/login?token={token}"


def use_link(app, token: str) -> str:
    """The userid a one-time link was made for; it cannot be used again."""
    with app.session() as s:
        userid = queries.use_web_link(s, token_hash(token), app.clock.now()) if token else None
    if userid is None:
        raise SignInError("登录链接无效、已用过或已过期（有效 10 分钟，只能用一次），请重新生成。")
    return userid


def authorize_url(config: Config, redirect_uri: str, state: str) -> str:
    """WeCom's OAuth2 page, which comes back to `redirect_uri` with ?code=...&state=...; opened inside WeCom."""
    query = urlencode({"appid": config.wecom.corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state, "agentid": config.wecom.agent_id})
    return f"{AUTHORIZE_URL}?{query}#wechat_redirect"


class States:
    """OAuth2 states: `new()` gives a state and the signed value of its cookie (the state and when it
    was made, by the app's clock); `check()` lets a state through once, within STATE_VALID, and only
    with the cookie it was set with."""

    def __init__(self, app, secret: str):
        self.app = app
        self.signer = URLSafeSerializer(secret, salt="duban-oauth-state")

    def new(self) -> tuple[str, str]:
        state = secrets.token_urlsafe(16)
        return state, self.signer.dumps([state, self.app.clock.now().timestamp()])

    def check(self, cookie: str, state: str) -> None:
        now = self.app.clock.now()
        try:
            expected, made = self.signer.loads(cookie)
            fresh = 0 <= now.timestamp() - float(made) <= STATE_VALID.total_seconds()
        except (BadSignature, TypeError, ValueError):
            expected, fresh = "", False
        same = isinstance(expected, str) and secrets.compare_digest(expected.encode(), state.encode())
        if not (fresh and state and same):
            raise SignInError("登录已失效或不是从本页发起的，请重新登录。")
        with self.app.session() as s:
            if not queries.spend_token(s, token_hash(f"state:{state}"), now, now + STATE_VALID):
                raise SignInError("这次登录已经用过，请重新登录。")


def start_session(app, userid: str) -> str:
    """A new session for someone on the roster: the token for their cookie (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    with app.session() as s:
        member = queries.get_member(s, userid)
        if member is None:
            raise SignInError(f"{userid} 不在花名册中，请联系{app.config.org.office}添加。")
        expires = app.clock.now() + timedelta(hours=app.config.web.session_hours)
        queries.start_web_session(s, token_hash(token), member, secrets.token_urlsafe(24), expires)
    return token


class CodeExchange:
    """auth/getuserinfo through the same API client (and token handling) as the sender."""

    def __init__(self, config: Config):
        from bot.wecom.api import WeComTransport

        self.transport = WeComTransport(config.wecom)

    def userid(self, code: str) -> str:
        from bot.wecom.api import SendError

        try:
            result = self.transport.user_from_code(code)
        except SendError as exc:
            raise SignInError(f"企业微信身份验证失败（{exc}），请从企业微信重新打开本页。") from None
        userid = result.get("userid") or result.get("UserId")
        if not userid:
            raise SignInError("只有本单位企业微信成员可以查看本页。")
        return userid
