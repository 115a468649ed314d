"""Generate a large organisation in a database: U units, 10 tasks each, a year of monthly reports."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from bot.app import Application
from db.models import ItemEvent, Member, Report, SupervisionItem, Task, Unit

LINES = ("深学争优", "敢为争先", "实干争效")
TASKS_PER_UNIT = 10


def generate(app: Application, units: int, year: int = 2026, seed: int = 7) -> dict:
    rng = random.Random(seed)
    tz = app.config.schedule.tz
    with app.engine.begin() as conn:
        conn.execute(insert(Unit), [
            {"id": i + 1, "name": f"单位{i:05d}", "category": "处室", "leader_userid": f"u{i}-0",
             **({"chat_id": f"chat{i}", "webhook_key": ""} if i % 2 else {"chat_id": "", "webhook_key": f"key{i}"})}
            for i in range(units)])
        conn.execute(insert(Member), [
            {"userid": f"u{i}-{j}", "name": f"成员{i}-{j}", "unit_id": i + 1, "role": "负责人" if j == 0 else "成员"}
            for i in range(units) for j in range(5)])
        conn.execute(insert(Member), [{"userid": "admin", "name": "管理员", "unit_id": 1, "role": "管理员"}])
        tasks = []
        for i in range(units):
            for k in range(TASKS_PER_UNIT):
                start = date(year, 3, 1)
                due = date(year, rng.choice([6, 9, 12]), 28)
                tasks.append({"id": i * TASKS_PER_UNIT + k + 1, "code": f"T{i * TASKS_PER_UNIT + k + 1}",
                              "unit_id": i + 1, "line": LINES[k % 3], "content": f"任务{i}-{k} 推进重点工作",
                              "milestone": "", "leader_in_charge": "", "owner_userid": f"u{i}-{k % 5}",
                              "start_date": start, "due_date": due})
        conn.execute(insert(Task), tasks)
        reports = []
        rid = 0
        for month in range(3, 13):
            for t in tasks:
                if rng.random() < 0.1:
                    continue  # some tasks go unreported in a month
                day = rng.randint(1, 28)
                created = datetime(year, month, day, 10, tzinfo=tz).astimezone(UTC)
                pct = min(100, (month - 2) * 12 + rng.randint(-5, 10))
                rid += 1
                reports.append({"id": rid, "task_id": t["id"], "unit_id": t["unit_id"], "userid": t["owner_userid"],
                                "percent": max(0, pct), "text": "本月推进情况", "created_at": created,
                                "month": f"{year}-{month:02d}", "local_day": day, "version": 1,
                                "supersedes_id": None})
                if rng.random() < 0.2:  # a correction
                    rid += 1
                    reports.append({**reports[-1], "id": rid, "version": 2, "supersedes_id": rid - 1,
                                    "created_at": created + timedelta(hours=2)})
        for chunk in range(0, len(reports), 20000):
            conn.execute(insert(Report), reports[chunk:chunk + 20000])
        items, feedback = [], []
        for i in range(units):
            for month in range(3, 13):
                iid = len(items) + 1
                items.append({"id": iid, "code": f"D{iid}", "unit_id": i + 1, "content": "督办事项",
                              "deadline": date(year, month, 25), "month": f"{year}-{month:02d}",
                              "created_by": "admin", "created_at": datetime(year, month, 5, 9, tzinfo=tz).astimezone(UTC),
                              "status": "下发", "answered_at": None, "closed_at": None})
                if rng.random() < 0.8:  # answered, and accepted (办结) the same day
                    answered = datetime(year, month, rng.randint(6, 28), 9, tzinfo=tz).astimezone(UTC)
                    items[-1].update(status="办结", answered_at=answered, closed_at=answered + timedelta(hours=3))
                    feedback.append({"item_id": iid, "kind": "反馈", "userid": f"u{i}-0", "text": "已办理",
                                     "created_at": answered})
        conn.execute(insert(SupervisionItem), items)
        conn.execute(insert(ItemEvent), feedback)
    if app.engine.dialect.name == "postgresql":
        with app.engine.begin() as conn:
            for table in ("unit", "task", "report", "supervisionitem", "itemevent"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")
            conn.exec_driver_sql("ANALYZE")
    return {"units": units, "tasks": len(tasks), "reports": len(reports), "items": len(items)}
