"""Every user-facing text is a Jinja2 template in bot/templates."""
from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from bot.reply import show_target

LIGHTS = {"green": "🟢", "yellow": "🟡", "red": "🔴"}
TIER_COLORS = {"先进": "info", "达标": "comment", "滞后": "warning"}


def _example(text: str, own: dict | None) -> str:
    """A command's example (commands.j2) with the asker's own task code and real unit names
    (queries.example_codes) in place of the sample ones."""
    if not own:
        return text
    if own.get("task"):
        text = re.sub(r"(?<![A-Za-z0-9])T12(?![0-9])", own["task"], text)
    names = {sample: own[key] for sample, key in (("机电工程系", "unit"), ("信息工程系", "unit2")) if own.get(key)}
    if names:
        text = re.sub("|".join(names), lambda m: names[m.group()], text)
    return text


class Renderer:
    def __init__(self, tz: ZoneInfo, **globals_):
        """`globals_`: what every template may name (the app passes `org` and `ranking` from config)."""
        self.tz = tz
        self.env = Environment(
            loader=PackageLoader("bot", "templates"),
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            undefined=StrictUndefined,
            auto_reload=False,  # templates ship with the code; no stat() of the file on every message
        )
        self.env.filters.update(
            light=lambda v: LIGHTS.get(v, v),
            pct=lambda v: f"{v * 100:.0f}%",
            score=lambda v: f"{v:.1f}",
            num=lambda v: f"{v:g}",
            parts=lambda usage: [p.rstrip("%") for p in re.findall(r"<([^<>]+)>", usage)],  # a usage's <parts>
            example=_example,
            md=lambda v: f"{v:%m-%d}" if isinstance(v, (date, datetime)) else str(v),
            localtime=self._localtime,
            tiercolor=lambda v: TIER_COLORS.get(v, "comment"),
            target=lambda row: show_target(row.channel, row.target),  # an outbox row's target, robot keys masked
        )
        self.env.globals.update(globals_)

    def _localtime(self, v: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
        return v.astimezone(self.tz).strftime(fmt) if v else "—"

    def render(self, template: str, /, channel: str = "text", **data) -> str:
        """Render `template`. `channel` (where it is read: "app" 1:1, "appchat" / "webhook" a group,
        "text" a reply) decides how @-mentions are written (robot markdown needs <@userid>;
        elsewhere the person's name is shown) and how a push says to answer (_answer.j2)."""
        at = (lambda m: f"<@{m.userid}>") if channel == "webhook" else (lambda m: f"@{m.name}")
        data.setdefault("in_group", False)  # said in a group (to the smart robot): the reply names the sender
        return self.env.get_template(f"{template}.j2").render(at=at, channel=channel, **data).strip()
