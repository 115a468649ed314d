"""What the pages say, read as an office would (over real HTTP): the outbox by name, names not
accounts, 超期 problems, the whole 督办 timeline, the running month marked 截至, no emoji, the
workbooks downloadable from 管理."""
from __future__ import annotations

import io
import re
import unicodedata

import pytest
from openpyxl import load_workbook

from conftest import add_overseer, at
from db.models import Member, Outbox
from test_web import clock, fill, signed_in, site  # noqa: F401 (clock, site: fixtures)


@pytest.fixture
def college(site):
    """test_web's site (the fixed clock on 04-10) with fill()'s reports, a broadcast group."""
    app, server = site
    app.config.broadcast.chat_id = "chat-all"
    return app, server, fill(app)


def section(page: str, name: str) -> str:
    return page.split(f'id="{name}"', 1)[1].split("</section>", 1)[0]


def test_the_outbox_names_whom_a_message_goes_to_with_its_first_line_and_error_in_words(college, fake):
    app, server, _ = college
    rows = [("push:li:c0e8d4aa", "app", "li|zhang", "markdown", '{"content": "**本月汇报提醒**\\n请于25日前汇报"}',
             "failed", "errcode 81013: user & party & tag all invalid"),
            ("job:monthly_ranking:2026-03:unit:2", "appchat", "chat-jd", "text", '{"content": "\\n机电工程系 3月排名"}',
             "failed", "HTTP 502"),
            ("job:monthly_ranking:2026-03:all", "appchat", "chat-all", "markdown", '{"content": "# 3月排名通报"}',
             "pending", ""),
            ("push:xx:1", "webhook", "key-xx", "file", '{"kind": "month"}', "pending", "")]
    with app.session() as s:
        for key, channel, target, msgtype, payload, status, error in rows:
            s.add(Outbox(key=key, channel=channel, target=target, msgtype=msgtype, payload=payload, status=status,
                         last_error=error, attempts=3, filename="争先督办-2026-03.xlsx" if msgtype == "file" else "",
                         created_at=at(2026, 4, 10, 9)))
    page = signed_in(server, fake, "admin").get("/web/admin").text
    outbox = section(page, "outbox")
    assert "push:" not in outbox and "job:" not in outbox and "c0e8d4" not in outbox  # no internal keys
    assert "<b>李四、张三</b>" in outbox and "本月汇报提醒" in outbox and "**" not in outbox
    assert "收件人均无效或不在应用可见范围（错误码 81013）" in outbox
    assert "<b>机电工程系群</b>" in outbox and "机电工程系 3月排名" in outbox
    assert "企业微信服务器暂时出错（HTTP 502）" in outbox
    assert "<b>通报群</b>" in outbox and "3月排名通报" in outbox and "# 3月" not in outbox
    assert "<b>信息工程系群</b>" in outbox and "争先督办-2026-03.xlsx" in outbox


def test_timelines_show_names_and_the_whole_supervision_story(college, fake):
    """A note by someone named nowhere else on the page (陈静, chenjing) shows her name; the 督办's
    退回 and 办结 with their opinions; an overdue problem marked 超期 next to its 期限."""
    app, server, ids = college
    with app.session() as s:
        s.add(Member(userid="chenjing", name="陈静", unit_id=ids["机电工程系"], role="成员"))
    app.handle_message("li", "问题 实训室漏水 时限=2026-04-05")
    app.handle_message("chenjing", "整改 P2 台账更新到位")
    app.handle_message("li", "问题 网络慢 时限=2026-05-30")
    app.handle_message("admin", "督办 机电工程系 2026-04-20 报送验收方案")
    for userid, text in (("zhang", "签收 D2"), ("zhang", "反馈 D2 已报送"), ("admin", "退回 D2 缺少预算表"),
                         ("zhang", "反馈 D2 已补预算表"), ("admin", "办结 D2 材料齐全，同意办结")):
        assert "D2" in app.handle_message(userid, text), text
    page = signed_in(server, fake, "zhang").get(f"/web/unit/{ids['机电工程系']}").text
    problems = section(page, "problems")
    assert "陈静：台账更新到位" in problems and "chenjing" not in problems
    leak = re.search(r'data-code="P2".*?</tr>', problems, re.S).group(0)
    assert "2026-04-05" in leak and '<b class="late">超期</b>' in leak and 'class="wide"' not in leak
    assert "超期" not in re.search(r'data-code="P3".*?</tr>', problems, re.S).group(0)
    item = re.search(r'data-code="D2".*?</tr>', section(page, "items"), re.S).group(0)
    steps = re.findall(r'<li class="step step-(\S+)">(.*?)</li>', item, re.S)
    assert [kind for kind, _ in steps] == ["签收", "反馈", "退回", "反馈", "办结"]
    assert "王管理 <b>退回</b>：缺少预算表" in steps[2][1] and "王管理 <b>办结</b>：材料齐全，同意办结" in steps[4][1]
    assert "张三 <b>签收</b>" in steps[0][1]


