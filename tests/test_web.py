"""The web pages over real HTTP (httpx): sign-in by WeCom OAuth2 code and by one-time link, signed
expiring cookies, what each role may see, the report form (CSRF, the chat's rules) and the outbox
retry button."""
from __future__ import annotations

import base64
import json
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from click.testing import CliRunner
from itsdangerous import TimestampSigner
from sqlmodel import select

from bot.app import Application
from bot.wecom.callback import build_asgi
from bot.web.auth import make_link
from conftest import ServerThread, add_overseer, at, make_config, seed
from db.models import JobRun, Outbox, Report, Unit

SECRET = "test-session-secret"
XX_SECRETS = ("信息系机密进度说明", "信息系机房漏水问题", "信息系专项督办事项")


def build(db_url, clock, fake, **web) -> Application:
    app = Application(make_config(db_url, api_base=fake.base, web={"session_secret": SECRET, **web}), clock=clock)
    app.migrate()
    seed(app)
    return app


def fill(app: Application) -> dict[str, int]:
    """Reports, a problem and a 督办 for 信息工程系 (what 机电工程系 must never see); March's ranking
    published. Returns unit ids by name."""
    for userid, text in (("li", "汇报 T1 30% 完成方案论证"), ("zhao", f"汇报 T3 50% {XX_SECRETS[0]}"),
                         ("zhao", f"问题 {XX_SECRETS[1]}"), ("admin", f"督办 信息工程系 2026-04-25 {XX_SECRETS[2]}")):
        app.handle_message(userid, text)
    from jobs import JobQueue

    app.config.ranking.review_hours = 0  # March's ranking published at once
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    with app.session() as s:
        return {u.name: u.id for u in s.exec(select(Unit))}


@pytest.fixture
def clock():
    from bot.clock import FixedClock
    return FixedClock(at(2026, 4, 10, 10, 0))


@pytest.fixture
def site(db_url, clock, fake):
    app = build(db_url, clock, fake)
    with ServerThread(build_asgi(app)) as server:
        app.config.web.base_url = server.base
        yield app, server
    app.engine.dispose()


def to_wecom(client: httpx.Client, path: str = "/web/") -> tuple[str, str]:
    """Open `path` without a session: (the page WeCom is to send the browser back to, the state)."""
    resp = client.get(path)
    assert resp.status_code == 303, resp.text
    q = {k: v[0] for k, v in parse_qs(urlparse(resp.headers["location"]).query).items()}
    return q["redirect_uri"], q["state"]


def back_from_wecom(client: httpx.Client, back: str, state: str, userid: str, fake) -> httpx.Response:
    """WeCom sends the browser back to `back` with a fresh code for `userid` and `state`."""
    code = f"code-{userid}-{time.monotonic_ns()}"
    fake.oauth_code(code, userid)
    where = urlparse(back)
    return client.get(f"{where.path}?{where.query + '&' if where.query else ''}code={code}&state={state}")


def signed_in(server, fake, userid: str, path: str = "/web/") -> httpx.Client:
    """A browser signed in as `userid` the way WeCom does it: the page, WeCom's sign-in, back."""
    client = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(client, path)
    resp = back_from_wecom(client, back, state, userid, fake)
    assert resp.status_code == 303 and resp.headers["location"] == path, resp.text
    return client


def test_an_oauth_code_signs_in_with_a_signed_http_only_lax_cookie_that_expires(site, fake):
    app, server = site
    client = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(client, "/web/me")
    fake.oauth_code("c-li", "li")
    resp = client.get(f"/web/me?code=c-li&state={state}")
    assert resp.status_code == 303 and resp.headers["location"] == "/web/me"
    cookie = [c.lower() for c in resp.headers.get_list("set-cookie") if c.startswith("duban_session=")][0]
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "max-age=43200" in cookie and "path=/web" in cookie
    asked = [q for path, q, _ in fake.state.requests if path == "auth/getuserinfo"]
    assert asked == [{"access_token": asked[0]["access_token"], "code": "c-li"}]
    page = client.get("/web/me")
    assert page.status_code == 200 and "李四" in page.text and "T1" in page.text

    used = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(used)
    fake.oauth_code("c-used", "li")
    assert used.get(f"/web/?code=c-used&state={state}").status_code == 303
    again = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(again)
    resp = again.get(f"/web/?code=c-used&state={state}")  # WeCom's codes work once
    assert resp.status_code == 403 and "企业微信身份验证失败" in resp.text
    outsider = httpx.Client(base_url=server.base, timeout=10)
    resp = back_from_wecom(outsider, *to_wecom(outsider), "", fake)
    assert resp.status_code == 403 and "只有本单位企业微信成员" in resp.text


