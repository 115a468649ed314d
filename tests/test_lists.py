"""A unit's lists from its own 负责人 (issue 23, point 1): `清单` sends the unit's workbook as a file
(media/upload, then a file message, through the fake WeCom), the 负责人 sends it back as a file message
over WeCom's real (encrypted) callback, it is fetched after the message was answered (media/get),
checked as `duban import` checks for that unit alone and kept as a submission waiting for review;
an admin sees the difference, 退回 with an opinion or 通过 (the lists change at once). On SQLite and
PostgreSQL."""
from __future__ import annotations

import io
import json
import re

import httpx

import pytest
from openpyxl import load_workbook
from sqlmodel import Session, select

from bot.app import Application
from bot.evidence import Fetcher
from bot.excel.lists import unit_workbook
from bot.wecom.api import WeComTransport
from bot.wecom.callback import build_asgi
from bot.wecom.sender import OutboxWorker
from conftest import ServerThread, at, content, make_config, outbox, seed
from db.models import Attachment, ListSubmission, Task, Unit
from jobs import JobQueue
from test_evidence import bot  # noqa: F401  (the bot on WeCom's callback, a fetcher, [storage] max_mb 0.1)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"




def deliver(app) -> None:
    """Send what waits in the outbox through the fake WeCom (files are made and uploaded at send time)."""
    from bot.excel.export import generate

    worker = OutboxWorker(app.engine, WeComTransport(app.config.wecom), app.clock, app.config.sender,
                          file_source=lambda s, row: generate(s, app.config, json.loads(row.payload)),
                          tz=app.config.schedule.tz)
    worker.drain(10)
    worker.stop()


def received_workbook(fake, name: str):
    """The workbook the fake WeCom got as a file message: uploaded (media/upload), then sent."""
    (msg,) = [d for d in fake.deliveries("message/send") if d.body["msgtype"] == "file"
              and fake.state.uploads[d.body["file"]["media_id"]][0] == name]
    assert fake.state.upload_types[msg.body["file"]["media_id"]] == "file"
    return msg.target, load_workbook(io.BytesIO(fake.state.uploads[msg.body["file"]["media_id"]][1]))