def test_the_running_month_is_marked_and_drawn_apart(college, fake):
    app, server, _ = college
    trend = section(signed_in(server, fake, "li").get("/web/").text, "trend")
    assert ">截至10日</text>" in trend and "本月截至10日，尚未结束" in trend
    running = re.findall(r'<circle class="running"[^>]*>', trend)
    assert len(running) == 2 and all('fill="#fff"' in c for c in running)  # hollow: score and report rate
    assert 'stroke-dasharray="4 3"' in trend
    finished = re.findall(r'<circle cx="[\d.]+" cy="[\d.]+" r="3"', trend)
    assert finished and len(re.findall(r'<text [^>]*>4月</text>', trend)) == 1


@pytest.mark.parametrize("userid", ["admin", "vp"])
def test_an_admin_or_leader_in_charge_opens_with_the_organisation(college, fake, userid):
    app, server, _ = college
    add_overseer(app)
    summary = section(signed_in(server, fake, userid).get("/web/").text, "summary")
    assert 'class="org"' in summary and "参评单位" in summary and "党政办公室" not in summary
    assert "不参评" not in summary
    member = section(signed_in(server, fake, "li").get("/web/").text, "summary")
    assert "机电工程系" in member and "参评单位" not in member  # a member still opens with their unit


def _emoji(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) == "So" and ord(ch) > 0x2500 or ch == "\ufe0f"]


def test_no_page_needs_an_emoji_font(college, fake):
    app, server, ids = college
    client = signed_in(server, fake, "li")
    page = client.get("/web/me").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    shown = client.post("/web/me/report", data={"csrf": csrf, "nonce": nonce, "task": "T1", "percent": "70",
                                                "text": "主体完工"}, follow_redirects=True).text
    assert "已收到 T1 汇报" in shown and '<i class="mk mk-ok"></i>' in shown  # the chat's ✅, drawn by CSS
    admin = signed_in(server, fake, "admin")
    for who, url in ((client, "/web/"), (client, "/web/me"), (client, f"/web/unit/{ids['机电工程系']}"),
                     (admin, "/web/"), (admin, "/web/admin"), (admin, f"/web/unit/{ids['信息工程系']}")):
        assert _emoji(who.get(url).text) == [], url
    assert _emoji(shown) == []


def test_an_admin_downloads_the_month_and_year_workbooks_from_the_admin_page(college, fake):
    app, server, _ = college
    admin = signed_in(server, fake, "admin")
    links = re.findall(r'href="(/web/admin/export\?[^"]+)"', section(admin.get("/web/admin").text, "exports"))
    assert links == ["/web/admin/export?month=2026-04", "/web/admin/export?month=2026-03",
                     "/web/admin/export?year=2026"]
    month = admin.get(links[1])
    assert month.status_code == 200 and "2026-03.xlsx" in month.headers["content-disposition"]
    assert load_workbook(io.BytesIO(month.content)).sheetnames[0] == "2026-03排名"
    year = admin.get(links[2])
    assert load_workbook(io.BytesIO(year.content)).sheetnames[0] == "2026年度考核"
    assert admin.get("/web/admin/export?month=13月").status_code == 400
    member = signed_in(server, fake, "li")
    assert member.get(links[1]).status_code == 404


def test_someone_with_nothing_to_report_gets_no_empty_form(college, fake):
    app, server, _ = college
    mine = section(signed_in(server, fake, "admin").get("/web/me").text, "report")  # 党政办公室 has no task
    assert "暂无在办任务" in mine and "<form" not in mine
    assert "<form" in section(signed_in(server, fake, "li").get("/web/me").text, "report")