def test_without_a_session_the_page_goes_to_wecom_sign_in_and_forged_or_old_cookies_do_not_count(site, fake):
    app, server = site
    resp = httpx.get(server.base + "/web/unit/2?x=1", timeout=10)
    assert resp.status_code == 303
    where = urlparse(resp.headers["location"])
    assert where.netloc == "open.weixin.qq.com" and where.path == "/connect/oauth2/authorize"
    assert where.fragment == "wechat_redirect"
    q = {k: v[0] for k, v in parse_qs(where.query).items()}
    assert len(q.pop("state")) >= 20
    assert q == {"appid": "wwfakecorp", "redirect_uri": f"{server.base}/web/unit/2?x=1", "response_type": "code",
                 "scope": "snsapi_base", "agentid": "1000002"}

    # Neither the old cookie's content (who, signed with the secret), nor a session id that is not
    # on the server, nor one signed with another secret or 13 hours ago (sessions last 12), counts.
    real = signed_in(server, fake, "admin").cookies["duban_session"]
    sid = json.loads(base64.b64decode(real.split(".")[0]))["sid"]

    class Old(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 13 * 3600

    def cookie(data: dict, signer=TimestampSigner(SECRET)) -> str:
        return signer.sign(base64.b64encode(json.dumps(data).encode())).decode()

    for forged in (cookie({"uid": "admin", "csrf": "x"}), cookie({"sid": "made-up"}),
                   cookie({"sid": sid}, TimestampSigner("wrong-secret")), cookie({"sid": sid}, Old(SECRET))):
        resp = httpx.get(server.base + "/web/admin", cookies={"duban_session": forged}, timeout=10)
        assert resp.status_code == 303 and "open.weixin.qq.com" in resp.headers["location"]
    good = httpx.get(server.base + "/web/admin", cookies={"duban_session": cookie({"sid": sid})}, timeout=10)
    assert good.status_code == 200 and "消息发送队列" in good.text  # the same session, signed now: it counts


def _unit_urls(ids: dict[str, int]) -> list[str]:
    guesses = set(range(0, 12)) | set(ids.values()) | {99999, -1}
    return [f"/web/unit/{i}" for i in sorted(guesses)] + ["/web/unit/abc", "/web/unit/2/../3", "/web/unit/%33"]


@pytest.mark.parametrize("userid", ["li", "zhang"])  # 成员 and 负责人 of 机电工程系
def test_a_member_or_leader_sees_no_other_units_data_through_any_url(site, fake, userid):
    app, server = site
    ids = fill(app)
    own = ids["机电工程系"]
    client = signed_in(server, fake, userid)
    for url in _unit_urls(ids):
        resp = client.get(url)
        if url == f"/web/unit/{own}":
            assert resp.status_code == 200 and "完成方案论证" in resp.text
        else:
            assert resp.status_code == 404, url
        assert not any(secret in resp.text for secret in XX_SECRETS), url
    for url in ("/web/", "/web/me", "/web/admin", "/web/unit/%d?unit_id=%d" % (own, ids["信息工程系"])):
        resp = client.get(url)
        assert resp.status_code == (404 if url == "/web/admin" else 200), url
        assert not any(secret in resp.text for secret in XX_SECRETS) and "上线一站式学生服务大厅" not in resp.text
    overview = client.get("/web/").text
    assert "排名预览" not in overview and "2026-03 排名" in overview  # the published ranking only
    assert 'href="/web/unit/%d"' % ids["信息工程系"] not in overview and "管理</a>" not in overview
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/web/me").text).group(1)
    assert client.post("/web/admin/outbox/retry", data={"csrf": csrf, "all": "1"}).status_code == 404
    other = client.post("/web/me/report", data={"csrf": csrf, "nonce": "n1", "task": "T3", "percent": "90",
                                                "text": "越权汇报"})
    assert other.status_code == 200 and "任务 T3 不属于您所在单位" in other.text
    with app.session() as s:
        assert not s.exec(select(Report).where(Report.text == "越权汇报")).all()


def test_a_leader_in_charge_sees_the_pages_of_their_units_and_no_other(site, fake):
    """A 分管领导 (over 机电工程系 by 分管单位, over 图书馆 as T5's 责任领导, on 党政办公室's roll):
    those units' pages, never 信息工程系's, whatever the URL."""
    app, server = site
    add_overseer(app)
    ids = fill(app)
    theirs = {f"/web/unit/{ids[name]}" for name in ("机电工程系", "图书馆", "党政办公室")}
    client = signed_in(server, fake, "vp")
    for url in _unit_urls(ids):
        resp = client.get(url)
        assert resp.status_code == (200 if url in theirs else 404), url
        assert not any(secret in resp.text for secret in XX_SECRETS), url
    assert "完成方案论证" in client.get(f"/web/unit/{ids['机电工程系']}").text
    assert "延长自习室开放时间" in client.get(f"/web/unit/{ids['图书馆']}").text
    overview = client.get("/web/").text
    assert 'id="overseen"' in overview and "分管单位平均" in overview
    assert 'href="/web/unit/%d"' % ids["机电工程系"] in overview and 'href="/web/unit/%d"' % ids["图书馆"] in overview
    assert 'href="/web/unit/%d"' % ids["信息工程系"] not in overview  # named in the published ranking, no link
    assert "2026-03 排名" in overview and "排名预览" not in overview and "管理</a>" not in overview
    assert not any(secret in overview for secret in XX_SECRETS) and "上线一站式学生服务大厅" not in overview
    assert client.get("/web/admin").status_code == 404
    member = signed_in(server, fake, "li")  # a member's overview has no such section
    assert 'id="overseen"' not in member.get("/web/").text


def test_an_admin_sees_every_unit_the_preview_and_the_outbox(site, fake):
    app, server = site
    ids = fill(app)
    client = signed_in(server, fake, "admin")
    xx = client.get(f"/web/unit/{ids['信息工程系']}")
    assert xx.status_code == 200 and all(secret in xx.text for secret in XX_SECRETS)
    assert "第1版" in xx.text and "待反馈" in xx.text and "未整改" in xx.text
    overview = client.get("/web/").text
    assert "2026-04 排名预览" in overview and "2026-03 排名" in overview and "<svg" in overview
    summary = overview.split('id="summary"', 1)[1].split("</section>", 1)[0]
    assert 'class="org"' in summary and "参评单位</span><b>3</b>" in summary  # the organisation, not the office
    assert "不参评" not in summary and "党政办公室" not in summary  # (the office has no task: not ranked)
    assert "4月" in overview and "月度督办提示" in overview and "4月25日" in overview
    assert client.get("/web/admin").status_code == 200


def test_the_report_form_needs_its_csrf_token_and_follows_the_chat_rules(site, fake):
    app, server = site
    client = signed_in(server, fake, "li")
    page = client.get("/web/me").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    form = {"task": "T1", "percent": "60", "text": "完成实训基地主体验收", "nonce": nonce}

    forged = client.post("/web/me/report", data={**form, "csrf": "guess"})
    assert forged.status_code == 403 and "表单已过期" in forged.text
    elsewhere = httpx.post(server.base + "/web/me/report", data={**form, "csrf": csrf}, timeout=10)
    assert elsewhere.status_code == 303  # no session cookie: to sign-in, nothing written
    with app.session() as s:
        assert not s.exec(select(Report)).all()

    done = client.post("/web/me/report", data={**form, "csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/web/me#mine"  # Post/Redirect/Get
    shown = client.get("/web/me").text
    assert "已收到 T1 汇报：进度 60%" in shown.split('id="stored"', 1)[1].split("</section>", 1)[0]
    assert 'name="percent" inputmode="numeric" placeholder="例如 60" value=""' in shown  # the form is empty
    assert "完成实训基地主体验收</textarea>" not in shown and "完成实训基地主体验收" in shown.split('id="mine"')[1]
    assert "已收到" not in client.get("/web/me").text  # said once
    again = re.search(r'name="nonce" value="([^"]+)"', shown).group(1)
    empty = client.post("/web/me/report", data={"csrf": csrf, "nonce": again, "task": "T1", "percent": "", "text": ""})
    assert empty.status_code == 200 and "已收到" not in empty.text  # a second press of the empty form stores nothing
    twice = client.post("/web/me/report", data={**form, "csrf": csrf})  # the first form resent (its nonce): one report
    assert twice.status_code == 200 and "已收到 T1 汇报：进度 60%" in twice.text
    bad = client.post("/web/me/report", data={**form, "csrf": csrf, "nonce": "other", "percent": "六十"})
    assert "六十" in bad.text and "已收到" not in bad.text
    with app.session() as s:
        rows = s.exec(select(Report)).all()
    assert [(r.percent, r.text, r.userid) for r in rows] == [(60, "完成实训基地主体验收", "li")]


def test_duban_link_signs_in_once_within_ten_minutes(db_url, clock, fake, tmp_path):
    from bot.cli import main

    app = build(db_url, clock, fake)
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "{db_url}"\n[web]\nbase_url = "https://duban.example.edu.cn"\n')
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "config.toml"), "link", "--user", "li"])
    assert result.exit_code == 0
    link = result.output.strip()
    assert re.fullmatch(r"https://duban\.example\.edu\.cn/web/login\?token=[\w-]{20,}", link)
    unknown = CliRunner().invoke(main, ["--config", str(tmp_path / "config.toml"), "link", "--user", "ghost"])
    assert unknown.exit_code == 1 and "ghost 不在花名册" in unknown.output
    with ServerThread(build_asgi(app)) as server:
        path = link.removeprefix("https://duban.example.edu.cn")
        client = httpx.Client(base_url=server.base, timeout=10)
        resp = client.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/web/"
        assert "李四" in client.get("/web/").text
        reused = httpx.get(server.base + path, timeout=10)
        assert reused.status_code == 403 and "已用过" in reused.text
        late = make_link(app, "zhang").removeprefix(f"http://{app.config.server.host}:{app.config.server.port}")
        clock.set(clock.now() + timedelta(minutes=11))
        assert httpx.get(server.base + late, timeout=10).status_code == 403
        fresh = make_link(app, "zhang").split(":8080", 1)[1]
        assert httpx.get(server.base + fresh, timeout=10).status_code == 303
    app.engine.dispose()


