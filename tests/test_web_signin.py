"""Signing in to the pages and out again, over real HTTP: WeCom's OAuth2 `state` is this browser's
and good once; sessions live on the server, so logging out (with the form's CSRF token) ends a
session everywhere, and a role or unit change, or leaving the roster, ends that person's sessions."""
from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import delete
from sqlmodel import Session, select

from conftest import ServerThread
from db.models import LeaderUnit, Member, WebSession
from test_roster import workbook, run_import
from test_web import back_from_wecom, signed_in, site, to_wecom  # noqa: F401  (site: the fixture)


def signed_out(client: httpx.Client) -> bool:
    """The browser is sent to WeCom's sign-in again."""
    resp = client.get("/web/")
    return resp.status_code == 303 and "open.weixin.qq.com" in resp.headers["location"]


def test_a_code_counts_only_with_the_state_this_browser_was_given_and_only_once(site, fake):
    app, server = site
    # WeCom's codes as today's links carry them: state=duban, no state, or another browser's state.
    attacker = httpx.Client(base_url=server.base, timeout=10)
    back, attacker_state = to_wecom(attacker)
    for state in ("duban", "", attacker_state):
        victim = httpx.Client(base_url=server.base, timeout=10)
        fake.oauth_code(f"c-{state}", "li")
        resp = victim.get(f"/web/me?code=c-{state}&state={state}")
        assert resp.status_code == 403 and "重新登录" in resp.text, state
        assert 'class="button" href="/web/me"' in resp.text  # signs in afresh from this page
        assert signed_out(victim)
        assert not any(path == "auth/getuserinfo" and q.get("code") == f"c-{state}"
                       for path, q, _ in fake.state.requests)  # the code was not even used

    # The right state: signed in; the same state again (even with its cookie, with a new code): refused.
    browser = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(browser)
    cookie = browser.cookies["duban_state"]
    r = back_from_wecom(browser, back, state, "li", fake)
    assert r.status_code == 303, r.text
    assert "李四" in browser.get("/web/").text
    replay = httpx.Client(base_url=server.base, timeout=10, cookies={"duban_state": cookie})
    resp = back_from_wecom(replay, back, state, "li", fake)
    assert resp.status_code == 403 and "重新登录" in resp.text and signed_out(replay)

    # A state older than ten minutes is refused.
    late = httpx.Client(base_url=server.base, timeout=10)
    back, state = to_wecom(late)
    app.clock.set(app.clock.now() + timedelta(minutes=11))
    resp = back_from_wecom(late, back, state, "li", fake)
    assert resp.status_code == 403 and signed_out(late)


def test_a_wecom_user_not_on_the_roster_gets_no_session(site, fake):
    app, server = site
    ghost = httpx.Client(base_url=server.base, timeout=10)
    resp = back_from_wecom(ghost, *to_wecom(ghost), "ghost", fake)
    assert resp.status_code == 403 and "ghost 不在花名册" in resp.text
    assert signed_out(ghost)
    with Session(app.engine) as s:
        assert not s.exec(select(WebSession)).all()


def test_logout_ends_the_session_everywhere_and_needs_its_csrf_token(site, fake):
    app, server = site
    client = signed_in(server, fake, "admin")
    copy = httpx.Client(base_url=server.base, timeout=10, cookies={"duban_session": client.cookies["duban_session"]})
    for path in ("/web/", "/web/unit/1", "/web/me", "/web/admin"):
        page = client.get(path).text
        assert 'action="/web/logout"' in page and "退出登录" in page, path
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/web/").text).group(1)
    assert client.post("/web/logout", data={"csrf": "guess"}).status_code == 403
    assert copy.get("/web/admin").status_code == 200  # a forged logout ends nothing

    resp = client.post("/web/logout", data={"csrf": csrf})
    assert resp.status_code == 200 and "已退出登录" in resp.text
    assert signed_out(client) and signed_out(copy)  # the copied cookie stops working too
    assert copy.post("/web/admin/outbox/retry", data={"csrf": csrf, "all": "1"}).status_code == 303
    with Session(app.engine) as s:
        assert not s.exec(select(WebSession)).all()


def test_a_role_or_unit_change_or_leaving_the_roster_ends_that_persons_sessions(site, fake, tmp_path):
    app, server = site
    zhao = [signed_in(server, fake, "zhao") for _ in range(2)]  # a phone and a desktop
    li, zhang, vp = (signed_in(server, fake, u) for u in ("li", "zhang", "sun"))
    # The roster again: 赵六 now 负责人 of 信息工程系, 张三 moved to 图书馆 (T2 to 李四); 李四 unchanged.
    path = workbook(tmp_path / "roster.xlsx", 单位=[["机电工程系", "系（部、院）", "", "chat-jd", ""],
                                                  ["信息工程系", "系（部、院）", "", "", "key-xx"],
                                                  ["图书馆", "馆", "", "chat-lib", ""]],
                    人员=[["zhao", "赵六", "信息工程系", "负责人"], ["zhang", "张三", "图书馆", "负责人"],
                        ["li", "李四", "机电工程系", "成员"]],
                    任务清单=[["T2", "机电工程系", "深学争优", "开展党的二十大精神专题学习", "", "li", "2026-03-01",
                           "2026-06-30"]], 问题清单=[])
    assert not run_import(app, path).errors
    assert all(signed_out(c) for c in zhao) and signed_out(zhang)
    assert li.get("/web/").status_code == 200 and vp.get("/web/").status_code == 200
    with Session(app.engine) as s:
        assert {w.userid for w in s.exec(select(WebSession))} == {"li", "sun"}

    # Any other way the roster changes (here: the database itself) counts as much.
    with app.session() as s:
        s.get(Member, "li").role = "管理员"
        s.exec(delete(LeaderUnit).where(LeaderUnit.userid == "sun"))
        s.delete(s.get(Member, "sun"))
    assert signed_out(li) and signed_out(vp)
    resp = back_from_wecom(vp, *to_wecom(vp), "sun", fake)
    assert resp.status_code == 403 and "不在花名册" in resp.text


def test_a_one_time_link_still_signs_in_once(site):
    from bot.web.auth import make_link

    app, server = site
    path = make_link(app, "li").split("/web/", 1)[1]
    client = httpx.Client(base_url=server.base, timeout=10)
    assert client.get(f"/web/{path}").status_code == 303 and "李四" in client.get("/web/").text
    assert httpx.get(f"{server.base}/web/{path}", timeout=10).status_code == 403
