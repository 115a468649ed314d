"""Configuration: one TOML file, validated at start; secrets may come from the environment.

A bad or missing value raises ConfigError whose message is one line naming the key.
"""
from __future__ import annotations

import os
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

JOB_NAMES = (
    "deploy_check",
    "monthly_prompt",
    "escalation",
    "monthly_ranking",
    "midyear_review",
    "annual_summary",
    "item_watch",
)

DEFAULT_CRONS = {
    "deploy_check": "0 9 20,27 2 *",
    "monthly_prompt": "0 9 20 3-12 *",
    "escalation": None,  # derived from schedule.report_deadline_day
    "monthly_ranking": "0 10 1 4-12,1 *",
    "midyear_review": "0 16 30 6 *",
    "annual_summary": "0 16 31 12 *",
    "item_watch": "30 8 * * *",  # daily: 督办 items turning yellow or red, overdue items to the admins
}

ENV_OVERRIDES = {
    "DUBAN_WECOM_CORP_ID": ("wecom", "corp_id"),
    "DUBAN_WECOM_SECRET": ("wecom", "secret"),
    "DUBAN_WECOM_TOKEN": ("wecom", "token"),
    "DUBAN_WECOM_ENCODING_AES_KEY": ("wecom", "encoding_aes_key"),
    "DUBAN_WECOM_API_BASE": ("wecom", "api_base"),
    "DUBAN_DATABASE_URL": ("database", "url"),
    "DUBAN_WEB_SESSION_SECRET": ("web", "session_secret"),
    "DUBAN_AIBOT_TOKEN": ("aibot", "token"),
    "DUBAN_AIBOT_ENCODING_AES_KEY": ("aibot", "encoding_aes_key"),
}


def _aes_key(v: str) -> str:
    """An EncodingAESKey (the app's and the smart robot's): 43 characters, or empty."""
    if v and len(v) != 43:
        raise ValueError("must be 43 characters")
    return v


