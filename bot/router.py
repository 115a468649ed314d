"""Routers group commands; the Dispatcher matches the first word and injects what a handler asks for.

A handler is a plain function. Its parameters are filled by name from the Context
(`session`, `member`, `unit`, `now`, `tz`, `config`, `args`, `ctx`, ...), aiogram-style,
so a handler declares its dependencies instead of reading globals.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from sqlmodel import Session

from bot.config import Config
from bot.reply import Push, Reply, Target, UserError
from bot.text import command_rest, normalize, normalize_map
from db.models import ROLE_ADMIN, ROLE_LEADER, ROLE_OVERSEER, ROLES
from db.models import Member, Unit

EVERYONE = frozenset(ROLES)
LEADERS = frozenset({ROLE_LEADER, ROLE_ADMIN})  # a unit's 负责人 (and admins): 销号, 申诉
OVERSIGHT = frozenset({ROLE_OVERSEER, ROLE_ADMIN})  # across units: admins all, a 分管领导 theirs (未报, 排名)
HEADS = frozenset({ROLE_LEADER, ROLE_OVERSEER, ROLE_ADMIN})  # 状态: also a 负责人, of their own unit
ADMINS = frozenset({ROLE_ADMIN})

# What a command does when it is said in a group (to the smart robot), where everyone reads the answer:
IN_GROUP_REPLY = "reply"  # answered in the group
IN_GROUP_PRIVATE = "private"  # the answer goes to the sender 1:1; the group gets a short note
IN_GROUP_REFUSE = "refuse"  # not done; the sender is asked to say it 1:1 (请私聊)
IN_GROUP_ONLY = "only"  # only makes sense in a group (绑定)


@dataclass
class Context:
    session: Session
    member: Member  # who sent the message
    unit: Unit
    now: datetime
    config: Config
    msg_id: str = ""
    args: str = ""
    chat: str = ""  # the group the message was said in (smart robot chatid); "" in a 1:1 chat
    media: tuple[str, str] | None = None  # a picture or file message instead of text: (kind, WeCom media_id)

    @property
    def in_group(self) -> bool:
        return bool(self.chat)

    @property
    def tz(self) -> ZoneInfo:
        return self.config.schedule.tz


@dataclass(eq=False)
class Command:
    names: tuple[str, ...]
    func: Callable[..., Reply]
    roles: frozenset[str]
    group: str
    params: tuple[str, ...] = field(default=())
    in_group: str = IN_GROUP_REPLY
    ahead: Callable[[Session, list[str], datetime, Config], None] | None = None  # (Dispatcher.read_ahead)

    def allowed(self, member: Member) -> bool:
        return member.role in self.roles

    def __call__(self, ctx: Context) -> Reply:
        kwargs = {}
        for name in self.params:
            kwargs[name] = ctx if name == "ctx" else getattr(ctx, name)
        return self.func(**kwargs)


class Router:
    """A family of commands, e.g. everything about tasks. Register with @router.command(...)."""

    def __init__(self, name: str):
        self.name = name
        self.commands: list[Command] = []

    def command(self, *names: str, roles: frozenset[str] = EVERYONE, in_group: str = IN_GROUP_REPLY,
                ahead: Callable | None = None):
        """Register a handler for these command words (usage text lives in templates/commands.j2).
        `in_group`: what it does when said in a group (IN_GROUP_*); `ahead`: Dispatcher.read_ahead."""

        def register(func: Callable[..., Reply]) -> Callable[..., Reply]:
            params = tuple(inspect.signature(func).parameters)
            unknown = [p for p in params if p != "ctx" and not hasattr(Context, p)
                       and p not in Context.__dataclass_fields__]
            if unknown:
                raise TypeError(f"{func.__name__}: cannot inject {unknown}")
            self.commands.append(Command(names, func, roles, self.name, params, in_group, ahead))
            return func

        return register


class Dispatcher:
    def __init__(self, routers: list[Router]):
        self.commands: list[Command] = [c for r in routers for c in r.commands]
        words: list[tuple[str, Command]] = []
        for cmd in self.commands:
            for name in cmd.names:
                words.append((name.lower(), cmd))
        # Longest first, so 我的任务 wins over 任务 and 汇报T12 still finds 汇报; an ASCII word must
        # not run on into letters or digits ("tasks" must not match "taskservice").
        words.sort(key=lambda w: -len(w[0]))
        self._by_word = dict(words)
        self._words = re.compile("|".join(
            re.escape(word) + ("(?![a-z0-9])" if word.isascii() else "") for word, _ in words))

    def match(self, text: str) -> tuple[Command | None, str]:
        """The command for the first word, and the rest of the message as the user typed it."""
        norm, index = normalize_map(text)
        start = len(norm) - len(norm.lstrip(" \t\n/#"))
        found = self._words.match(norm[start:].lower())
        if found:  # the rest, without a mark people put after the word (申诉：…, 问题，…)
            rest = start + found.end()
            rest += len(norm[rest:]) - len(norm[rest:].lstrip(" \t\n:,;、"))
            return self._by_word[found.group()], command_rest(text, rest, index).strip()
        return None, normalize(text)

    def read_ahead(self, s: Session, texts: list[str], now: datetime, config: Config) -> None:
        """A batch's messages of a command with `ahead` get what they will read in one query for
        them all (a 汇报 its task), instead of one a message."""
        wanted: dict[Command, list[str]] = {}
        for text in texts:
            cmd, args = self.match(text)
            if cmd is not None and cmd.ahead is not None:
                wanted.setdefault(cmd, []).append(args)
        for cmd, args in wanted.items():
            cmd.ahead(s, args, now, config)

    def dispatch(self, ctx: Context, text: str) -> Reply:
        cmd, args = self.match(text)
        if cmd is None:
            raise UserError("unknown_command", text=text[:20], names=[c.names[0] for c in self.visible(ctx.member)])
        if not cmd.allowed(ctx.member):
            raise UserError("not_allowed", command=cmd.names[0], member=ctx.member,
                            roles=[r for r in ROLES if r in cmd.roles])
        if ctx.in_group and cmd.in_group == IN_GROUP_REFUSE:
            raise UserError("group_refused", command=cmd.names[0], sender=ctx.member)
        if not ctx.in_group and cmd.in_group == IN_GROUP_ONLY:
            raise UserError("group_only", command=cmd.names[0])
        ctx.args = args
        reply = cmd(ctx)
        if ctx.in_group and cmd.in_group == IN_GROUP_PRIVATE:
            # The whole answer goes to the sender 1:1 (plain text, as it would have been read there).
            private = Push(Target("app", ctx.member.userid), reply.template, reply.data, markdown=False, key="private")
            return Reply("group_moved", {"command": cmd.names[0]}, [private, *reply.pushes])
        return reply

    def visible(self, member: Member) -> list[Command]:
        return [c for c in self.commands if c.allowed(member)]
