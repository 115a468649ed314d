"""The web pages in a real browser: Debian's headless Chromium driven by Playwright signs in
through a fake OAuth code against the fake WeCom, opens each page as each role, submits a report
by the form, and takes screenshots of every page of each role at phone and desktop width (into
DUBAN_SCREENSHOTS, e.g. docs/screens, or the test's temporary folder). Skipped, with the reason,
where there is no browser."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlmodel import select

from bot.wecom.callback import build_asgi
from conftest import ServerThread
from db.models import Report
from showcase import showcase
from test_web import XX_SECRETS, build, fill

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).exists():
    pytest.skip("no browser: Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # nothing but this machine is reached


@pytest.fixture
def clock():
    from bot.clock import FixedClock
    from conftest import at
    return FixedClock(at(2026, 4, 10, 10, 0))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site(tmp_path, clock, fake):
    app = build(f"sqlite:///{tmp_path / 'duban.db'}", clock, fake)
    ids = fill(app)
    with ServerThread(build_asgi(app)) as server:
        app.config.web.base_url = server.base
        yield app, server, ids
    app.engine.dispose()


def open_as(browser, server, fake, userid: str, width: int = 390):
    context = browser.new_context(viewport={"width": width, "height": 844}, locale="zh-CN")
    page = context.new_page()
    code = f"browser-{userid}-{width}"
    fake.oauth_code(code, userid)

    # The home page sends the browser to WeCom's sign-in (not reachable here), which sends it back
    # with a code and the state: the first step through the context's own requests (same cookies).
    to_wecom = context.request.get(f"{server.base}/web/", max_redirects=0)
    q = {k: v[0] for k, v in parse_qs(urlparse(to_wecom.headers["location"]).query).items()}
    page.goto(f"{q['redirect_uri']}?code={code}&state={q['state']}")
    assert page.url == f"{server.base}/web/"
    assert "退出登录" in page.inner_text("header")
    return context, page


@pytest.mark.parametrize("userid, role", [("li", "成员"), ("zhang", "负责人"), ("admin", "管理员")])
def test_each_role_sees_its_pages_and_nothing_else(browser, site, fake, userid, role):
    app, server, ids = site
    context, page = open_as(browser, server, fake, userid)
    admin = role == "管理员"
    assert role in page.inner_text("header")
    assert page.locator("nav >> text=管理").count() == (1 if admin else 0)
    assert page.locator("#preview").count() == (1 if admin else 0)  # this month's 预览 is for admins
    published = page.locator("#published table.ranking tbody tr")
    assert published.count() == 4 and "2026-03 排名" in page.inner_text("#published")
    assert page.locator("#trend svg text", has_text="4月").count() >= 1
    assert "汇报截止" in page.inner_text("#calendar")

    page.click("nav >> text=单位")
    own = "党政办公室" if admin else "机电工程系"
    assert own in page.inner_text("#tasks")
    xx = page.goto(f"{server.base}/web/unit/{ids['信息工程系']}")
    body = page.inner_text("body")
    if admin:
        assert xx.status == 200 and all(secret in body for secret in XX_SECRETS)
        assert page.locator("tr.task[data-code=T3] .light-yellow, tr.task[data-code=T3] .light-green").count() == 1
    else:
        assert xx.status == 404 and "无权查看" in body and not any(secret in body for secret in XX_SECRETS)
    admin_page = page.goto(f"{server.base}/web/admin")
    assert admin_page.status == (200 if admin else 404)
    if admin:
        assert "排名审核" in page.inner_text("#review")
    context.close()


def test_a_member_reports_by_the_form(browser, site, fake):
    app, server, _ = site
    context, page = open_as(browser, server, fake, "li")
    page.click("nav >> text=我的")
    assert "T1" in page.inner_text("#own")
    page.select_option("#task", "T1")
    page.fill("#percent", "60")
    page.fill("#text", "完成实训基地主体验收")
    page.click("text=提交汇报")
    assert "已收到 T1 汇报：进度 60%" in page.inner_text("#stored")  # after the redirect (Post/Redirect/Get)
    assert "60%" in page.inner_text("#mine") and page.input_value("#percent") == "" and page.input_value("#text") == ""
    page.click("text=提交汇报")  # a second press, the form empty: nothing stored
    assert "已收到" not in page.inner_text("body")
    with app.session() as s:
        latest = s.exec(select(Report).order_by(Report.id.desc())).first()
    assert (latest.userid, latest.percent, latest.text) == ("li", 60, "完成实训基地主体验收")
    context.close()


def small(png: Path) -> None:
    """A screenshot in 256 colours (a third of the bytes, the same to the eye), for docs/."""
    from PIL import Image

    with Image.open(png) as img:
        img.convert("RGB").quantize(256).save(png, optimize=True)


ROLES = {"admin": "管理员", "vp": "分管领导", "zhang": "负责人", "li": "成员"}


@pytest.mark.parametrize("userid", list(ROLES))
def test_every_page_fits_a_phone_and_a_desktop_and_is_photographed(browser, tmp_path, clock, fake, userid):
    """Each role's pages (总览, 机电工程系's 单位, 我的, and 管理 for an admin) at 390 px and 1,280 px:
    never wider than the screen (wide tables scroll inside their card); a problem's 期限 and 超期 mark
    are there on a phone. Screenshots go to DUBAN_SCREENSHOTS (docs/screens) or the test's folder."""
    folder = Path(os.environ.get("DUBAN_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    app = build(f"sqlite:///{tmp_path / 'duban.db'}", clock, fake)
    ids = showcase(app)
    pages = {"overview": "/web/", "unit": f"/web/unit/{ids['机电工程系']}", "me": "/web/me"}
    if userid == "admin":
        pages["admin"] = "/web/admin"
    try:
        with ServerThread(build_asgi(app)) as server:
            app.config.web.base_url = server.base
            for width in (390, 1280):
                context, page = open_as(browser, server, fake, userid, width)
                for name, url in pages.items():
                    assert page.goto(server.base + url).status == 200, url
                    assert ROLES[userid] in page.inner_text("header")
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert wide <= width, (url, width, wide)
                    if name == "overview":
                        box = page.locator("#trend svg").bounding_box()
                        assert 0 < box["width"] <= width  # the chart fits the screen
                    if name == "unit":
                        due = page.locator("#problems tr.problem[data-code=P1] td").nth(3)
                        assert due.is_visible() and "2026-04-05" in due.inner_text() and "超期" in due.inner_text()
                    if name == "admin":
                        retry = page.locator("#outbox button", has_text="重试").last
                        box = retry.bounding_box()
                        assert box and box["x"] + box["width"] <= width  # the button is on the screen
                    shot = folder / f"{userid}-{name}-{width}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    small(shot)
                context.close()
    finally:
        app.engine.dispose()
