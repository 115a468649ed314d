"""The pages' routes, mounted at /web on the callback server (build_asgi).

Sign-in: a page opened with ?code=&state= (WeCom's OAuth2, snsapi_base, coming back with the state
this server gave the browser: bot/web/auth.py) or /web/login?token= (a one-time link from `duban
link`) starts a session kept on the server, for someone on the roster only; the browser holds its
token in a signed, HTTP-only, SameSite=Lax cookie that expires after [web] session_hours. Without
one, inside WeCom the page goes to WeCom's sign-in and back. Every page looks the session up by
its key, with the person (a session whose person changed role or unit, or left the roster, no
longer counts), and checks on the server what they may see; what they may not is answered 404, the
same as what does not exist, and so is a path or form parameter out of range. POST /web/logout
ends the session on the server.
"""
from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import urlencode

import anyio.to_thread
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.app import Application
from bot.campaign import scoring
from bot.web import auth, pages
from bot.web.chart import line_chart
from bot.web.table import ranking_rows
from db import queries
from db.models import MAX_ID
from db.session import DatabaseBusy, outage, unavailable

log = logging.getLogger("duban.web")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Nothing is loaded from anywhere: no script at all, styles and the charts inline.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
ID = re.compile(r"[0-9]{1,10}")  # an id in a form (ASCII digits: str.isdigit() also takes "²")
LIGHT_NAMES = {scoring.GREEN: "绿", scoring.YELLOW: "黄", scoring.RED: "红"}


