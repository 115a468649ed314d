"""What the command line tells an operator (a quiet `serve` naming the pages: test_cli.py): `jobs
list` with a run moved off a rest day, `outbox` saying why each message waits, `export --year`."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from sqlmodel import Session

from bot.clock import FixedClock
from bot.config import Config
from db.models import Outbox
from serving import free_port
from test_cli import duban

TZ = ZoneInfo("Asia/Shanghai")


def test_jobs_list_shows_a_run_moved_off_a_rest_day():
    from jobs import JobQueue
    from bot.app import Application

    app = Application(Config.model_validate({"database": {"url": "sqlite://"}}),
                      clock=FixedClock(datetime(2026, 12, 10, 9, tzinfo=TZ)))
    q = JobQueue(app)
    rows = q.next_runs()
    text = app.renderer.render("cli_jobs", rows=rows, moved={
        n: q.planned(n, nxt) for n, enabled, nxt, _ in rows if enabled and nxt})
    prompt = next(line for line in text.splitlines() if line.startswith("monthly_prompt"))
    # 12-20 is a Sunday: the prompt goes out on Friday the 18th, and the list says so
    assert "下次 2026-12-18 09:00 周五（原定 12-20 周日，遇休息日提前）" in prompt
    escalation = next(line for line in text.splitlines() if line.startswith("escalation"))
    assert "下次 2026-12-25 17:00 周五" in escalation and "原定" not in escalation
    app.engine.dispose()


def _waiting(tmp_path, quiet: str) -> str:
    port = free_port()  # nothing listens there: no `duban serve`
    (tmp_path / "config.toml").write_text(f'[server]\nport = {port}\n[sender]\nquiet_hours = "{quiet}"\n')
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'duban.db'}")
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.add(Outbox(key="push:zhangsan:1", channel="app", target="zhangsan", msgtype="text",
                     payload='{"content": "请汇报"}', created_at=now))
        s.add(Outbox(key="reply:zhangsan:2", channel="app", target="zhangsan", msgtype="text",
                     payload='{"content": "已收到"}', created_at=now))
        s.add(Outbox(key="push:lisi:3", channel="app", target="lisi", msgtype="text", payload='{"content": "x"}',
                     attempts=3, last_error="HTTP 502", next_attempt_at=datetime(2099, 1, 2, 3, 4, tzinfo=UTC),
                     created_at=now))
        s.commit()
    engine.dispose()
    result = duban("outbox", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_outbox_says_why_each_message_waits(tmp_path):
    local = datetime.now(TZ)  # quiet hours around the moment the test runs
    span = f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=2)):%H:%M}"
    out = _waiting(tmp_path, span)
    blocks = out.split("\n#")
    push = next(b for b in blocks if "push:zhangsan:1" in b)
    assert f"免打扰时段，{(local + timedelta(hours=2)):%H:%M} 后发送" in push
    reply = next(b for b in blocks if "reply:zhangsan:2" in b)
    assert "免打扰" not in reply  # a reply is never held
    backoff = next(b for b in blocks if "push:lisi:3" in b)
    assert "第 3 次发送未成功，01-02 11:04 再试" in backoff  # local time (UTC+8)
    assert "duban serve 未在运行" in out and "无应答" in out


def test_outbox_without_quiet_hours_says_only_that_serve_is_not_running(tmp_path):
    out = _waiting(tmp_path, "")
    assert "免打扰" not in out and "duban serve 未在运行" in out


def test_export_year_writes_the_year_workbook(tmp_path):
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    result = duban("export", "--year", "2026", "-o", "y.xlsx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    wb = load_workbook(tmp_path / "y.xlsx")
    assert wb.sheetnames[0] == "2026年度考核" and wb.sheetnames[-1] == "亮点"
    both = duban("export", "--year", "2026", "--month", "2026-03", "-o", "z.xlsx", cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
