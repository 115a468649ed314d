"""The command line as a user runs it: config errors, serve on embedded defaults, jobs, export, outbox."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

from conftest import ROOT
from serving import free_port, wait_healthy

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("DUBAN_CONFIG", None)


def duban(*args, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


@pytest.mark.parametrize("toml, line", [
    ('[schedule]\ntimezone = "Mars/Olympus"\n', "config error: schedule.timezone: unknown time zone 'Mars/Olympus'"),
    ('[wecom]\ncorp_id = "ww123"\n', "config error: wecom.secret: required when wecom.corp_id is set"),
    ('[wecom]\nencoding_aes_key = "short"\n', "config error: wecom.encoding_aes_key: must be 43 characters"),
    ('[schedule.jobs.monthly_prompt]\ncron = "0 9 32 * *"\n', "config error: schedule.jobs.monthly_prompt.cron:"),
    ('[schedule.jobs.weekly]\ncron = "0 9 * * 1"\n', "config error: schedule.jobs: unknown job 'weekly'"),
    ('[server]\nport = "eighty"\n', "config error: server.port:"),
    ('[database]\nurl = "mysql://x"\n', "config error: database.url: must be a sqlite:/// or postgresql:// URL"),
    ('[sever]\nport = 1\n', "config error: sever: unknown key"),
    ('not toml at all = = =\n', "not valid TOML"),
])
def test_a_bad_config_stops_start_up_with_one_line_naming_the_key(tmp_path, toml, line):
    (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
    result = duban("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert line in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_path_from_option_and_environment(tmp_path):
    (tmp_path / "bad.toml").write_text('[server]\nport = -1\n')
    assert "server.port" in duban("jobs", "list", "--config", str(tmp_path / "bad.toml"), cwd=tmp_path).stderr
    env = {**ENV, "DUBAN_CONFIG": str(tmp_path / "bad.toml")}
    assert "server.port" in duban("jobs", "list", cwd=tmp_path, env=env).stderr
    missing = duban("jobs", "list", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_secret_from_the_environment(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[wecom]\ncorp_id = "ww1"\ntoken = "t"\nencoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"\n')
    assert "wecom.secret" in duban("jobs", "list", cwd=tmp_path).stderr
    ok = duban("jobs", "list", cwd=tmp_path, env={**ENV, "DUBAN_WECOM_SECRET": "s3cret"})
    assert ok.returncode == 0 and "monthly_prompt" in ok.stdout


def test_serve_runs_on_embedded_defaults_without_credentials(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_healthy(port, proc), "serve did not answer"
        callback = httpx.get(f"http://127.0.0.1:{port}/wecom/callback", timeout=2)
        assert callback.status_code == 503  # console mode: no callback without credentials
        assert (tmp_path / "duban.db").exists()
        assert httpx.get(f"http://127.0.0.1:{port}/web/", timeout=5).status_code == 401  # the pages are there
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert "控制台模式" in err
    assert f"页面（总览、单位、我的、管理）：http://127.0.0.1:{port}/web/" in err  # the banner names the pages
    assert "apscheduler" not in err and " INFO " not in err, err  # quiet: no scheduler lines without -v


def test_chat_console_speaks_to_the_handlers_and_shows_pushes(tmp_path):
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    result = subprocess.run([sys.executable, "-m", "bot.cli", "chat", "--user", "zhangsan"], cwd=tmp_path,
                            input="任务\n汇报 T1 30% 完成方案\\\n第二行\n问题 实训室漏水\n", capture_output=True,
                            text=True, env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "T1" in result.stdout and "已收到 T1 汇报：进度 30%" in result.stdout and "P2" in result.stdout


def test_jobs_list_run_dry_run_export_and_outbox(tmp_path):
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    listing = duban("jobs", "list", cwd=tmp_path)
    assert listing.returncode == 0
    *jobs, months = [line for line in listing.stdout.splitlines() if line.strip()]
    names = [line.split()[0] for line in jobs]
    assert months.startswith("2026年考核月份：2026-03 至 2026-12（共 10 个月）")
    assert names == ["deploy_check", "monthly_prompt", "escalation", "monthly_ranking", "midyear_review",
                     "annual_summary", "item_watch"]
    dry = duban("jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "[预览]" in dry.stdout and "T1" in dry.stdout
    assert "发件箱：空" in duban("outbox", "--all", cwd=tmp_path).stdout
    real = duban("jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", cwd=tmp_path)
    assert real.returncode == 0 and "1 条消息进入发件箱" in real.stdout and "[推送 → appchat:" in real.stdout
    again = duban("jobs", "run", "monthly_prompt", "--at", "2026-03-20 10:00", cwd=tmp_path)
    assert "已经运行过" in again.stdout
    assert "已发送 1" in duban("outbox", "--all", cwd=tmp_path).stdout
    bad = duban("jobs", "run", "weekly", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown job" in bad.stderr
    exp = duban("export", "--month", "2026-03", "-o", "m.xlsx", cwd=tmp_path)
    assert exp.returncode == 0
    wb = load_workbook(tmp_path / "m.xlsx")
    assert wb.sheetnames == ["2026-03排名", "任务进度", "汇报记录", "问题清单", "督办", "佐证材料"]


def test_jobs_run_that_cannot_deliver_exits_non_zero_and_keeps_the_message(tmp_path, fake):
    for _ in range(20):
        fake.fail("appchat/send", http=500)
    (tmp_path / "config.toml").write_text(f"""