def as_bytes(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def replies(app, userid: str) -> list[str]:
    """What was pushed to `userid` about lists (after the fetch, or a review), in order."""
    return [content(r) for r in outbox(app, "lists") if r.target == userid and r.msgtype == "text"]


def tasks(app) -> dict[str, tuple[str, str]]:
    with Session(app.engine) as s:
        return {t.code: (t.content, t.owner_userid) for t in s.exec(select(Task))}


def submissions(app) -> list[tuple[str, str]]:
    with Session(app.engine) as s:
        return [(x.status, x.opinion) for x in s.exec(select(ListSubmission).order_by(ListSubmission.id))]


def send_back_file(app, wecom, fetcher, fake, data: bytes, media_id: str) -> str:
    fake.add_media(media_id, data, content_type=XLSX, filename="机电工程系-三张清单.xlsx")
    answer = wecom.send_file("zhang", media_id)
    fetcher.run_once()
    return answer


def edited(wb):
    """The 负责人's edits: T1 changed, T2 deleted, one new task (编号 left blank)."""
    ws = wb["任务清单"]
    rows = {r[0].value: r for r in ws.iter_rows(min_row=2)}
    rows["T1"][3].value = "建成智能制造实训中心并通过省级验收"
    ws.delete_rows(rows["T2"][0].row)
    ws.append(["", "", "实干争效", "开设工业机器人微专业", "李副校长", "zhang", "3月1日", "2026年12月31日"])
    return wb


def test_a_unit_sends_its_lists_an_admin_returns_then_approves_them(bot, fake):
    app, wecom, fetcher = bot
    answer = wecom.say("zhang", "清单")
    assert "机电工程系-三张清单.xlsx" in answer and "当前状态：未提交" in answer
    deliver(app)
    target, wb = received_workbook(fake, "机电工程系-三张清单.xlsx")
    assert target == "user:zhang"
    assert wb.sheetnames == ["任务清单", "问题清单"]  # the unit's own lists, its rows only
    ws = wb["任务清单"]
    assert [c.value for c in ws[1]] == ["编号", "单位名称", "行动", "任务内容", "责任领导", "责任人账号", "开始日期", "完成时限"]
    assert [r[0] for r in ws.iter_rows(min_row=2, values_only=True)] == ["T1", "T2"]
    assert any("敢为争先" in dv.formula1 for dv in ws.data_validations.dataValidation)  # the template's drop-down
    assert "留空" in ws["A1"].comment.text

    good = as_bytes(edited(wb))
    assert "将作为机电工程系的清单检查" in send_back_file(app, wecom, fetcher, fake, good, "f-1")
    (answer,) = replies(app, "zhang")
    assert "已收到机电工程系的清单，等待党政办公室审核" in answer
    assert "任务清单：新增 1，修改 1，删除 1，未变 0" in answer
    (notice,) = replies(app, "admin")
    assert "机电工程系 张三报送了清单" in notice and "通过 机电工程系" in notice
    assert tasks(app)["T2"] == ("开展党的二十大精神专题学习", "zhang")  # nothing changes before review

    # a row for another unit, and a 责任人 of another unit: refused with sheet and row, nothing kept
    other = load_workbook(io.BytesIO(good))
    other["任务清单"].append(["", "信息工程系", "实干争效", "代报他单位任务", "", "", "2026-03-01", "2026-06-30"])
    other["任务清单"].append(["", "机电工程系", "实干争效", "责任人是他单位的", "", "zhao", "2026-03-01", "2026-06-30"])
    send_back_file(app, wecom, fetcher, fake, as_bytes(other), "f-2")
    refused = replies(app, "zhang")[-1]
    assert "有 2 处错误，未保存" in refused
    assert "【任务清单】第4行：单位名称“信息工程系”不是本单位（机电工程系）" in refused
    assert "【任务清单】第5行：责任人账号“zhao”属于“信息工程系”" in refused
    assert submissions(app) == [("待审核", "")]

    # the admin sees every unit's state, then the difference row by row, and sends it back with an opinion
    states = wecom.say("admin", "清单")
    assert "· 机电工程系：待审核" in states and "· 信息工程系：未提交" in states
    assert "仅限" in wecom.say("li", "清单")  # a 成员 does not send the unit's lists
    review = wecom.say("admin", "清单 机电工程系")
    assert "当前状态：待审核" in review
    assert "修改 T1：任务内容 “建成智能制造实训中心”→“建成智能制造实训中心并通过省级验收”" in review
    assert "删除 T2：开展党的二十大精神专题学习" in review
    assert ("新增：行动 实干争效；任务内容 开设工业机器人微专业；责任领导 李副校长；责任人 zhang；开始日期 2026-03-01；"
            "完成时限 2026-12-31") in review
    assert "已退回机电工程系的清单" in wecom.say("admin", "退回 机电工程系 新增任务请写明验收标准")
    assert "被退回，意见：新增任务请写明验收标准" in replies(app, "zhang")[-1]
    assert submissions(app) == [("已退回", "新增任务请写明验收标准")]
    assert "没有找到督办单“D99”" in wecom.say("admin", "退回 D99 不存在")  # 退回 of a 督办 code is still the 督办 one

    # the 负责人 sends it again; the admin approves: the lists change at once
    send_back_file(app, wecom, fetcher, fake, good, "f-3")
    assert "新增 1，修改 1，删除 1" in replies(app, "zhang")[-1]
    approved = wecom.say("admin", "通过 机电工程系")
    assert "机电工程系的清单已通过并生效：新增 1（T6），修改 1（T1），删除 1（T2）" in approved
    after = tasks(app)
    assert after["T1"][0] == "建成智能制造实训中心并通过省级验收" and "T2" not in after
    assert after["T6"] == ("开设工业机器人微专业", "zhang")
    assert "已审核通过并生效" in replies(app, "zhang")[-1]
    assert submissions(app) == [("已退回", "新增任务请写明验收标准"), ("已通过", "")]
    assert "没有待审核的清单（当前：已通过）" in wecom.say("admin", "通过 机电工程系")


def test_a_file_too_large_or_not_a_workbook_is_refused_in_one_line(bot, fake):
    app, wecom, fetcher = bot
    send_back_file(app, wecom, fetcher, fake, b"PK\x03\x04" + b"x" * 200_000, "big")
    fake.add_media("pdf", b"%PDF-1.4\n" + b"0" * 100, content_type="application/pdf", filename="清单.pdf")
    wecom.send_file("zhang", "pdf")
    fetcher.run_once()
    assert replies(app, "zhang") == ["⚠️ 清单文件超过 0.1 MB 的上限，未保存。",
                                     "⚠️ 清单文件不是 Excel 工作簿（.xlsx），未保存：请发送“清单”收到的文件。"]
    assert submissions(app) == []
    root = app.config.storage.path(app.config.database.url)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))
    with Session(app.engine) as s:
        assert {a.status for a in s.exec(select(Attachment))} == {"rejected"}


