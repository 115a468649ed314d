"""A college's April as the screenshots and the workbook renders in docs/ show it (no pytest here)."""
from __future__ import annotations

from sqlmodel import select

from conftest import add_overseer, at
from db.models import Outbox, Unit
from jobs import JobQueue


def showcase(app) -> dict[str, int]:
    """A month as the pages show it on 04-10: reports, an overdue problem with notes, a 督办 sent back
    and done, March's ranking in review with an appeal, a failed and a waiting message."""
    add_overseer(app)
    app.config.broadcast.chat_id = "chat-all"
    app.config.ranking.review_hours = 240  # March's ranking in review until 04-11
    steps = [(at(2026, 3, 12, 9), "li", "汇报 T1 30% 完成方案论证"), (at(2026, 3, 14, 9), "zhang", "汇报 T2 40% 完成两次专题学习"),
             (at(2026, 3, 16, 9), "sun", "汇报 T5 50% 自习室延长至22点"),
             (at(2026, 3, 18, 9), "zhao", "汇报 T3 60% 大厅主体上线"),
             (at(2026, 3, 20, 9), "li", "问题 实训室屋顶漏水，影响设备安全 时限=2026-04-05"),
             (at(2026, 3, 22, 9), "zhang", "整改 P1 已联系后勤维修"),
             (at(2026, 3, 25, 9), "admin", "督办 机电工程系,图书馆 2026-04-08 报送实训中心验收方案")]
    for when, userid, text in steps:
        app.clock.set(when)
        app.handle_message(userid, text)
    app.clock.set(at(2026, 4, 1, 10))
    JobQueue(app).run("monthly_ranking", at(2026, 4, 1, 10))
    for when, userid, text in [(at(2026, 4, 1, 11), "wang", "申诉 T4 已于3月14日完成，请核实"),
                               (at(2026, 4, 2, 9), "zhang", "签收 D1"), (at(2026, 4, 3, 9), "zhang", "反馈 D1 已报送方案"),
                               (at(2026, 4, 3, 15), "admin", "退回 D1 缺少预算表"),
                               (at(2026, 4, 7, 9), "zhang", "反馈 D1 已补预算表"),
                               (at(2026, 4, 8, 9), "admin", "办结 D1 材料齐全，同意办结"),
                               (at(2026, 4, 9, 9), "li", "汇报 T1 45% 完成设备招标"),
                               (at(2026, 4, 9, 10), "li", "问题 机房空调噪音大 时限=2026-05-30")]:
        app.clock.set(when)
        app.handle_message(userid, text)
    app.clock.set(at(2026, 4, 10, 10))
    with app.session() as s:
        s.add(Outbox(key="push:li:c0e8d4", channel="app", target="li", msgtype="markdown", status="failed",
                     payload='{"content": "**本月汇报提醒**\\n请于25日前汇报 T1"}', attempts=30,
                     last_error="errcode 81013: user & party & tag all invalid", created_at=at(2026, 4, 9, 9)))
        s.add(Outbox(key="job:x:1", channel="appchat", target="chat-lib", msgtype="text", status="pending",
                     payload='{"content": "图书馆：督办 D1 已办结"}', attempts=2, last_error="HTTP 502",
                     next_attempt_at=at(2026, 4, 10, 10, 5), created_at=at(2026, 4, 10, 9)))
        return {u.name: u.id for u in s.exec(select(Unit))}