def _environment(app: Application) -> Environment:
    env = Environment(loader=PackageLoader("bot.web", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(
        pct=lambda v: f"{v * 100:.0f}%",
        score=lambda v: f"{v:.1f}",
        localtime=lambda v, fmt="%m-%d %H:%M": v.astimezone(app.tz).strftime(fmt) if v else "—",
        lightname=lambda v: LIGHT_NAMES.get(v, v),
    )
    env.globals.update(line_chart=line_chart, ranking_rows=ranking_rows, org=app.config.org)
    return env


def build_web(app: Application, writer) -> Starlette:
    """The pages, for mounting at /web; `writer` is the callback's MessageWriter (the report form
    goes the chat's way)."""
    cfg = app.config.web
    env = _environment(app)
    for name in env.list_templates():  # compiled now, not by the first request for each page
        env.get_template(name)
    rankings = pages.Rankings()
    exchange: list[auth.CodeExchange] = []  # made on first use (console mode has no WeCom)
    secret = cfg.session_secret or secrets.token_urlsafe(32)

    states = auth.States(app, secret)
    https = auth.base_url(app.config).startswith("https://")

    def html(request: Request, template: str, status: int = 200, **data) -> HTMLResponse:
        data.setdefault("who", None)
        csrf = data["who"].csrf if data["who"] is not None else ""
        body = env.get_template(f"{template}.html").render(csrf=csrf, path=request.url.path, **data)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def message(request: Request, status: int, title: str, text: str, link: str = "", button: str = "") -> HTMLResponse:
        return html(request, "message", status, title=title, text=text, link=link, button=button)

    def signed_in(request: Request, userid: str, to: str) -> Response:
        """Start a session for `userid` and go to `to`; someone not on the roster gets none."""
        try:
            token = auth.start_session(app, userid)
        except auth.SignInError as exc:
            request.session.clear()
            return message(request, 403, "无权查看", str(exc))
        request.session.clear()  # a new session for each sign-in (no fixation)
        request.session["sid"] = token
        return RedirectResponse(to, status_code=303)

    def here(request: Request) -> str:
        """This page's path and query, without the OAuth parameters."""
        query = {k: v for k, v in request.query_params.items() if k not in ("code", "state")}
        return request.url.path + (f"?{urlencode(query)}" if query else "")

    def to_wecom(request: Request) -> Response:
        """To WeCom's sign-in, with a new state, which the browser keeps in a signed cookie."""
        state, cookie = states.new()
        resp = RedirectResponse(auth.authorize_url(app.config, cfg.base_url + here(request), state), status_code=303)
        resp.set_cookie(auth.STATE_COOKIE, cookie, max_age=int(auth.STATE_VALID.total_seconds()), path="/web",
                        httponly=True, samesite="lax", secure=https)
        return resp

    def from_wecom(request: Request, code: str) -> Response:
        """WeCom sent the browser back with a code: the state it carries must be this browser's."""
        try:
            states.check(request.cookies.get(auth.STATE_COOKIE, ""), request.query_params.get("state", ""))
        except auth.SignInError as exc:
            resp = message(request, 403, "无法登录", str(exc), button=here(request))
        else:
            try:
                if not exchange:
                    exchange.append(auth.CodeExchange(app.config))
                userid = exchange[0].userid(code)
            except auth.SignInError as exc:
                resp = message(request, 403, "无法登录", str(exc))
            else:
                resp = signed_in(request, userid, here(request))
        resp.delete_cookie(auth.STATE_COOKIE, path="/web", httponly=True, samesite="lax", secure=https)
        return resp

    def current(request: Request) -> pages.Viewer | Response:
        """Who is looking, or the response that signs them in or turns them away."""
        code = request.query_params.get("code")
        if code and not app.config.wecom.console_mode:
            return from_wecom(request, code)
        token = request.session.get("sid")
        if isinstance(token, str) and token:
            with Session(app.engine) as s:
                who = pages.signed_in(s, auth.token_hash(token), app.clock.now())
            if who is not None:
                return who
            request.session.clear()  # ended, expired, or the person's role or unit changed
        if not app.config.wecom.console_mode and cfg.base_url:
            return to_wecom(request)
        return message(request, 401, "请先登录", "请从企业微信工作台打开“争先督办”应用，"
                       "或请管理员运行 duban link --user 你的账号 生成登录链接。")

    def page(fn):
        """A sync page (run in the thread pool) for a signed-in viewer."""
        def endpoint(request: Request) -> Response:
            who = current(request)
            if isinstance(who, Response):
                return who
            try:
                resp = fn(request, who)
            except pages.NotVisible:
                resp = message(request, 404, "页面不存在", "没有这个页面，或你无权查看。", link="/web/")
            outage(app.engine).ok()
            return resp
        return endpoint

    def away(request: Request, exc: Exception) -> Response:
        """The database is unreachable or did not answer in time: a short page, no traceback (the
        outage is logged once, when it starts)."""
        if not unavailable(exc):
            raise exc
        outage(app.engine).failed(exc)
        resp = message(request, 503, "暂时无法访问", "系统暂时连不上数据库，请稍后刷新重试。")
        resp.headers["Retry-After"] = "30"
        return resp

    def csrf_ok(who: pages.Viewer, form) -> bool:
        return bool(who.csrf) and secrets.compare_digest(str(form.get("csrf", "")).encode(), who.csrf.encode())

    # ------------------------------------------------------------ pages

    def login(request: Request) -> Response:
        try:
            userid = auth.use_link(app, request.query_params.get("token", ""))
        except auth.SignInError as exc:
            return message(request, 403, "无法登录", str(exc))
        return signed_in(request, userid, "/web/")

    @page
    def overview(request: Request, who: pages.Viewer) -> Response:
        now = app.clock.now()
        with Session(app.engine) as s:
            data = pages.overview(s, app, who, now, rankings)
        return html(request, "overview", who=who, now=now, **data)

    @page
    def unit(request: Request, who: pages.Viewer) -> Response:
        now = app.clock.now()
        with Session(app.engine) as s:
            data = pages.unit_page(s, app, who, request.path_params["unit_id"], now)
        return html(request, "unit", who=who, now=now, **data)

    def me_html(request: Request, who: pages.Viewer, reply: str = "", status: int = 200, **form) -> Response:
        with Session(app.engine) as s:
            data = pages.me_page(s, app, who, app.clock.now())
        return html(request, "me", status, who=who, reply=reply, nonce=secrets.token_hex(12),
                    form=form, **data)

    @page
    def me(request: Request, who: pages.Viewer) -> Response:
        return me_html(request, who)

    async def report(request: Request) -> Response:
        who = await anyio.to_thread.run_sync(current, request)
        if isinstance(who, Response):
            return who
        form = await request.form()
        if not csrf_ok(who, form):
            return message(request, 403, "请求已失效", "表单已过期，请刷新页面后重新提交。", link="/web/me")
        code = str(form.get("task", "")).strip()
        pct = str(form.get("percent", "")).strip().rstrip("%％")
        text = str(form.get("text", "")).strip()
        nonce = str(form.get("nonce", ""))[:40] or secrets.token_hex(12)
        # The chat's own command, through the same writer: the same rules, replies and dedupe
        # (the form's nonce is the MsgId, so a form sent twice is one report).
        line = f"汇报 {code} {pct}{'%' if pct else ''} {text}"
        try:
            reply = await writer.handle(who.member.userid, line, f"web:{nonce}")
        except Exception as exc:
            if not unavailable(exc):
                log.exception("web report from %s failed", who.member.userid)
            reply = app.renderer.render("server_error")
        return await anyio.to_thread.run_sync(
            lambda: me_html(request, who, reply, task=code, percent=pct, text=text))

    @page
    def admin(request: Request, who: pages.Viewer) -> Response:
        if not who.admin:
            raise pages.NotVisible("admin")
        with Session(app.engine) as s:
            data = pages.outbox_page(s)
        return html(request, "admin", who=who, notice=request.session.pop("notice", ""), **data)

    async def admin_form(request: Request):
        """(who, form) of an admin's CSRF-checked POST from the admin page, or the Response refusing it."""
        who = await anyio.to_thread.run_sync(current, request)
        if isinstance(who, Response):
            return who
        if not who.admin:
            return message(request, 404, "页面不存在", "没有这个页面，或你无权查看。", link="/web/")
        form = await request.form()
        if not csrf_ok(who, form):
            return message(request, 403, "请求已失效", "表单已过期，请刷新页面后重新提交。", link="/web/admin")
        return who, form

    async def retry(request: Request) -> Response:
        checked = await admin_form(request)
        if isinstance(checked, Response):
            return checked
        who, form = checked
        ids = None if form.get("all") else [int(v) for v in form.getlist("id") if ID.fullmatch(str(v))
                                            and 0 < int(v) <= MAX_ID]

        def run() -> int:
            with app.session() as s:
                return queries.retry_failed_outbox(s, ids) if ids != [] else 0

        count = await anyio.to_thread.run_sync(run)
        log.info("web: %s put %d failed message(s) back to pending", who.member.userid, count)
        request.session["notice"] = (f"已将 {count} 条失败的消息放回待发送，稍后自动重发。" if count
                                     else "没有可重试的失败消息。")
        return RedirectResponse("/web/admin", status_code=303)

    async def ranking_action(request: Request) -> Response:
        """发布 / 暂缓 from the review queue: the chat's own commands, through the same writer."""
        checked = await admin_form(request)
        if isinstance(checked, Response):
            return checked
        who, form = checked
        month = str(form.get("month", "")).strip()
        if form.get("action") == "hold":
            line = f"暂缓 {month} {str(form.get('reason', '')).strip()}"
        else:
            line = f"发布 {month}"
        try:
            request.session["notice"] = await writer.handle(who.member.userid, line,
                                                            f"web:{secrets.token_hex(12)}")
        except Exception as exc:
            if not unavailable(exc):
                log.exception("web ranking action from %s failed", who.member.userid)
            request.session["notice"] = app.renderer.render("server_error")
        return RedirectResponse("/web/admin", status_code=303)

    async def logout(request: Request) -> Response:
        """End this session on the server (a copy of the cookie stops working too)."""
        form = await request.form()
        token = request.session.get("sid")

        def end() -> bool:
            if not isinstance(token, str) or not token:
                return True
            with Session(app.engine) as s:
                who = pages.signed_in(s, auth.token_hash(token), app.clock.now())
            if who is not None and not csrf_ok(who, form):
                return False
            with app.session() as s:
                queries.end_web_session(s, auth.token_hash(token))
            return True

        if not await anyio.to_thread.run_sync(end):
            return message(request, 403, "请求已失效", "表单已过期，请刷新页面后重新退出。", link="/web/")
        request.session.clear()
        return message(request, 200, "已退出登录", "再次查看请从企业微信工作台打开本应用。")

    routes = [
        Route("/", overview),
        Route("/login", login),
        Route("/logout", logout, methods=["POST"]),
        Route("/unit/{unit_id:int}", unit),
        Route("/me", me),
        Route("/me/report", report, methods=["POST"]),
        Route("/admin", admin),
        Route("/admin/outbox/retry", retry, methods=["POST"]),
        Route("/admin/ranking", ranking_action, methods=["POST"]),
    ]
    middleware = [Middleware(SessionMiddleware, secret_key=secret, session_cookie="duban_session",
                             max_age=int(cfg.session_hours * 3600), path="/web", same_site="lax",
                             https_only=https)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={kind: away for kind in (DBAPIError, SATimeoutError, DatabaseBusy)})