def test_a_reported_task_left_out_is_named_not_dropped(bot, fake):
    app, wecom, fetcher = bot
    assert "已收到" in wecom.say("li", "汇报 T1 30% 完成方案")
    wecom.say("zhang", "清单")
    deliver(app)
    _, wb = received_workbook(fake, "机电工程系-三张清单.xlsx")
    ws = wb["任务清单"]
    ws.delete_rows(2)  # T1, which li reported on
    send_back_file(app, wecom, fetcher, fake, as_bytes(wb), "f-1")
    assert "【任务清单】缺少 T1：该任务已有汇报，不能删除" in replies(app, "zhang")[-1]
    assert submissions(app) == [] and "T1" in tasks(app)


def unit_ids(app) -> dict[str, int]:
    with Session(app.engine) as s:
        return {u.name: u.id for u in s.exec(select(Unit))}


def own_workbook(app, name: str):
    with Session(app.engine) as s:
        return load_workbook(io.BytesIO(unit_workbook(s, unit_ids(app)[name])))


def signed_in(wecom_base: str, fake, userid: str) -> httpx.Client:
    """A browser signed in as `userid` through WeCom's sign-in (test_web's steps)."""
    from test_web import back_from_wecom, to_wecom

    client = httpx.Client(base_url=wecom_base, timeout=10)
    back, state = to_wecom(client)
    assert back_from_wecom(client, back, state, userid, fake).status_code == 303
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_the_unit_page_takes_an_upload_shows_the_history_and_admins_review_it(bot, fake):
    """issue 23 points 1 and 3: uploaded on the unit's page, reviewed on 管理, its history on the page."""
    app, wecom, _ = bot
    base, jd = app.config.web.base_url, unit_ids(app)["机电工程系"]
    member = signed_in(base, fake, "li")
    assert "上传清单" not in member.get(f"/web/unit/{jd}").text  # a 成员 sees the lists, does not send them
    page = member.get("/web/me").text  # a form of theirs, for a valid CSRF token
    assert member.post(f"/web/unit/{jd}/lists", data={"csrf": csrf_of(page)},
                       files={"file": ("x.xlsx", b"junk")}).status_code == 404

    leader = signed_in(base, fake, "zhang")
    page = leader.get(f"/web/unit/{jd}").text
    assert "三张清单报送" in page and "尚未报送" in page and "上传清单" in page
    bad = leader.post(f"/web/unit/{jd}/lists", data={"csrf": csrf_of(page)},
                      files={"file": ("清单.xlsx", b"%PDF-1.4 not a workbook")}, follow_redirects=True)
    assert "不是 Excel 工作簿" in bad.text and submissions(app) == []
    good = leader.post(f"/web/unit/{jd}/lists", data={"csrf": csrf_of(page)},
                       files={"file": ("清单.xlsx", as_bytes(edited(own_workbook(app, "机电工程系"))), XLSX)},
                       follow_redirects=True)
    assert "已收到机电工程系的清单，等待党政办公室审核" in good.text
    assert re.search(r"张三 <span class=\"muted\">（网页）</span></td><td class=\"wide\">[^<]+</td>\s*"
                     r"<td>任务 新增1 修改1 删除1<br>问题 新增0 修改0 删除0</td>\s*<td>待审核", good.text)
    assert "机电工程系 张三报送了清单" in replies(app, "admin")[-1]

    admin = signed_in(base, fake, "admin")
    review = admin.get("/web/admin").text
    assert "清单审核" in review and "<del>建成智能制造实训中心</del> → 建成智能制造实训中心并通过省级验收" in review
    assert "开展党的二十大精神专题学习" in review  # the deleted T2
    done = admin.post("/web/admin/lists", data={"csrf": csrf_of(review), "unit": "机电工程系", "action": "return",
                                                 "opinion": "请写明验收标准"}, follow_redirects=True)
    assert "已退回机电工程系的清单" in done.text
    history = leader.get(f"/web/unit/{jd}").text
    assert re.search(r"<td>已退回</td><td>王管理 [^<]+</td><td>请写明验收标准</td>", history)
    overview = admin.get("/web/").text
    assert re.search(r"机电工程系</a></td><td>已退回</td>", overview)
    assert re.search(r"信息工程系</a></td><td>未提交</td>", overview)


