"""Helpers shared by handlers: argument parsing that fails with a clear Chinese reply."""
from __future__ import annotations

from datetime import date

from sqlmodel import Session

from bot.reply import UserError
from bot.text import parse_code, parse_percent, split_args
from db import queries
from db.models import ROLE_ADMIN, Member, Problem, SupervisionItem
from db.month import Month
from db.queries import TaskRow


def fail(command: str, problem: str, **data) -> UserError:
    """A wrong form: the reply names the problem and shows the right form of `command`."""
    return UserError("error", command=command, problem=problem, **data)


def need_args(command: str, args: str, count: int, content: bool = True) -> tuple[list[str], str]:
    tokens, rest = split_args(args, count)
    if len(tokens) < count or (content and not rest):
        raise fail(command, "missing_args")
    return tokens, rest


def _owned(s: Session, command: str, token: str, member: Member, prefix: str, lookup, kind: str):
    """The task / problem / 督办 a code names, if it belongs to the member's unit (admins: any)."""
    code = parse_code(token, prefix)
    found = lookup(s, code) if code else None
    if found is None:
        raise fail(command, f"{kind}_not_found", code=token)
    if member.role != ROLE_ADMIN and found.unit_id != member.unit_id:
        raise fail(command, f"{kind}_not_yours", code=found.code)
    return found


def task_by_code(s: Session, command: str, token: str, member: Member, lock: bool = False) -> TaskRow:
    """`lock`: to report on it (queries.get_task)."""
    return _owned(s, command, token, member, "T", lambda s, code: queries.get_task(s, code, lock), "task")


def problem_by_code(s: Session, command: str, token: str, member: Member) -> Problem:
    return _owned(s, command, token, member, "P", queries.get_problem, "problem")


def item_by_code(s: Session, command: str, token: str, member: Member) -> SupervisionItem:
    return _owned(s, command, token, member, "D", queries.get_item, "item")


def percent(command: str, token: str) -> int:
    value = parse_percent(token)
    if value is None:
        raise fail(command, "bad_percent", value=token)
    return value


def parse_date(command: str, token: str) -> date:
    """YYYY-MM-DD (or with / or .), in the campaign's years 2000-2100."""
    text = token.strip().replace("/", "-").replace(".", "-")
    try:
        y, m, d = (int(x) for x in text.split("-"))
        if not 2000 <= y <= 2100:
            raise ValueError(token)
        return date(y, m, d)
    except ValueError:
        raise fail(command, "bad_date", value=token) from None


def parse_month(command: str, token: str, default: Month) -> Month:
    token = token.strip().replace("/", "-").replace(".", "-")
    if not token:
        return default
    try:
        return Month.parse(token)
    except ValueError:
        raise fail(command, "bad_month", value=token) from None