def test_an_admin_retries_a_failed_message_from_the_page(site, fake):
    app, server = site
    with app.session() as s:
        for key in ("a", "b"):
            s.add(Outbox(key=key, channel="app", target="li", msgtype="text", payload='{"content": "x"}',
                         status="failed", attempts=30, last_error="errcode 40003: invalid userid",
                         created_at=at(2026, 4, 10, 9)))
    client = signed_in(server, fake, "admin")
    page = client.get("/web/admin").text
    assert "没有待审核的排名" in page and page.count('class="failed"') == 2
    assert "收件人账号无效（错误码 40003）" in page and "<b>李四</b>" in page  # in words, by name
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/web/admin/outbox/retry", data={"csrf": "x", "id": "1"}).status_code == 403
    resp = client.post("/web/admin/outbox/retry", data={"csrf": csrf, "id": "1"}, follow_redirects=True)
    assert "已将 1 条失败的消息放回待发送" in resp.text and resp.text.count('class="failed"') == 1
    with app.session() as s:
        assert {r.key: r.status for r in s.exec(select(Outbox))} == {"a": "pending", "b": "failed"}


def test_an_admin_reads_the_appeals_and_publishes_from_the_review_queue(db_url, clock, fake):
    """The month's ranking in review: the admin page lists each 申诉; 暂缓 and 发布 are the chat's own
    commands (same rules, same one broadcast)."""
    from jobs import JobQueue

    app = build(db_url, clock, fake)
    app.config.broadcast.chat_id = "chat-all"
    app.handle_message("li", "汇报 T1 30% 三月进展", "r0")
    clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    clock.set(at(2026, 4, 1, 11))
    app.handle_message("wang", "申诉 T4 已完成，请核实", "r1")
    try:
        with ServerThread(build_asgi(app)) as server:
            app.config.web.base_url = server.base
            admin = signed_in(server, fake, "admin")
            page = admin.get("/web/admin").text
            assert "2026-03 排名预览中" in page and "T4 已完成，请核实" in page and "信息工程系" in page
            appeal = page.split('class="appeal"', 1)[1].split("</tr>", 1)[0]  # the appealing unit's figures
            assert re.search(r"名次 \d</span> <span>得分 \d+\.\d</span> <span>汇报率 \d+%</span> "
                             r"<span>已报 \d/\d</span> <span>逾期 \d</span>", appeal), appeal
            frozen = page.split('id="frozen"', 1)[1].split("</details>", 1)[0]  # the ranking as it will go out
            assert frozen.count("<tr data-unit=") == 4 and "机电工程系" in frozen
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            held = admin.post("/web/admin/ranking", data={"csrf": csrf, "month": "2026-03", "action": "hold",
                                                          "reason": "核实申诉"}, follow_redirects=True).text
            assert "已暂缓公布：核实申诉" in held and "已暂缓" in held
            member = signed_in(server, fake, "li")
            assert member.post("/web/admin/ranking", data={"csrf": csrf, "month": "2026-03"}).status_code == 404
            asked = admin.post("/web/admin/ranking", data={"csrf": csrf, "month": "2026-03", "action": "publish"},
                               follow_redirects=True).text
            assert "确认发布 2026-03 排名？" in asked and 'name="confirm" value="1"' in asked  # asked first
            with app.session() as s:
                assert not [r for r in s.exec(select(Outbox)) if r.target == "chat-all"]  # nothing sent yet
            confirm = {"csrf": csrf, "month": "2026-03", "action": "publish", "confirm": "1"}
            done = admin.post("/web/admin/ranking", data=confirm, follow_redirects=True).text
            assert "排名已公布到通报群" in done and "没有待审核的排名" in done
            again = admin.post("/web/admin/ranking", data=confirm, follow_redirects=True).text
            assert "公布过，未重复发送" in again
        with app.session() as s:
            texts = [r for r in s.exec(select(Outbox)) if r.target == "chat-all" and r.msgtype != "image"]
        assert len(texts) == 1
    finally:
        app.engine.dispose()


