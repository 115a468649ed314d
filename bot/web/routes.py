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
from urllib.parse import quote, urlencode

import anyio.to_thread
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
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
from bot.campaign import scoring, years
from bot.excel import lists as lists_file
from bot.excel.export import generate
from bot.web import auth, pages
from bot.web.chart import line_chart
from bot.web.table import ranking_rows
from db import queries
from db.models import Unit
from db.month import Month
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
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ID = re.compile(r"[0-9]{1,10}")  # an id in a form (ASCII digits: str.isdigit() also takes "²")
LIGHT_NAMES = {scoring.GREEN: "绿", scoring.YELLOW: "黄", scoring.RED: "红"}


# The chat's emoji, as marks the page draws itself (a phone's browser may lack the emoji font).
MARKS = {"✅": "ok", "⚠️": "warn", "⚠": "warn", "🔴": "red", "🟡": "yellow", "🟢": "green"}
EMOJI = re.compile("[\u2600-\u27bf\U0001f300-\U0001faff\u2b50\u2b55]\ufe0f?|\ufe0f")


def marks(text: str) -> Markup:
    """A reply or push text for the page: escaped, its emoji drawn by CSS or left out."""
    def mark(m: re.Match) -> str:
        kind = MARKS.get(m.group(0)) or MARKS.get(m.group(0).rstrip("\ufe0f"))
        return f'<i class="mk mk-{kind}"></i>' if kind else ""
    return Markup(EMOJI.sub(mark, str(escape(text))))


