"""Running the bot for years on one server: backup and restore, deploy files, logs, migrations on
start from several processes at once, and `duban --version`."""
from __future__ import annotations

import configparser
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text
from sqlmodel import Session, func, select

from bot.app import Application
from bot.clock import FixedClock
from conftest import ROOT, at, make_config, seed
from serving import free_port
from db.models import ProcessedMessage, Report
from db.session import MIGRATIONS, make_engine
from jobs import JobQueue

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("DUBAN_CONFIG", None)
DEPLOY = ROOT / "deploy"


def duban(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def head() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def write_config(path: Path, url: str) -> Path:
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


# ---------------------------------------------------------------- backup

def test_backup_while_reports_are_written_keeps_every_acknowledged_report(tmp_path):
    live = tmp_path / "live" / "duban.db"
    live.parent.mkdir()
    app = Application(make_config(f"sqlite:///{live}"), clock=FixedClock(at(2026, 3, 20, 10)))
    app.migrate()
    seed(app)
    config = write_config(tmp_path / "config.toml", f"sqlite:///{live}")

    acked: list[str] = []  # MsgIds whose report was committed (handle_message returned)
    failures: list[BaseException] = []
    stop = threading.Event()

    def report_continuously():
        n = 0
        try:
            while not stop.is_set():
                n += 1
                reply = app.handle_message("zhang", f"汇报 T1 {n % 100}% 第{n}次进展", f"m{n}")
                assert "T1" in reply, reply
                acked.append(f"m{n}")
        except BaseException as exc:  # noqa: BLE001  (reported by the test below)
            failures.append(exc)

    writer = threading.Thread(target=report_continuously)
    writer.start()
    try:
        while len(acked) < 30 and writer.is_alive():
            time.sleep(0.01)
        before = list(acked)
        backup = tmp_path / "backup" / "duban-backup.db"
        backup.parent.mkdir()
        result = duban("backup", str(backup), "--config", str(config), cwd=tmp_path)
        during = len(acked) - len(before)
    finally:
        stop.set()
        writer.join(60)
    assert not failures, failures
    assert result.returncode == 0, result.stderr
    assert during > 0, "the reports did not go on while the backup ran"
    assert str(backup) in result.stdout and f"{backup.stat().st_size} 字节" in result.stdout

    # Restore as a user would: serve stopped, the one file put in place, serve started.
    restored = tmp_path / "restored" / "duban.db"
    restored.parent.mkdir()
    shutil.copyfile(backup, restored)
    with closing(sqlite3.connect(restored)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # no -wal file to carry along
    back = Application(make_config(f"sqlite:///{restored}"), clock=FixedClock(at(2026, 3, 20, 11)))
    back.migrate()
    with Session(back.engine) as s:
        kept = set(s.exec(select(ProcessedMessage.msg_id)))
        reports = s.exec(select(func.count()).select_from(Report)).one()
    assert set(before) <= kept
    assert reports >= len(before)
    assert back.handle_message("zhang", "汇报 T1 99% 恢复后继续汇报", "after-restore")
    back.engine.dispose()
    app.engine.dispose()


def test_backup_refuses_an_existing_file_unless_forced(tmp_path):
    live = tmp_path / "duban.db"
    app = Application(make_config(f"sqlite:///{live}"))
    app.migrate()
    seed(app)
    app.engine.dispose()
    target = tmp_path / "old.db"
    target.write_bytes(b"yesterday's backup")

    refused = duban("backup", str(target), cwd=tmp_path)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    assert target.read_bytes() == b"yesterday's backup"

    forced = duban("backup", str(target), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("SELECT count(*) FROM unit").fetchone() == (4,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("old.db")] == ["old.db"]

    itself = duban("backup", "duban.db", "--force", cwd=tmp_path)
    assert itself.returncode != 0 and "数据库本身" in itself.stderr


def test_backup_without_a_database_file_says_so_and_writes_nothing(tmp_path):
    result = duban("backup", "b.db", cwd=tmp_path)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "duban.db" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_backup_of_postgresql_tells_how_with_pg_dump_and_hides_the_password(tmp_path):
    config = write_config(tmp_path / "config.toml", "postgresql://duban:s3cr3t@db.example:5433/duban_prod")
    result = duban("backup", "duban.dump", "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert len(output.splitlines()) == 1
    assert "pg_dump -Fc" in output and "duban_prod" in output and "duban.dump" in output
    assert "s3cr3t" not in output
    assert not (tmp_path / "duban.dump").exists()


# ---------------------------------------------------------------- deploy files

def test_systemd_unit_runs_serve_as_its_own_user_with_secrets_from_a_file():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string((DEPLOY / "duban.service").read_text(encoding="utf-8"))
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert "duban serve --config /etc/duban/config.toml" in service["ExecStart"]
    assert service["ExecStart"].split()[0].startswith("/")  # systemd wants an absolute path
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"].lstrip("-").startswith("/etc/duban/")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def nginx_blocks(conf: str) -> dict[str, str]:
    """location path -> its block text (a plain reading: one level of braces)."""
    blocks = {}
    for part in conf.split("location ")[1:]:
        head, _, body = part.partition("{")
        blocks[head.strip().split()[-1]] = body.split("}")[0]
    return blocks


def test_nginx_site_proxies_only_the_callbacks_over_https():
    conf = (DEPLOY / "nginx-duban.conf").read_text(encoding="utf-8")
    assert "listen 443 ssl" in conf and "ssl_certificate " in conf and "ssl_certificate_key " in conf
    assert "client_max_body_size 64k;" in conf
    for timeout in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert timeout in conf
    blocks = nginx_blocks(conf)
    assert "proxy_pass http://127.0.0.1:8080" in blocks["/wecom/callback"]
    assert "proxy_pass http://127.0.0.1:8080" in blocks["/wecom/aibot"]  # the smart robot's
    assert "proxy_pass http://127.0.0.1:8080" in blocks["/healthz"]
    assert "allow 127.0.0.1;" in blocks["/healthz"] and "deny all;" in blocks["/healthz"]
    assert "return 404;" in blocks["/"] and "proxy_pass" not in blocks["/"]
    assert conf.count("proxy_pass") == 4 and "proxy_pass http://127.0.0.1:8080" in blocks["/web/"]  # callbacks, health, pages


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if nginx is None:
        pytest.skip("nginx is not installed: `nginx -t` of deploy/nginx-duban.conf skipped")
    # The site as /etc/nginx/sites-enabled would include it, with a throwaway certificate.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=duban.test", "-keyout", str(key), "-out", str(cert)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr.strip()[:200]}")
    site = (DEPLOY / "nginx-duban.conf").read_text(encoding="utf-8")
    site = site.replace("/etc/ssl/certs/duban.pem", str(cert)).replace("/etc/ssl/private/duban.key", str(key))
    # `nginx -t` binds the listen sockets: a free port on 127.0.0.1 instead of 443 (root, and maybe taken).
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{free_port()} ssl;").replace("listen [::]:443 ssl;", "")
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n  access_log off;\n"
        + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp_path}/site.conf;\n}}\n", encoding="utf-8")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                             "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- logs

def test_a_failing_job_logs_its_name_and_period_on_the_first_line(app, caplog):
    with app.session() as s:
        s.exec(text("DROP TABLE jobrun"))  # a broken database: the run cannot be claimed
    with caplog.at_level(logging.ERROR, logger="duban.jobs"):
        JobQueue(app)._fire_logged("monthly_prompt")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None  # the traceback is kept, after the first line
    assert "monthly_prompt" in record.getMessage() and "2026-03" in record.getMessage()
    assert "\n" not in record.getMessage()

    caplog.clear()  # on start, a job that fails to catch up does not keep the bot from starting
    with caplog.at_level(logging.ERROR, logger="duban.jobs"):
        assert JobQueue(app).catch_up() == []
    assert any("monthly_prompt" in r.getMessage() and "2026-03" in r.getMessage() for r in caplog.records)


def test_a_failed_delivery_logs_the_outbox_key(db_url, fake, caplog):
    from bot.cli import _worker
    from bot.clock import SystemClock

    app = Application(make_config(db_url, api_base=fake.base), clock=SystemClock())
    app.migrate()
    seed(app)
    from bot.reply import Push, Target

    with app.session() as s:
        app.enqueue_push(s, Push(Target("app", "li"), "reply_continued", {}), "job:monthly_prompt:2026-03:li")
    fake.fail("message/send", http=500)
    worker = _worker(app)
    with caplog.at_level(logging.INFO, logger="duban.sender"):
        worker.run_once()
    worker.stop()
    app.engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "duban.sender"]
    assert any("job:monthly_prompt:2026-03:li" in line and "HTTP 500" in line for line in lines), lines


