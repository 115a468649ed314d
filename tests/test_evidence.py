"""Evidence (issue 15, point 3): a picture sent to the app over WeCom's real (encrypted) callback is
attached to the sender's 汇报 / 整改 / 反馈 of the last ten minutes, or to the code named with 附件;
it is fetched from the fake WeCom's media/get after the message was answered, checked for size and
type by its content, stored by its SHA-256, or refused with a word to the sender. On SQLite and
PostgreSQL."""
from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import httpx
import pytest
from PIL import Image
from sqlmodel import Session, select

from bot.app import Application
from bot.evidence import Fetcher
from bot.wecom.api import WeComTransport
from bot.wecom.callback import build_asgi
from conftest import ServerThread, at, make_config, seed
from db.models import Attachment, Outbox, Report
from wecom_client import WeComSide


def jpeg(colour: str = "red", size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def bot(db_url, clock, fake, tmp_path):
    app = Application(make_config(db_url, api_base=fake.base, storage={"dir": str(tmp_path / "files"), "max_mb": 0.1}),
                      clock=clock)
    app.migrate()
    seed(app)
    with ServerThread(build_asgi(app)) as server:
        app.config.web.base_url = server.base
        yield app, WeComSide(server.base, clock=clock), Fetcher(app, WeComTransport(app.config.wecom))
    app.engine.dispose()


def attachments(app) -> list[Attachment]:
    with Session(app.engine) as s:
        return list(s.exec(select(Attachment).order_by(Attachment.id)))


def pushes(app) -> list[str]:
    """What the bot said to people afterwards about their pictures."""
    with Session(app.engine) as s:
        return [json.loads(r.payload)["content"] for r in s.exec(select(Outbox).order_by(Outbox.id))
                if ":attach" in r.key]


def stored_files(app) -> list:
    root = app.config.storage.path(app.config.database.url)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def media_requests(fake) -> int:
    return sum(path == "media/get" for path, _, _ in fake.state.requests)


def test_a_picture_after_a_report_is_attached_fetched_and_stored_by_hash(bot, fake, clock):
    app, wecom, fetcher = bot
    photo = jpeg()
    fake.add_media("m-1", photo, filename="../../现场照片.jpg")
    fake.add_media("m-2", photo, filename="again.jpg")  # the same bytes sent again
    assert "已收到" in wecom.say("li", "汇报 T1 60% 完成主体验收")
    clock.set(at(2026, 3, 20, 10, 9))
    reply = wecom.send_image("li", "m-1", msg_id="8801")
    assert "已收到图片，作为 T1 汇报的佐证材料保存" in reply
    (att,) = attachments(app)
    assert (att.code, att.status, att.media_id, att.userid) == ("T1", "pending", "m-1", "li")
    assert media_requests(fake) == 0  # answered first; fetched afterwards

    assert fetcher.run_once() == 1
    (att,) = attachments(app)
    import hashlib
    sha = hashlib.sha256(photo).hexdigest()
    assert (att.status, att.sha256, att.ext, att.size, att.name) == ("stored", sha, "jpg", len(photo), "现场照片.jpg")
    (path,) = stored_files(app)
    assert path.name == f"{sha}.jpg" and path.read_bytes() == photo  # named by content, never by the sender

    assert wecom.send_image("li", "m-1", msg_id="8801") == reply  # WeCom's retry: the same answer, once
    wecom.send_image("li", "m-2")
    fetcher.run_once()
    assert [a.status for a in attachments(app)] == ["stored", "stored"]
    assert len(stored_files(app)) == 1  # the same bytes are one file
    assert "佐证材料：2 个" in wecom.say("li", "任务 T1")
    assert pushes(app) == []  # nothing more to tell when all went well

    # the unit's page lists them (the sender's file name escaped, shown only)
    from bot.web.auth import make_link

    web = httpx.Client(base_url=wecom.url.split("/wecom")[0], timeout=10)
    assert web.get("/web/login?" + make_link(app, "li").split("?", 1)[1]).status_code == 303
    with Session(app.engine) as s:
        unit_id = s.exec(select(Report)).one().unit_id
    page = web.get(f"/web/unit/{unit_id}").text
    evidence = page[page.index('id="evidence"'):]
    assert evidence.count("已保存") == 2 and "现场照片.jpg" in evidence and "T1" in evidence


def test_attach_names_the_code_first_and_pictures_follow_rectify_and_feedback(bot, fake, clock):
    app, wecom, fetcher = bot
    for n in range(4):
        fake.add_media(f"m-{n}", jpeg(["red", "green", "blue", "white"][n]))
    assert "请在 10 分钟内发送图片，将作为 T3 的佐证材料保存" in wecom.say("zhao", "附件 t3")
    assert "作为 T3 的佐证材料保存" in wecom.send_image("zhao", "m-0")
    wecom.say("li", "问题 实训室通道堆放杂物")
    wecom.say("li", "整改 P1 已清理通道")
    assert "作为 P1 整改的佐证材料保存" in wecom.send_image("li", "m-1")
    wecom.say("admin", "督办 机电工程系 3月28日 报送进度")
    wecom.say("li", "反馈 D1 已报送")
    assert "作为督办单 D1 反馈的佐证材料保存" in wecom.send_image("li", "m-2")
    clock.set(at(2026, 3, 20, 10, 5))
    assert "将作为 P1 的佐证材料保存" in wecom.say("li", "附件 P1")
    assert "作为 P1 的佐证材料保存" in wecom.send_image("li", "m-3")  # 附件, said last, wins over the 反馈
    fetcher.run_once()
    assert [(a.code, a.status) for a in attachments(app)] == [("T3", "stored"), ("P1", "stored"),
                                                               ("D1", "stored"), ("P1", "stored")]
    # someone else's task is refused, and nothing is noted
    assert "不属于您所在单位" in wecom.say("li", "附件 T3")
    assert "不是可附材料的编号" in wecom.say("li", "附件 X9")


def test_a_picture_with_no_recent_report_is_explained_and_held_for_attach(bot, fake, clock):
    app, wecom, fetcher = bot
    fake.add_media("m-1", jpeg())
    fake.add_media("m-2", jpeg("blue"))
    wecom.say("li", "汇报 T1 60% 完成主体验收")
    clock.set(at(2026, 3, 20, 10, 11))  # the report is eleven minutes old
    reply = wecom.send_image("li", "m-1")
    assert "近 10 分钟内没有汇报、整改、反馈或亮点" in reply and "未保存" in reply and "附件 T3" in reply
    assert [(a.code, a.status) for a in attachments(app)] == [("", "held")]
    assert fetcher.run_once() == 0 and media_requests(fake) == 0  # a held picture is not fetched
    clock.set(at(2026, 3, 20, 10, 15))
    assert "已将您刚发送的 1 个附件归入 T1" in wecom.say("li", "附件 T1")
    fetcher.run_once()
    assert [(a.code, a.status) for a in attachments(app)] == [("T1", "stored")]

    clock.set(at(2026, 3, 20, 11, 0))
    wecom.send_image("li", "m-2")  # nothing in the last ten minutes again
    clock.set(at(2026, 3, 20, 11, 11))
    assert "好的，请在 10 分钟内发送图片" in wecom.say("li", "附件 T1")  # too late for the held one
    assert [a.status for a in attachments(app)] == ["stored", "held"]
    from jobs import JobQueue
    clock.set(at(2026, 3, 22, 12))
    JobQueue(app).prune()  # a held picture nobody claimed is forgotten
    assert [a.status for a in attachments(app)] == ["stored"]


def test_an_oversized_file_is_refused_unread_and_the_sender_told(bot, fake):
    app, wecom, fetcher = bot
    fake.add_media("big", b"\xff\xd8\xff\xe0" + bytes(200 * 1024))  # max_mb = 0.1 in this suite
    wecom.say("li", "汇报 T1 60% 完成主体验收")
    wecom.send_image("li", "big")
    fetcher.run_once()
    (att,) = attachments(app)
    assert (att.status, att.error, att.sha256) == ("rejected", "too_large", "")
    (text,) = pushes(app)
    assert "未能作为 T1 的佐证材料保存" in text and "超过 0.1 MB" in text and "附件 T1" in text
    assert stored_files(app) == []
    with Session(app.engine) as s:
        assert s.exec(select(Report)).one().percent == 60  # the report stands


@pytest.mark.parametrize("data, found", [(b"MZ\x90\x00" + bytes(300), "exe"), (b"just some text, not a photo", "")],
                         ids=["exe", "text named .jpg"])
def test_a_file_of_the_wrong_type_is_refused_by_its_content(bot, fake, data, found):
    app, wecom, fetcher = bot
    fake.add_media("bad", data, content_type="image/jpeg", filename="photo.jpg")  # name and header lie
    wecom.say("zhao", "汇报 T3 50% 服务大厅试运行")
    wecom.send_image("zhao", "bad")
    fetcher.run_once()
    (att,) = attachments(app)
    assert (att.status, att.error) == ("rejected", "bad_type")
    (text,) = pushes(app)
    assert "类型不符" in text and "jpg、png、gif、webp、pdf" in text
    assert (f"实际为 {found}" in text) == bool(found)
    assert stored_files(app) == []


def test_a_failed_download_is_retried_and_a_lost_one_told(bot, fake, clock):
    app, wecom, fetcher = bot
    photo = jpeg()
    fake.add_media("m-1", photo)
    fake.fail("media/get", http=500)
    wecom.say("li", "汇报 T1 60% 完成主体验收")
    wecom.send_image("li", "m-1")
    fetcher.run_once()
    (att,) = attachments(app)
    assert (att.status, att.attempts, att.error) == ("pending", 1, "HTTP 500")
    assert att.next_attempt_at > clock.now() and pushes(app) == []
    assert fetcher.run_once() == 0  # not before its backoff has passed
    clock.set(clock.now() + timedelta(seconds=5))
    fetcher.run_once()
    (att,) = attachments(app)
    assert (att.status, att.attempts, att.error) == ("stored", 2, "")
    assert stored_files(app)[0].read_bytes() == photo

    wecom.send_image("li", "m-expired")  # WeCom no longer has it (40007): given up, and said
    fetcher.run_once()
    assert attachments(app)[-1].status == "failed"
    (text,) = pushes(app)
    assert "未能从企业微信取回" in text


def test_serve_s_worker_fetches_and_tells_the_sender_through_wecom(db_url, fake, tmp_path):
    """The fetch step runs in the outbox worker's loop (as in `duban serve`), and a refusal reaches
    the sender as an app message."""
    from bot.cli import _worker
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base, storage={"dir": str(tmp_path / "files")}),
                      clock=SystemClock())
    app.migrate()
    seed(app)
    fake.add_media("ok", jpeg())
    fake.add_media("bad", b"%!PS-Adobe-3.0 not allowed")
    with ServerThread(build_asgi(app)) as server:
        wecom = WeComSide(server.base)
        wecom.say("li", "汇报 T1 60% 完成主体验收")
        wecom.send_image("li", "ok")
        wecom.send_image("li", "bad")
        worker = _worker(app)
        worker.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not fake.deliveries("message/send"):
                time.sleep(0.05)
        finally:
            worker.stop()
    assert [a.status for a in attachments(app)] == ["stored", "rejected"]
    (sent,) = fake.deliveries("message/send")
    assert sent.target == "user:li" and "类型不符" in sent.body["text"]["content"]
    app.engine.dispose()
