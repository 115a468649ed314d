"""Helpers shared by handlers: argument parsing that fails with a clear Chinese reply."""
from __future__ import annotations

from datetime import date

from bot.clock import Month
from bot.reply import UserError
from bot.text import parse_code, parse_percent, split_args
from db import queries
from db.models import ROLE_ADMIN, Member, Problem, SupervisionItem, Task
from sqlmodel import Session


def fail(command: str, problem: str, **data) -> UserError:
    """A wrong form: the reply names the problem and shows the right form of `command`."""
    return UserError("error", command=command, problem=problem, **data)


def need_args(command: str, args: str, count: int, content: bool = True) -> tuple[list[str], str]:
    tokens, rest = split_args(args, count)
    if len(tokens) < count or (content and not rest):
        raise fail(command, "missing_args")
    return tokens, rest


def task_by_code(s: Session, command: str, token: str, member: Member) -> Task:
    code = parse_code(token, "T")
    task = queries.get_task(s, code) if code else None
    if task is None:
        raise fail(command, "task_not_found", code=token)
    if member.role != ROLE_ADMIN and task.unit_id != member.unit_id:
        raise fail(command, "task_not_yours", code=task.code)
    return task


def percent(command: str, token: str) -> int:
    value = parse_percent(token)
    if value is None:
        raise fail(command, "bad_percent", value=token)
    return value


def problem_by_code(s: Session, command: str, token: str, member: Member) -> Problem:
    code = parse_code(token, "P")
    problem = queries.get_problem(s, code) if code else None
    if problem is None:
        raise fail(command, "problem_not_found", code=token)
    if member.role != ROLE_ADMIN and problem.unit_id != member.unit_id:
        raise fail(command, "problem_not_yours", code=problem.code)
    return problem


def item_by_code(s: Session, command: str, token: str, member: Member) -> SupervisionItem:
    code = parse_code(token, "D")
    item = queries.get_item(s, code) if code else None
    if item is None:
        raise fail(command, "item_not_found", code=token)
    if member.role != ROLE_ADMIN and item.unit_id != member.unit_id:
        raise fail(command, "item_not_yours", code=item.code)
    return item


def parse_date(command: str, token: str) -> date:
    text = token.strip().replace("/", "-").replace(".", "-")
    try:
        y, m, d = (int(x) for x in text.split("-"))
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