def test_verbose_logs_carry_no_secret_or_token(tmp_path, fake):
    (tmp_path / "config.toml").write_text(f"""
[wecom]
corp_id = "wwfakecorp"
secret = "fakesecret"
token = "t"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
api_base = "{fake.base}"
timeout_seconds = 1.0
""")
    app = Application(make_config(f"sqlite:///{tmp_path / 'duban.db'}"))
    app.migrate()
    seed(app)
    app.engine.dispose()
    result = duban("-v", "jobs", "run", "monthly_prompt", "--at", "2026-03-20 09:00", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.deliveries(), "nothing was sent"
    logged = result.stdout + result.stderr
    assert "fakesecret" not in logged and "tok-1" not in logged and "key-xx" not in logged
    for line in result.stderr.splitlines():  # one line a record, each with time, level and logger
        assert line.split()[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line


# ---------------------------------------------------------------- migrations from two processes

RACE = """
import sys, time
from pathlib import Path
from db.session import make_engine, migrate
engine = make_engine(sys.argv[1])
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.005)
migrate(engine)
"""


def test_two_processes_migrating_one_fresh_database_at_once_both_succeed(db_url, tmp_path):
    for round_ in range(5):
        url = sqlalchemy_url(db_url)
        if url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        elif round_:
            break  # one fresh PostgreSQL database is what the fixture gives
        go = tmp_path / f"go{round_}"
        ready = [tmp_path / f"ready{round_}-{i}" for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", RACE, url, str(r), str(go)], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # both start migrating together
        results = [(p.wait(120), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head()]
        assert {"unit", "report", "outbox", "jobrun"} <= set(inspect(engine).get_table_names())
        engine.dispose()


# ---------------------------------------------------------------- --version

def test_version_names_the_package_the_code_schema_and_the_database_schema(db_url, tmp_path):
    from importlib.metadata import version

    config = write_config(tmp_path / "config.toml", db_url)
    fresh = duban("--config", str(config), "--version", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert version("duban") in fresh.stdout and head() in fresh.stdout
    assert "数据库未初始化" in fresh.stdout
    if db_url.startswith("sqlite"):
        assert not (tmp_path / "duban.db").exists()  # asking does not create the database

    app = Application(make_config(db_url))
    app.migrate()
    app.engine.dispose()
    done = duban("--version", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "数据库未初始化" not in done.stdout
    assert done.stdout.count(head()) == 2  # the code's and the database's


def test_version_without_a_config_file_uses_the_defaults(tmp_path):
    result = duban("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert head() in result.stdout and "数据库未初始化" in result.stdout
    assert list(tmp_path.iterdir()) == []