class ConfigError(Exception):
    """A configuration problem; str() is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeComConfig(_Section):
    corp_id: str = ""
    agent_id: int = 1000002
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    timeout_seconds: float = Field(default=10.0, gt=0)
    cards: bool = True  # decisions asked 1:1 come as template cards with buttons (bot/cards.py); false: text
    # Sends to app chats, group robots and response_urls: WeCom has no duplicate check there, so a
    # slow answer is waited for this long (must be below [sender] lease_seconds) rather than sent again.
    group_timeout_seconds: float = Field(default=45.0, gt=0)

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes(cls, v: str) -> str:
        return _aes_key(v)

    def missing(self) -> str | None:
        """The first credential key that is empty although corp_id is set."""
        if self.corp_id:
            for key in ("secret", "token", "encoding_aes_key"):
                if not getattr(self, key):
                    return key
        return None

    @property
    def console_mode(self) -> bool:
        return not self.corp_id


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    callback_path: str = "/wecom/callback"
    # A callback whose (signed) timestamp is further than this from now is a replay: refused.
    max_clock_skew: timedelta = Field(default=timedelta(days=1), gt=timedelta(0))

    @field_validator("callback_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v


class AibotConfig(_Section):
    """WeCom's 智能机器人 (smart robot) in API mode: people @ it in groups or talk to it 1:1."""

    enabled: bool = False
    token: str = ""
    encoding_aes_key: str = ""
    callback_path: str = "/wecom/aibot"

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes(cls, v: str) -> str:
        return _aes_key(v)

    @field_validator("callback_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v

    def missing(self) -> str | None:
        """The first key that is empty although the smart robot is enabled."""
        if self.enabled:
            for key in ("token", "encoding_aes_key"):
                if not getattr(self, key):
                    return key
        return None


class DatabaseConfig(_Section):
    url: str = "sqlite:///duban.db"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if v.startswith("postgres:") or v.startswith("postgresql:"):
            v = "postgresql+psycopg:" + v.split(":", 1)[1]
        return v


class JobConfig(_Section):
    cron: str | None = None
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                CronTrigger.from_crontab(v, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"not a 5-field cron expression: {exc}") from None
        return v


class ScheduleConfig(_Section):
    timezone: str = "Asia/Shanghai"
    report_deadline_day: int = Field(default=25, ge=1, le=28)
    workdays_only: bool = True
    grace_hours: float = Field(default=24, ge=0)
    jobs: dict[str, JobConfig] = Field(default_factory=dict)
    # Days that override chinese-calendar (which knows each year's holidays only once the State
    # Council has announced them): "2027-01-01" or a range "2027-02-06..2027-02-13".
    holidays: list[str] = Field(default_factory=list)
    workdays: list[str] = Field(default_factory=list)

    @field_validator("holidays", "workdays")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        for item in v:
            _expand(item)
        return v

    def days(self, which: str) -> frozenset[date]:
        """The configured holidays or workdays, ranges expanded."""
        return frozenset(d for item in getattr(self, which) for d in _expand(item))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("jobs")
    @classmethod
    def _jobs(cls, v: dict[str, JobConfig]) -> dict[str, JobConfig]:
        for name in v:
            if name not in JOB_NAMES:
                raise ValueError(f"unknown job {name!r} (known: {', '.join(JOB_NAMES)})")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def job(self, name: str) -> JobConfig:
        cfg = self.jobs.get(name) or JobConfig()
        cron = cfg.cron or DEFAULT_CRONS[name] or f"0 17 {self.report_deadline_day} 3-12 *"
        return JobConfig(cron=cron, enabled=cfg.enabled)


def _expand(item: str) -> list[date]:
    """"2027-01-01" or "2027-02-06..2027-02-13" as the dates it names."""
    first, _, last = item.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if last else start
    except ValueError:
        raise ValueError(f"{item!r} is not a date YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start or (end - start).days > 366:
        raise ValueError(f"{item!r}: the range must run forwards, a year at most")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


class OrgConfig(_Section):
    name: str = ""  # the organisation, as the broadcast names it (e.g. XX学院)
    office: str = "效能办"  # who runs the campaign; replies send people there


class BroadcastConfig(_Section):
    chat_id: str = ""
    webhook_key: str = ""


class CampaignConfig(_Section):
    # The campaign's first scored month ("2026-11"): months before it are not ranked, in the trend or
    # in the year's averages. Empty: March of the campaign's year (bot/campaign/years.py).
    first_month: str = ""

    @field_validator("first_month")
    @classmethod
    def _month(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        parts = v.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[1]) <= 12 \
                or not 2000 <= int(parts[0]) <= 2100:
            raise ValueError("must be a month like 2026-03")
        return f"{int(parts[0]):04d}-{int(parts[1]):02d}"


class RankingConfig(_Section):
    weight_report: float = Field(default=40, ge=0)
    weight_progress: float = Field(default=40, ge=0)
    weight_supervision: float = Field(default=20, ge=0)
    overdue_penalty: float = Field(default=5, ge=0)
    # The month's ranking goes first to the admins (预览) and each unit's 负责人, who may 申诉 for
    # this long; 0 publishes at once. auto_publish: published when the window ends unless 暂缓.
    review_hours: float = Field(default=24, ge=0)
    auto_publish: bool = True

    @model_validator(mode="after")
    def _hundred(self) -> "RankingConfig":
        total = self.weight_report + self.weight_progress + self.weight_supervision
        if abs(total - 100) > 1e-9:
            raise ValueError(f"weight_report + weight_progress + weight_supervision must add up to 100, not {total:g}")
        return self


class SenderConfig(_Section):
    concurrency: int = Field(default=8, ge=1, le=64)
    max_attempts: int = Field(default=30, ge=1)  # with the 300 s cap: about two hours of retrying
    webhook_per_minute: int = Field(default=20, ge=1)
    poll_seconds: float = Field(default=1.0, gt=0)
    backoff_seconds: float = Field(default=2.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    rate_limit_retry_seconds: float = Field(default=1.0, gt=0)  # after 45009
    lease_seconds: float = Field(default=60.0, gt=0)  # a claimed message not marked sent by then is retried
    stuck_seconds: float = Field(default=600.0, gt=0)  # no send finished for this long: /healthz answers 503
    # Local time ("HH:MM-HH:MM", may run past midnight; "" for none) when pushes that answer nobody's
    # message (reminders, items issued late, job catch-ups) wait; replies are never held.
    quiet_hours: str = "22:00-07:30"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        if v.strip():
            _quiet_span(v)
        return v.strip()

    def quiet(self) -> tuple[time, time] | None:
        """(start, end) of the quiet hours, or None."""
        return _quiet_span(self.quiet_hours) if self.quiet_hours else None

    def quiet_end(self, now: datetime, tz) -> datetime | None:
        """If `now` is within the quiet hours: when they end (local time); else None."""
        span = self.quiet()
        if span is None:
            return None
        start, end = span
        local = now.astimezone(tz)
        if not ((start <= local.time() < end) if start < end else (local.time() >= start or local.time() < end)):
            return None
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        return until if until > local else until + timedelta(days=1)

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait before trying again after `attempts` tries (a send, a picture's download)."""
        return timedelta(seconds=min(self.backoff_seconds * 2 ** (attempts - 1), self.backoff_max_seconds))


def _quiet_span(text: str) -> tuple[time, time]:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not a span of local time HH:MM-HH:MM") from None
    if start == end:
        raise ValueError(f"{text!r}: start and end must differ")
    return start, end


class SupervisionConfig(_Section):
    # An open 督办 item due within this many workdays turns yellow and its unit is reminded.
    warn_days: int = Field(default=3, ge=0, le=30)


class StorageConfig(_Section):
    """Evidence (pictures and files people send the app): where it is kept and how large it may be."""

    dir: str = ""  # empty: a folder "attachments" beside the SQLite database (else in the working directory)
    max_mb: float = Field(default=20, gt=0)
    max_import_mb: float = Field(default=10, gt=0)  # a roster workbook `duban import` reads

    def path(self, database_url: str) -> Path:
        if self.dir:
            return Path(self.dir)
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        database = url.database if url.get_backend_name() == "sqlite" else None
        base = Path(database).parent if database and database != ":memory:" else Path(".")
        return base / "attachments"

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


class WebConfig(_Section):
    """The app's home page (应用主页) on the same server: pages under {base_url}/web/."""

    enabled: bool = True
    base_url: str = ""  # how people reach this server, e.g. https://duban.example.edu.cn (links, OAuth)
    session_secret: str = ""  # signs the session cookies; empty: a random one per process
    session_hours: float = Field(default=12, gt=0)  # a sign-in lasts this long

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class Config(_Section):
    wecom: WeComConfig = Field(default_factory=WeComConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    org: OrgConfig = Field(default_factory=OrgConfig)
    broadcast: BroadcastConfig = Field(default_factory=BroadcastConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)
    sender: SenderConfig = Field(default_factory=SenderConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)
    aibot: AibotConfig = Field(default_factory=AibotConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @model_validator(mode="after")
    def _paths(self) -> "Config":
        if self.aibot.enabled and self.aibot.callback_path == self.server.callback_path:
            raise ValueError("aibot.callback_path must differ from server.callback_path")
        if self.wecom.group_timeout_seconds >= self.sender.lease_seconds:
            raise ValueError("wecom.group_timeout_seconds must be less than sender.lease_seconds")
        return self


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"config error: {key}: {msg}" if key else f"config error: {msg}"


def load_config(path: str | os.PathLike | None = None, env: dict | None = None) -> Config:
    """Read the TOML file (missing file: embedded defaults), apply env overrides, validate."""
    env = os.environ if env is None else env
    path = Path(path or env.get("DUBAN_CONFIG") or "config.toml")
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config error: {path}: not valid TOML: {exc}") from None
    elif env.get("DUBAN_CONFIG") or path.name != "config.toml":
        raise ConfigError(f"config error: {path}: file not found")
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            data.setdefault(section, {})[key] = env[var]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    missing = config.wecom.missing()
    if missing:
        raise ConfigError(f"config error: wecom.{missing}: required when wecom.corp_id is set")
    missing = config.aibot.missing()
    if missing:
        raise ConfigError(f"config error: aibot.{missing}: required when aibot.enabled is true")
    return config
