"""Command line (SPEC §8): serve, chat, link, import, template, export, outbox, jobs, campaign."""
from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click

from bot.app import Application
from bot.clock import SystemClock
from db.month import Month
from bot.config import Config, ConfigError, load_config

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _config_option(f):
    return click.option("--config", "config_path", envvar="DUBAN_CONFIG", type=click.Path(dir_okay=False),
                        default=None, help="config file (default ./config.toml, or DUBAN_CONFIG)")(f)


def _load(ctx: click.Context, config_path: str | None) -> Config:
    path = config_path or ctx.obj.get("config_path")
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _database_error(config: Config, what: str) -> None:
    """One line, the URL without its credentials, and exit."""
    click.echo(f"database error: {config.database.url.split('@')[-1]}: {what}", err=True)
    sys.exit(2)


def _application(ctx: click.Context, config_path: str | None) -> Application:
    config = _load(ctx, config_path)
    try:
        return Application(config, clock=SystemClock())
    except ImportError as exc:  # the URL's driver (psycopg) is not installed, or broken
        _database_error(config, f"cannot load the database driver: {exc}")


def _app(ctx: click.Context, config_path: str | None) -> Application:
    app = _application(ctx, config_path)
    try:
        app.migrate()
    except Exception as exc:  # unreachable database, bad credentials, ...
        _database_error(app.config, f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    return app


def _worker(app: Application, out=click.echo, quiet_hours: bool = True):
    """`quiet_hours`: False for an operator's `jobs run`, which delivers at once."""
    from bot.evidence import Fetcher
    from bot.excel.export import generate
    from bot.wecom.api import WeComTransport
    from bot.wecom.sender import ConsoleTransport, OutboxWorker

    transport = ConsoleTransport(out) if app.config.wecom.console_mode else WeComTransport(app.config.wecom)

    def file_source(s, row):
        return generate(s, app.config, json.loads(row.payload))

    # Pictures come only through WeCom's callback, so only a worker that talks to WeCom fetches them.
    fetch = None if app.config.wecom.console_mode else Fetcher(app, transport).run_once
    return OutboxWorker(app.engine, transport, app.clock, app.config.sender, file_source=file_source,
                        tz=app.config.schedule.tz, quiet_hours=quiet_hours, fetch=fetch)


def _moment(at: str | None, tz) -> datetime:
    """--at "YYYY-MM-DD HH:MM" in the configured time zone (or with an offset); default now."""
    if not at:
        return SystemClock().now().astimezone(tz)
    try:
        moment = datetime.fromisoformat(at.strip())
    except ValueError:
        raise click.BadParameter('expected "YYYY-MM-DD HH:MM"', param_hint="--at") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


@click.group(context_settings=CONTEXT, invoke_without_command=True, no_args_is_help=True)
@_config_option
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option("--version", "show_version", is_flag=True,
              help="print the version and the schema revision of the code and of the database")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool, show_version: bool) -> None:
    """争先督办 duban: WeCom bot for monthly reporting, supervision and ranking."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("alembic", "apscheduler"):  # their INFO lines (jobs added, scheduler started) only with -v
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.ensure_object(dict)["config_path"] = config_path
    if show_version:
        _print_version(ctx, config_path)
        ctx.exit()
    if ctx.invoked_subcommand is None:
        raise click.UsageError("Missing command.", ctx)


def _print_version(ctx: click.Context, config_path: str | None) -> None:
    from importlib.metadata import version

    from sqlalchemy.engine import make_url

    from bot.render import Renderer
    from db.session import make_engine, schema_head, schema_revision

    config = _load(ctx, config_path)
    url = config.database.url
    current, error = None, None
    path = make_url(url).database if url.startswith("sqlite") else None
    if path is None or Path(path).exists():  # asking never creates a SQLite file
        engine = make_engine(url)
        try:
            current = schema_revision(engine)
        except Exception as exc:  # unreachable server, bad credentials, not a database
            error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        finally:
            engine.dispose()
    click.echo(Renderer(config.schedule.tz).render(
        "cli_version", version=version("duban"), head=schema_head(), current=current, error=error,
        where=url.split("@")[-1]))


@main.command()
@_config_option
@click.option("--host", default=None, help="override server.host")
@click.option("--port", type=int, default=None, help="override server.port")
@click.pass_context
def serve(ctx: click.Context, config_path: str | None, host: str | None, port: int | None) -> None:
    """Callback server, scheduler and outbox sender in one process."""
    import uvicorn

    from bot.wecom.callback import build_asgi, server_options
    from jobs import JobQueue

    app = _app(ctx, config_path)
    cfg = app.config
    worker = _worker(app)
    jobs = JobQueue(app)
    for year in jobs.calendar_gaps():
        click.echo(app.renderer.render("cli_calendar_gap", year=year), err=True)
    jobs.warn_admins_of_calendar_gaps()
    if cfg.web.enabled and not cfg.web.session_secret and not cfg.wecom.console_mode:
        click.echo(app.renderer.render("cli_web_no_secret"), err=True)
    for r in jobs.catch_up():
        click.echo(app.renderer.render("cli_job_run", r=r, dry=False))
    jobs.start()
    worker.start()
    click.echo(app.renderer.render("cli_serve", cfg=cfg, host=host or cfg.server.host,
                                   port=port or cfg.server.port), err=True)
    click.echo(_scored_months(app), err=True)
    try:
        uvicorn.run(build_asgi(app, worker), host=host or cfg.server.host,
                    port=port or cfg.server.port, log_level="warning", access_log=False, **server_options())
    finally:
        jobs.shutdown()
        worker.stop()


@main.command()
@_config_option
@click.option("--user", "userid", required=True, help="the WeCom userid to speak as")
@click.option("--at", "at", default=None, help='talk as if the clock read "YYYY-MM-DD HH:MM" (rehearsals, training)')
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="first send this picture or file, as WeCom would (console mode): evidence, 亮点, a unit's lists")
@click.pass_context
def chat(ctx: click.Context, config_path: str | None, userid: str, at: str | None, file: str | None) -> None:
    """A local console that speaks to the same handlers as WeCom would."""
    import filetype
    from sqlmodel import Session, col, select

    from bot.clock import FixedClock
    from bot.evidence import Fetcher, LocalFiles
    from bot.reply import show_target
    from db.models import Outbox

    app = _app(ctx, config_path)
    if at:
        app.clock = FixedClock(_moment(at, app.tz))
    if file and not app.config.wecom.console_mode:
        click.echo("--file works in console mode only (wecom.corp_id empty): send it in WeCom instead", err=True)
        sys.exit(2)
    worker = _worker(app)
    fetcher = Fetcher(app, LocalFiles()) if app.config.wecom.console_mode else None
    click.echo(app.renderer.render("cli_chat", userid=userid))
    if file:  # a picture or file message: answered, then fetched from the disk as media/get would
        kind = "image" if filetype.is_image(file) else "file"
        media = (kind, LocalFiles.PREFIX + str(Path(file).resolve()))
        answer = app.handle_batch([(userid, "", uuid.uuid4().hex, "", False, media)])[0]
        if isinstance(answer, BaseException):
            raise answer
        click.echo(answer)
        fetcher.run_once()
        worker.run_once()
        click.echo("")
    buffer: list[str] = []
    for line in sys.stdin if not sys.stdin.isatty() else iter(lambda: input("> "), None):
        line = line.rstrip("\n")
        if line.endswith("\\"):
            buffer.append(line[:-1])
            continue
        text = "\n".join(buffer + [line]).strip()
        buffer = []
        if not text:
            continue
        if text in ("exit", "quit", "退出"):
            break
        msg_id = uuid.uuid4().hex
        click.echo(app.handle_message(userid, text, msg_id))
        if app.config.wecom.console_mode:
            fetcher.run_once()  # a picture sent by --file and named now (附件 T1)
            worker.run_once()
        else:
            with Session(app.engine) as s:
                mine = (f"reply:{userid}:{msg_id}", f"push:{userid}:{msg_id}")  # keys built in bot/app.py
                rows = s.exec(select(Outbox).where(col(Outbox.key).startswith(mine[0]) |
                                                   col(Outbox.key).startswith(mine[1]))).all()
            for row in rows:
                click.echo(f"[待发送 → {show_target(row.channel, row.target)}] {row.payload}")
        click.echo("")


@main.command("import")
@_config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--move", is_flag=True, help="let an existing task or problem code move to the unit the file names")
@click.pass_context
def import_cmd(ctx: click.Context, config_path: str | None, file: str, move: bool) -> None:
    """Import the roster workbook (单位, 人员, 任务清单, 问题清单): all rows or none."""
    from bot.excel.roster import RosterFileError, import_roster

    app = _app(ctx, config_path)
    try:
        with app.session() as s:
            result = import_roster(s, file, app.clock.now(), move=move, max_mb=app.config.storage.max_import_mb)
            if result.errors:
                s.rollback()
    except RosterFileError as exc:
        click.echo(app.renderer.render("cli_bad_workbook", file=file, error=str(exc), kind=exc.kind, **exc.data),
                   err=True)
        sys.exit(1)
    click.echo(app.renderer.render("import_result", errors=result.errors, counts=result.counts,
                                   ignored=result.ignored, voided=result.voided), err=bool(result.errors))
    sys.exit(1 if result.errors else 0)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="overwrite FILE if it exists")
def template(file: str, force: bool) -> None:
    """Write an empty roster workbook with the right sheets, headers and one example row each."""
    from bot.excel.roster import write_template
    from bot.render import Renderer

    if Path(file).exists() and not force:
        click.echo(Renderer(UTC).render("cli_file_exists", file=file), err=True)
        sys.exit(1)
    write_template(file)
    click.echo(file)


@main.command()
@_config_option
@click.option("--month", default=None, help="YYYY-MM (default: this month)")
@click.option("--year", type=int, default=None, help="the year's workbook (年度考核) instead of a month's")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.pass_context
def export(ctx: click.Context, config_path: str | None, month: str | None, year: int | None, output: str) -> None:
    """Write the month's (or with --year, the year's) Excel workbook."""
    from bot.excel.export import generate

    if month and year:
        raise click.UsageError("give --month or --year, not both")
    app = _app(ctx, config_path)
    now = app.clock.now()
    if year:
        spec = {"kind": "year", "year": year}
    else:
        try:
            m = Month.parse(month) if month else Month.of(now.astimezone(app.tz))
        except ValueError:
            raise click.BadParameter("expected YYYY-MM", param_hint="--month") from None
        spec = {"kind": "month", "month": str(m)}
    with app.session() as s:
        Path(output).write_bytes(generate(s, app.config, {**spec, "at": now.isoformat()}))
    click.echo(output)


@main.command()
@_config_option
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="overwrite PATH if it exists")
@click.pass_context
def backup(ctx: click.Context, config_path: str | None, path: str, force: bool) -> None:
    """Copy the live SQLite database to PATH (safe while serve runs); for PostgreSQL, say how."""
    from sqlalchemy.engine import make_url

    from bot.render import Renderer
    from db.session import sqlite_backup

    config = _load(ctx, config_path)
    render = Renderer(config.schedule.tz).render
    url = make_url(config.database.url)
    if url.get_backend_name() != "sqlite":
        click.echo(render("cli_backup_postgres", url=url, path=path), err=True)
        sys.exit(1)
    source = Path(url.database or "")
    if not source.is_file():
        click.echo(render("cli_backup_no_database", source=source), err=True)
        sys.exit(1)
    target = Path(path)
    if target.exists() and target.resolve() == source.resolve():
        click.echo(render("cli_backup_failed", target=target, error="这是数据库本身"), err=True)
        sys.exit(1)
    if target.exists() and not force:
        click.echo(render("cli_backup_exists", target=target), err=True)
        sys.exit(1)
    try:
        sqlite_backup(source, target)
    except Exception as exc:  # target directory missing or not writable, disk full, not a database
        click.echo(render("cli_backup_failed", target=target,
                          error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"), err=True)
        sys.exit(1)
    click.echo(render("cli_backup", target=target, size=target.stat().st_size))


@main.command()
@_config_option
@click.option("--user", "userid", required=True, help="the WeCom userid the link signs in")
@click.pass_context
def link(ctx: click.Context, config_path: str | None, userid: str) -> None:
    """Print a one-time sign-in link to the web pages (valid 10 minutes, one use)."""
    from db import queries
    from bot.web.auth import make_link

    app = _app(ctx, config_path)
    with app.session() as s:
        known = queries.get_member(s, userid) is not None
    if not known:
        click.echo(app.renderer.render("cli_link_unknown", userid=userid), err=True)
        sys.exit(1)
    click.echo(make_link(app, userid))


@main.group(invoke_without_command=True)
@_config_option
@click.option("--all", "show_all", is_flag=True, help="include sent messages")
@click.pass_context
def outbox(ctx: click.Context, config_path: str | None, show_all: bool) -> None:
    """Pending and failed outbound messages; `outbox retry` sends failed ones again."""
    if ctx.invoked_subcommand is not None:
        ctx.obj["config_path"] = config_path or ctx.obj.get("config_path")
        return
    from sqlmodel import Session

    from db import queries

    from bot.wecom.sender import why_waiting

    app = _app(ctx, config_path)
    statuses = ("pending", "sending", "failed") + (("sent",) if show_all else ())
    with Session(app.engine) as s:
        rows = queries.outbox_rows(s, statuses)
        counts = queries.outbox_counts(s)
    now = app.clock.now()
    waits = {r.id: why_waiting(r, now, app.config.sender, app.tz) for r in rows if r.status == "pending"}
    serving = _serving(app) if waits else True
    click.echo(app.renderer.render("cli_outbox", rows=rows, counts=counts, waits=waits, serving=serving,
                                   server=f"{app.config.server.host}:{app.config.server.port}"))


def _serving(app: Application) -> bool:
    """Whether `duban serve` answers on the configured port (its /healthz)."""
    import httpx

    host = app.config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        httpx.get(f"http://{host}:{app.config.server.port}/healthz", timeout=2)
    except httpx.HTTPError:
        return False
    return True


@outbox.command("retry")
@_config_option
@click.option("--id", "ids", type=int, multiple=True, help="the message's number in `duban outbox` (repeatable)")
@click.option("--all", "retry_all", is_flag=True, help="every failed message")
@click.pass_context
def outbox_retry(ctx: click.Context, config_path: str | None, ids: tuple[int, ...], retry_all: bool) -> None:
    """Put failed messages back to pending, their attempts reset, for `duban serve` to send."""
    from db import queries

    if bool(ids) == retry_all:
        raise click.UsageError("give --id N (one or more) or --all")
    app = _app(ctx, config_path)
    with app.session() as s:
        count = queries.retry_failed_outbox(s, None if retry_all else list(ids))
    click.echo(app.renderer.render("cli_outbox_retry", count=count, ids=ids))
    sys.exit(0 if count or retry_all else 1)


@main.group()
def campaign() -> None:
    """Campaign years: start the next one."""


@campaign.command("new")
@_config_option
@click.argument("year", type=click.IntRange(2000, 2100))
@click.option("--carry", type=click.Choice(["none", "unfinished"]), default=None,
              help="what the current year left open to carry (default: list it and ask)")
@click.option("--at", "at", default=None, help='"YYYY-MM-DD HH:MM" in the configured time zone (default: now)')
@click.pass_context
def campaign_new(ctx: click.Context, config_path: str | None, year: int, carry: str | None, at: str | None) -> None:
    """Start YEAR's campaign: units, people, groups and roles stay; unfinished tasks, open problems and
    open 督办 items are carried if asked; the current year stays as it is, readable."""
    from bot.campaign import years
    from bot.clock import FixedClock
    from db import queries

    app = _app(ctx, config_path)
    if at:
        app.clock = FixedClock(_moment(at, app.tz))
    now = app.clock.now()
    with app.session() as s:
        current = years.current_year(s, app.config, now)
        if year <= current:
            raise click.ClickException(f"{year}年必须晚于当前考核年度 {current}年")
        open_ = queries.unfinished(s, current)
        click.echo(app.renderer.render("cli_campaign_open", year=current, new=year, open=open_))
        if carry is None:
            carry = "unfinished" if open_ and click.confirm(f"结转以上事项到{year}年？", default=True) else "none"
        years.start(s, app.config, year, now, carry == "unfinished")
        first = years.first_month(s, app.config, year)
    click.echo(app.renderer.render("cli_campaign_new", year=year, previous=current, first=first, open=open_,
                                   carried=carry == "unfinished" and bool(open_)))
    click.echo(_scored_months(app))


def _scored_months(app: Application) -> str:
    """The current campaign year's scored months, as `serve` and `jobs list` say them (`jobs list`
    does not set the database up: before it is, from the configuration alone)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from bot.campaign import years

    with Session(app.engine) as s:
        try:
            years.current_year(s, app.config, app.clock.now())
        except SQLAlchemyError:
            s = None
        year = years.current_year(s, app.config, app.clock.now())
        first, scored = years.first_month(s, app.config, year), years.scored_months(s, app.config, year)
    return app.renderer.render("cli_months", year=year, first=first, months=scored,
                               explicit=str(first) == app.config.campaign.first_month)