def _environment(app: Application) -> Environment:
    env = Environment(loader=PackageLoader("bot.web", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(
        pct=lambda v: f"{v * 100:.0f}%",
        score=lambda v: f"{v:.1f}",
        localtime=lambda v, fmt="%m-%d %H:%M": v.astimezone(app.tz).strftime(fmt) if v else "—",
        lightname=lambda v: LIGHT_NAMES.get(v, v),
        marks=marks,
    )
    env.globals.update(line_chart=line_chart, ranking_rows=ranking_rows, org=app.config.org)
    return env


def _year(request: Request) -> int | None:
    """?year=2026: a past campaign year (anything else: the current one)."""
    text = request.query_params.get("year", "")
    return int(text) if re.fullmatch(r"[0-9]{4}", text) else None


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
            data = pages.unit_page(s, app, who, request.path_params["unit_id"], now, _year(request))
        return html(request, "unit", who=who, now=now, notice=request.session.pop("notice", ""), **data)

    async def unit_lists(request: Request) -> Response:
        """The unit's lists uploaded by its 负责人 (or an admin): checked and kept as chat's file would be."""
        who = await anyio.to_thread.run_sync(current, request)
        if isinstance(who, Response):
            return who
        unit_id = request.path_params["unit_id"]
        if not who.sends_lists(unit_id):
            return message(request, 404, "页面不存在", "没有这个页面，或你无权查看。", link="/web/")
        limit = app.config.storage.max_bytes
        form = await request.form(max_files=1, max_fields=4)
        if not csrf_ok(who, form):
            return message(request, 403, "请求已失效", "表单已过期，请刷新页面后重新提交。", link=f"/web/unit/{unit_id}")
        upload = form.get("file")
        data = await upload.read(limit + 1) if hasattr(upload, "read") else b""
        name = str(getattr(upload, "filename", "") or "")

        def run() -> str:
            if len(data) > limit:
                return app.renderer.render("lists_push", att={"status": "rejected", "error": "too_large"},
                                           max_mb=app.config.storage.max_mb)
            if not lists_file.is_workbook(data):
                return app.renderer.render("lists_push", att={"status": "rejected", "error": "bad_type"})
            with app.session() as s:
                unit = s.get(Unit, unit_id)
                if unit is None:
                    return ""
                reply = lists_file.take(s, unit, who.member, data, app.clock.now(), "web", name)
                for push in reply.pushes:
                    app.enqueue_push(s, push, f"push:web:{push.key}")
                return app.renderer.render(reply.template, **reply.data)

        request.session["notice"] = await anyio.to_thread.run_sync(run)
        log.info("web: %s uploaded lists for unit %s", who.member.userid, unit_id)
        return RedirectResponse(f"/web/unit/{unit_id}#lists", status_code=303)

    @page
    def year(request: Request, who: pages.Viewer) -> Response:
        now = app.clock.now()
        with Session(app.engine) as s:
            data = pages.year_page(s, app, who, request.path_params["year"], request.query_params.get("month", ""),
                                   now)
        return html(request, "year", who=who, now=now, **data)

    def me_html(request: Request, who: pages.Viewer, reply: str = "", status: int = 200, **form) -> Response:
        with Session(app.engine) as s:
            data = pages.me_page(s, app, who, app.clock.now())
        return html(request, "me", status, who=who, reply=reply, nonce=secrets.token_hex(12),
                    form=form, stored=request.session.pop("stored", ""), **data)

    @page
    def me(request: Request, who: pages.Viewer) -> Response:
        return me_html(request, who)

    def last_report(userid: str) -> int:
        with Session(app.engine) as s:
            return queries.last_report_id(s, userid)

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
        before = await anyio.to_thread.run_sync(last_report, who.member.userid)
        try:
            reply = await writer.handle(who.member.userid, line, f"web:{nonce}")
        except Exception as exc:
            if not unavailable(exc):
                log.exception("web report from %s failed", who.member.userid)
            reply = app.renderer.render("server_error")
        if await anyio.to_thread.run_sync(last_report, who.member.userid) != before:
            # stored: Post/Redirect/Get, so the page shows the stored report and an empty form,
            # and reloading or pressing again sends nothing
            request.session["stored"] = reply
            return RedirectResponse("/web/me#mine", status_code=303)
        return await anyio.to_thread.run_sync(
            lambda: me_html(request, who, reply, task=code, percent=pct, text=text))

    @page
    def admin(request: Request, who: pages.Viewer) -> Response:
        if not who.admin:
            raise pages.NotVisible("admin")
        with Session(app.engine) as s:
            data = {**pages.outbox_page(s, app, app.clock.now()), **pages.campaign_panel(s, app, app.clock.now())}
        return html(request, "admin", who=who, notice=request.session.pop("notice", ""), **data)

    @page
    def download(request: Request, who: pages.Viewer) -> Response:
        """The month's or the year's workbook, the same as the chat's 导出."""
        if not who.admin:
            raise pages.NotVisible("admin")
        now = app.clock.now()
        year, month = request.query_params.get("year", ""), request.query_params.get("month", "")
        try:
            spec = {"kind": "year", "year": int(year)} if year else {"kind": "month", "month": str(Month.parse(month))}
        except ValueError:
            return message(request, 400, "无法导出", "请从管理页的链接下载：月份形如 2026-03，年度形如 2026。",
                           link="/web/admin")
        name = f"争先督办-{spec['year']}年度考核.xlsx" if year else f"争先督办-{spec['month']}.xlsx"
        with Session(app.engine) as s:
            body = generate(s, app.config, {**spec, "at": now.isoformat()})
        return Response(body, media_type=XLSX, headers={
            **SECURITY_HEADERS, "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})

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

    async def admin_command(request: Request, line_of, back: str) -> Response:
        """A button on 管理: the chat's own command (`await line_of(who, form)`, or a page asking to
        confirm it), through the same writer, so the same rules apply; its answer is shown on the page
        it goes `back` to."""
        checked = await admin_form(request)
        if isinstance(checked, Response):
            return checked
        who, form = checked
        line = await line_of(who, form)
        if isinstance(line, Response):  # asked once more first
            return line
        try:
            request.session["notice"] = await writer.handle(who.member.userid, line, f"web:{secrets.token_hex(12)}")
        except Exception as exc:
            if not unavailable(exc):
                log.exception("web action from %s failed", who.member.userid)
            request.session["notice"] = app.renderer.render("server_error")
        return RedirectResponse(back, status_code=303)

    async def ranking_action(request: Request) -> Response:
        """发布 / 暂缓 from the review queue."""
        async def line(who, form) -> str | Response:
            month = str(form.get("month", "")).strip()
            if form.get("action") == "hold":
                return f"暂缓 {month} {str(form.get('reason', '')).strip()}"
            if form.get("confirm") != "1":  # 发布 sends to the whole college: asked once more
                return await anyio.to_thread.run_sync(
                    lambda: html(request, "confirm", who=who, month=month, group=app.config.broadcast.chat_id))
            return f"发布 {month}"
        return await admin_command(request, line, "/web/admin")

    async def lists_action(request: Request) -> Response:
        """通过 / 退回 a unit's lists from the review on 管理."""
        async def line(who, form) -> str:
            unit = str(form.get("unit", "")).strip()
            if form.get("action") == "return":
                return f"退回 {unit} {str(form.get('opinion', '')).strip()}"
            return f"通过 {unit}"
        return await admin_command(request, line, "/web/admin#lists")

    async def campaign_new(request: Request) -> Response:
        """开始新年度 from 管理: `duban campaign new YEAR --carry ...`, in one transaction."""
        checked = await admin_form(request)
        if isinstance(checked, Response):
            return checked
        who, form = checked
        text, carry = str(form.get("year", "")).strip(), str(form.get("carry", ""))

        def run() -> str:
            now = app.clock.now()
            with app.session() as s:
                current = years.current_year(s, app.config, now)
                if not (text.isdigit() and current < int(text) <= 2100) or carry not in ("unfinished", "none"):
                    return app.renderer.render("campaign_refused", year=text, current=current)
                open_ = years.start(s, app.config, int(text), now, carry == "unfinished")
                first = years.first_month(s, app.config, int(text))
            log.info("web: %s started the %s campaign (carry %s)", who.member.userid, text, carry)
            return app.renderer.render("cli_campaign_new", year=int(text), previous=current, first=first,
                                       open=open_, carried=carry == "unfinished" and bool(open_))

        request.session["notice"] = await anyio.to_thread.run_sync(run)
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
        Route("/year/{year:int}", year),
        Route("/me", me),
        Route("/me/report", report, methods=["POST"]),
        Route("/admin", admin),
        Route("/admin/export", download),
        Route("/admin/outbox/retry", retry, methods=["POST"]),
        Route("/admin/ranking", ranking_action, methods=["POST"]),
        Route("/admin/campaign", campaign_new, methods=["POST"]),
        Route("/admin/lists", lists_action, methods=["POST"]),
        Route("/unit/{unit_id:int}/lists", unit_lists, methods=["POST"]),
    ]
    middleware = [Middleware(SessionMiddleware, secret_key=secret, session_cookie="duban_session",
                             max_age=int(cfg.session_hours * 3600), path="/web", same_site="lax",
                             https_only=https)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={kind: away for kind in (DBAPIError, SATimeoutError, DatabaseBusy)})