def test_deploy_check_asks_each_unit_for_its_lists_through_qingdan(bot, fake, clock):
    """February's deploy_check: each unit's state this year, how to send its lists (清单); admins the table.
    A new year asks again."""
    app, wecom, fetcher = bot
    clock.set(at(2026, 2, 10, 9))
    send_back_file(app, wecom, fetcher, fake, as_bytes(own_workbook(app, "机电工程系")), "jd")
    wecom.say("admin", "通过 机电工程系")
    fake.add_media("lib", as_bytes(own_workbook(app, "图书馆")), content_type=XLSX)
    wecom.send_file("sun", "lib")
    fetcher.run_once()
    wecom.say("admin", "退回 图书馆 请补充问题清单")
    q = JobQueue(app)
    clock.set(at(2026, 2, 14, 9))
    q.run("deploy_check", at(2026, 2, 20, 9))
    texts = {r.target: content(r) for r in outbox(app, "job:deploy_check:2026-02-20")}
    assert "本单位清单：<font color=\"warning\">未提交</font>" in texts["key-xx"]
    assert "请负责人向本应用发送“清单”" in texts["key-xx"]
    assert "已退回</font>（02-10 09:00 退回，意见：请补充问题清单）" in texts["chat-lib"]
    assert {"· 机电工程系：已通过", "· 信息工程系：未提交", "· 图书馆：已退回"} <= set(texts["admin"].splitlines())

    clock.set(at(2027, 2, 10, 9))
    q.run("deploy_check", at(2027, 2, 20, 9))
    (admin,) = [content(r) for r in outbox(app, "job:deploy_check:2027") if r.target == "admin"]
    assert "· 机电工程系：未提交" in admin  # last year's lists do not count for this one


def test_approving_lists_whose_rows_changed_meanwhile_is_refused_whole(bot, fake):
    """A task the lists delete was reported on after they were sent: 通过 applies nothing, and says why."""
    app, wecom, fetcher = bot
    send_back_file(app, wecom, fetcher, fake, as_bytes(edited(own_workbook(app, "机电工程系"))), "f-1")
    assert "已收到" in wecom.say("zhang", "汇报 T2 40% 完成两次专题学习")
    refused = wecom.say("admin", "通过 机电工程系")
    assert "机电工程系报送后，T2 已有变动" in refused and "本次未做任何操作" in refused
    assert tasks(app)["T1"][0] == "建成智能制造实训中心" and "T2" in tasks(app) and "T6" not in tasks(app)
    assert submissions(app) == [("待审核", "")]