def _grow(app: Application, count: int, more: int, tag: str) -> None:
    """`count` more units, each with a 负责人, two tasks, reports in March and April and a 督办
    item due in March (answered and accepted); and `more` tasks (李四's), reports, problems with
    notes and 督办 items with their timeline in 党政办公室 and 机电工程系, the units whose pages are
    counted. `tag` keeps the codes apart."""
    from db.models import ItemEvent, Member, Problem, ProblemProgress, SupervisionItem, Task

    def tasks(s, unit_id: int, owner: str, n: int, code: str) -> None:
        for k in range(n):
            task = Task(code=f"{code}{k}", unit_id=unit_id, line="实干争效", content="推进", owner_userid=owner,
                        start_date=at(2026, 3, 1).date(), due_date=at(2026, 12, 31).date())
            s.add(task)
            s.flush()
            for month, day, version in ((3, 10 + k % 15, 1), (4, 2 + k % 7, 1), (4, 3 + k % 7, 2)):
                s.add(Report(task_id=task.id, unit_id=unit_id, userid=owner, percent=10 * month + k + version,
                             text="进展", created_at=at(2026, month, day, 9), month=f"2026-{month:02d}",
                             local_day=day, version=version))

    def item(s, unit_id: int, code: str, answered_day: int, events: int) -> None:
        it = SupervisionItem(code=code, unit_id=unit_id, content="报送", deadline=at(2026, 3, 25).date(),
                             month="2026-03", created_by="admin", created_at=at(2026, 3, 5, 9), status="办结",
                             answered_at=at(2026, 3, answered_day, 9), closed_at=at(2026, 3, 28, 9))
        s.add(it)
        s.flush()
        for e in range(events):
            s.add(ItemEvent(item_id=it.id, kind="反馈", userid="admin", text=f"第{e}次", created_at=at(2026, 3, 20, 9)))

    with app.session() as s:
        for i in range(count):
            unit = Unit(name=f"新增单位{tag}{i:03d}", leader_userid=f"g{tag}{i}")
            s.add(unit)
            s.flush()
            s.add(Member(userid=f"g{tag}{i}", name=f"负责人{i}", unit_id=unit.id, role="负责人"))
            tasks(s, unit.id, f"g{tag}{i}", 2, f"G{tag}{i}-")
            item(s, unit.id, f"DG{tag}{i}", 20 + i % 8, 1)
        for unit_id, owner in ((1, "admin"), (2, "li")):
            tasks(s, unit_id, owner, more, f"M{tag}{unit_id}-")
            for k in range(more // 2):
                item(s, unit_id, f"DM{tag}{unit_id}-{k}", 20 + k % 8, 5)
                problem = Problem(code=f"PM{tag}{unit_id}-{k}", unit_id=unit_id, description="问题", owner_userid=owner,
                                  created_at=at(2026, 3, 5, 9))
                s.add(problem)
                s.flush()
                for n in range(5):
                    s.add(ProblemProgress(problem_id=problem.id, userid=owner, text=f"整改{n}",
                                          created_at=at(2026, 3, 6 + n, 9)))


def _statements_per_page(app: Application) -> dict[str, int]:
    """SQL statements of each page, as an admin and as a member, each on a server started afresh
    (in this process, so its statements are counted here): 总览 first counting the finished months
    (none kept yet), then reading them back, then warm."""
    from sqlalchemy import delete, event

    from db.models import MonthFigures, RankingSoFar

    with app.session() as s:
        s.exec(delete(MonthFigures))
        s.exec(delete(RankingSoFar))
    count, out = [0], {}

    def counting(*_):
        count[0] += 1

    event.listen(app.engine, "before_cursor_execute", counting)
    try:
        for who, paths in (("admin", ("/web/", "/web/", "/web/unit/1", "/web/me", "/web/admin")),
                           ("li", ("/web/", "/web/", "/web/unit/2", "/web/me"))):
            with ServerThread(build_asgi(app)) as server:
                client = httpx.Client(base_url=server.base, timeout=30)
                link = urlparse(make_link(app, who))
                assert client.get(f"{link.path}?{link.query}").status_code == 303
                for i, path in enumerate(paths):
                    count[0] = 0
                    assert client.get(path).status_code == 200, path
                    out[f"{who} {path} #{i}"] = count[0]
    finally:
        event.remove(app.engine, "before_cursor_execute", counting)
    return out


def test_no_page_makes_more_sql_statements_for_more_units(db_url, clock):
    """No N+1 anywhere: each page's statements (总览 counting the year, reading it back, warm; 单位,
    我的, 管理) are as many for 44 units as for 8, and for a unit (and a person) with ten times the
    tasks, reports, problems and items."""
    app = Application(make_config(db_url, web={"session_secret": SECRET}), clock=clock)
    app.migrate()
    seed(app)
    fill(app)
    _grow(app, 4, 2, "a")
    few = _statements_per_page(app)
    _grow(app, 36, 20, "b")
    assert _statements_per_page(app) == few
    assert few["admin /web/ #0"] > few["li /web/ #0"] > few["li /web/ #1"], few  # counted, read back, warm
    app.engine.dispose()