@main.group()
def jobs() -> None:
    """Scheduled jobs: list them, or run one by hand."""


@jobs.command("list")
@_config_option
@click.pass_context
def jobs_list(ctx: click.Context, config_path: str | None) -> None:
    from jobs import JobQueue

    app = _application(ctx, config_path)
    q = JobQueue(app)
    rows = q.next_runs()
    click.echo(app.renderer.render("cli_jobs", rows=rows, moved={
        name: q.planned(name, nxt) for name, enabled, nxt, _ in rows if enabled and nxt is not None}))
    click.echo(_scored_months(app))
    for year in q.calendar_gaps():
        click.echo(app.renderer.render("cli_calendar_gap", year=year), err=True)


@jobs.command("run")
@_config_option
@click.argument("name")
@click.option("--at", "at", default=None, help='"YYYY-MM-DD HH:MM" in the configured time zone (default: now)')
@click.option("--dry-run", is_flag=True, help="print what would be sent; send and record nothing")
@click.option("--force", is_flag=True, help="run a period that already ran again: queue what it did not queue then")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to spend delivering before giving up")
@click.pass_context
def jobs_run(ctx: click.Context, config_path: str | None, name: str, at: str | None, dry_run: bool,
             force: bool, timeout: float) -> None:
    """Run job NAME as if the clock read --at, and deliver what it sends before exiting."""
    from bot.clock import FixedClock
    from jobs import JobQueue
    from jobs.definitions import JOBS

    config = _load(ctx, config_path)
    if name not in JOBS:
        raise click.BadParameter(f"unknown job {name!r}; one of: {', '.join(JOBS)}", param_hint="NAME")
    moment = _moment(at, config.schedule.tz)
    app = _app(ctx, config_path)
    app.clock = FixedClock(moment)
    result = JobQueue(app).run_at(name, moment, dry_run=dry_run, force=force)
    click.echo(app.renderer.render("cli_job_run", r=result, name=name, moment=moment, dry=dry_run))
    if result is None:
        sys.exit(1)
    if dry_run or result.status != "ran":
        return
    app.clock = SystemClock()
    worker = _worker(app, quiet_hours=False)  # asked for now: not held for [sender] quiet_hours
    worker.drain(timeout)
    worker.stop()
    from sqlmodel import Session

    from db import queries

    with Session(app.engine) as s:
        left = [r for r in queries.outbox_rows(s, ("pending", "sending", "failed"))
                if r.key.startswith(f"job:{name}:{result.period}:")]
    if left:
        click.echo(app.renderer.render("cli_undelivered", rows=left), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