[wecom]
corp_id = "wwfakecorp"
secret = "fakesecret"
token = "t"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
api_base = "{fake.base}"
timeout_seconds = 1.0
[sender]
backoff_seconds = 0.05
backoff_max_seconds = 0.1
max_attempts = 1000
poll_seconds = 0.05
""")
    duban("template", "r.xlsx", cwd=tmp_path)
    duban("import", "r.xlsx", cwd=tmp_path)
    result = duban("jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", "--timeout", "2", cwd=tmp_path)
    assert result.returncode == 1 and "未送达" in result.stderr
    listing = duban("outbox", cwd=tmp_path).stdout
    assert "[pending]" in listing and "HTTP 500" in listing


def test_template_refuses_to_overwrite_a_file_without_force(tmp_path):
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    wb = load_workbook(tmp_path / "r.xlsx")
    wb["人员"].append(["li", "李四", "机电工程系", "成员"])
    wb.save(tmp_path / "r.xlsx")
    again = duban("template", "r.xlsx", cwd=tmp_path)
    assert again.returncode != 0 and "--force" in again.stderr and "r.xlsx" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert load_workbook(tmp_path / "r.xlsx")["人员"].max_row == 3  # the filled-in rows are still there
    assert duban("template", "r.xlsx", "--force", cwd=tmp_path).returncode == 0
    assert load_workbook(tmp_path / "r.xlsx")["人员"].max_row == 2


def test_import_moves_a_task_to_another_unit_only_with_move(tmp_path):
    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    wb = load_workbook(tmp_path / "r.xlsx")
    wb["单位"].append(["信息工程系", "系（部、院）", "", "chat-xx", ""])
    for sheet in ("任务清单", "问题清单"):
        wb[sheet]["B2"] = "信息工程系"
        wb[sheet].cell(2, [c.value for c in wb[sheet][1]].index("责任人账号") + 1).value = None
    wb.save(tmp_path / "r.xlsx")
    refused = duban("import", "r.xlsx", cwd=tmp_path)
    assert refused.returncode == 1
    assert "【任务清单】第2行：编号 T1 属于“机电工程系”，此行是“信息工程系”" in refused.stderr
    assert "duban import --move" in refused.stderr
    moved = duban("import", "r.xlsx", "--move", cwd=tmp_path)
    assert moved.returncode == 0 and "任务清单：新增 0，更新 1，未变 0" in moved.stdout


def test_a_database_driver_that_cannot_load_ends_start_up_with_one_line(tmp_path):
    # psycopg is a core dependency (pip install -e . brings it) ...
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace(" ", "").startswith("psycopg[binary]") for d in deps)
    # ... and when it still cannot load (a broken install), start-up says so in one line
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    (tmp_path / "config.toml").write_text('[database]\nurl = "postgresql://duban:secret@127.0.0.1:1/duban"\n')
    env = {**ENV, "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}"}
    for args in (["serve"], ["jobs", "list"], ["outbox"]):
        result = duban(*args, cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "database error: 127.0.0.1:1/duban: cannot load the database driver: No module named 'psycopg'"], args
        assert "secret" not in result.stderr


def test_rosters_databases_and_exports_are_not_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["roster.xlsx", "sub/名单.xlsx", "duban.db", "exports/2026-03.xlsx"]
    ignored = subprocess.run(["git", "check-ignore", "-z", "--stdin", "--no-index"], input="\0".join(names) + "\0",
                             cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split("\0")[:-1] == names


def _fake_config(tmp_path, fake, max_attempts=1000):
    (tmp_path / "config.toml").write_text(f"""
