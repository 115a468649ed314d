"""Who is looking at a page: WeCom OAuth2 (snsapi_base: WeCom opens the page with a `code`, which
auth/getuserinfo turns into the userid), or a one-time link printed by `duban link`."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from bot.config import Config
from db import queries

LINK_VALID = timedelta(minutes=10)
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


def authorize_url(config: Config, redirect_uri: str) -> str:
    """WeCom's OAuth2 page, which comes back to `redirect_uri` with ?code=...; opened inside WeCom."""
    query = urlencode({"appid": config.wecom.corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": "duban", "agentid": config.wecom.agent_id})
    return f"{AUTHORIZE_URL}?{query}#wechat_redirect"


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