[wecom]
corp_id = "wwfakecorp"
secret = "fakesecret"
token = "t"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
api_base = "{fake.base}"
timeout_seconds = 1.0
[sender]
backoff_seconds = 0.05
backoff_max_seconds = 0.1
max_attempts = {max_attempts}
poll_seconds = 0.05
quiet_hours = ""  # the test must not depend on the hour it runs at
[server]
port = {free_port()}  # (a `duban serve` left running on 8080 is not this test's server)
[database]
url = "sqlite:///{tmp_path / 'duban.db'}"
""")


def test_a_failed_message_is_retried_by_hand_and_the_cli_says_what_happens_next(tmp_path, fake):
    from bot.app import Application
    from bot.cli import _worker
    from bot.clock import SystemClock
    from bot.config import load_config

    fake.fail("appchat/send", errcode=40003)  # WeCom refuses it: the message fails at once
    _fake_config(tmp_path, fake)
    duban("template", "r.xlsx", cwd=tmp_path)
    duban("import", "r.xlsx", cwd=tmp_path)
    result = duban("jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", "--timeout", "2", cwd=tmp_path)
    assert result.returncode == 1 and "未送达" in result.stderr
    assert "duban serve 重试" not in result.stderr  # failed messages are not retried by serve
    assert "duban outbox retry --id 1" in result.stderr
    listing = duban("outbox", cwd=tmp_path).stdout
    assert "[failed]" in listing and "40003" in listing and "duban outbox retry --id 1" in listing

    missing = duban("outbox", "retry", "--id", "99", cwd=tmp_path)
    assert missing.returncode == 1 and "#99 不存在或不是失败状态" in missing.stdout
    neither = duban("outbox", "retry", cwd=tmp_path)
    assert neither.returncode == 2 and "--id" in neither.stderr
    retried = duban("outbox", "retry", "--id", "1", cwd=tmp_path)
    assert retried.returncode == 0 and "已将 1 条失败的消息放回待发送" in retried.stdout
    listing = duban("outbox", cwd=tmp_path).stdout
    assert "[pending]" in listing and "尝试0次" in listing and "duban serve" in listing
    assert "retry --id 1" not in listing
    assert "没有失败的消息" in duban("outbox", "retry", "--all", cwd=tmp_path).stdout

    # what `duban serve` does next: its sender delivers the message
    app = Application(load_config(str(tmp_path / "config.toml")), clock=SystemClock())
    worker = _worker(app)
    worker.drain(10)
    worker.stop()
    app.engine.dispose()
    assert len(fake.deliveries("appchat/send")) == 1
    assert "已发送 1" in duban("outbox", "--all", cwd=tmp_path).stdout


def test_verbose_logging_never_shows_the_secret_tokens_or_robot_keys(tmp_path, fake):
    fake.fail("webhook/send", http=500)
    _fake_config(tmp_path, fake)
    duban("template", "r.xlsx", cwd=tmp_path)
    duban("import", "r.xlsx", cwd=tmp_path)
    # the example unit speaks through a group robot here, and the broadcast goes to another one
    import sqlite3

    with sqlite3.connect(tmp_path / "duban.db") as db:
        db.execute("UPDATE unit SET chat_id = '', webhook_key = 'robot-key-0001'")
    with open(tmp_path / "config.toml", "a") as f:
        f.write('[broadcast]\nwebhook_key = "robot-key-0002"\n')
    fake.expire_token()
    result = duban("-v", "jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.counts_by_target() == {"robot:robot-key-0001": 1}
    everything = result.stdout + result.stderr + duban("outbox", "--all", cwd=tmp_path).stdout
    assert "webhook:…0001: HTTP 500" in everything
    for secret in ("fakesecret", "robot-key-0001", "robot-key-0002", "tok-", "access_token="):
        assert secret not in everything


def test_chat_sends_a_file_in_console_mode_a_units_lists_and_a_picture(tmp_path):
    """issue 24: `duban chat --file` rehearses what WeCom would deliver: the unit's lists sent back
    (checked and kept for review) and a picture named by 附件."""
    import io

    from PIL import Image

    assert duban("template", "r.xlsx", cwd=tmp_path).returncode == 0
    assert duban("import", "r.xlsx", cwd=tmp_path).returncode == 0
    chat = lambda *args, text="": subprocess.run(  # noqa: E731
        [sys.executable, "-m", "bot.cli", "chat", "--user", "zhangsan", *args], cwd=tmp_path, input=text,
        capture_output=True, text=True, env=ENV, timeout=60)
    asked = chat(text="清单\n")
    sent = tmp_path / "exports" / "机电工程系-三张清单.xlsx"
    assert asked.returncode == 0 and f"文件 {Path('exports') / sent.name}" in asked.stdout, asked.stdout
    wb = load_workbook(sent)
    wb["任务清单"]["D2"] = "建成智能制造实训中心并投入使用"
    wb.save(tmp_path / "改.xlsx")
    back = chat("--file", "改.xlsx")
    assert back.returncode == 0, back.stderr
    assert "将作为机电工程系的清单检查" in back.stdout
    assert "任务清单：新增 0，修改 1，删除 0，未变 0" in back.stdout

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "JPEG")
    (tmp_path / "现场.jpg").write_bytes(buf.getvalue())
    photo = chat("--file", "现场.jpg", text="附件 T1\n任务 T1\n")
    assert photo.returncode == 0, photo.stderr
    assert "暂不知归入哪一项" in photo.stdout and "佐证材料：1 个" in photo.stdout, photo.stdout
