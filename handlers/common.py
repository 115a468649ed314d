"""Helpers shared by handlers: argument parsing that fails with a clear Chinese reply."""
from __future__ import annotations

from datetime import date

from sqlmodel import Session

from bot.reply import UserError
from bot.text import parse_code, parse_date_text, parse_month_text, parse_percent, split_args
from db import queries
from db.models import ROLE_ADMIN, ROLE_OVERSEER, Highlight, Member, Problem, Unit
from db.month import Month
from db.queries import TaskRow


# The problems that are the form's: their reply shows the right form of the command, with an example.
FORMAT_ERRORS = frozenset({"missing_args", "unknown_field", "bad_percent", "bad_date", "bad_month", "bad_line",
                           "need_code", "bad_attach_code", "title_too_long", "unit_not_found", "deadline_past",
                           "due_before_start"})


def fail(command: str, problem: str, **data) -> UserError:
    """A request refused: the reply names the problem; a wrong form (FORMAT_ERRORS) also shows the
    right form of `command`, with an example in the asker's own codes."""
    return UserError("error", command=command, problem=problem, show_form=problem in FORMAT_ERRORS, **data)


def need_args(command: str, args: str, count: int, content: bool = True, first: int = 0) -> tuple[list[str], str]:
    """`count` leading tokens and (if `content`) the rest. Missing parts are named from the command's
    usage (<任务编号> <进度%> <内容>): `first` is the usage's part the first token stands for."""
    tokens, rest = split_args(args, count)
    if len(tokens) < count or (content and not rest):
        raise fail(command, "missing_args", have=first + len(tokens), upto=None if content else first + count)
    return tokens, rest


def _owned(s: Session, command: str, token: str, member: Member, prefix: str, lookup, kind: str,
           also: set[int] = frozenset()):
    """The task / problem / 督办 a code names, if it belongs to the member's unit or to one of `also`
    (a 分管领导's units, to look at); admins: any."""
    code = parse_code(token, prefix)
    found = lookup(s, code) if code else None
    if found is None:
        raise fail(command, f"{kind}_not_found", code=token, past=queries.past_year_of(s, code) if code else None)
    refuse_voided(command, found)
    if member.role != ROLE_ADMIN and found.unit_id != member.unit_id and found.unit_id not in also:
        raise fail(command, f"{kind}_not_yours", code=found.code, overseer=member.role == ROLE_OVERSEER)
    return found


def refuse_voided(command: str, found) -> None:
    """A task, problem, 督办 item or 亮点 that was 作废 (or withdrawn) is kept but no longer acted on."""
    if found.voided_at is not None:
        raise fail(command, "voided", code=found.code, row=found)


def task_by_code(s: Session, command: str, token: str, member: Member, also: set[int] = frozenset()) -> TaskRow:
    """`also`: other units whose tasks may be looked at."""
    return _owned(s, command, token, member, "T", queries.get_task, "task", also)


def task_to_report(s: Session, command: str, token: str, member: Member, month: Month):
    """The task a 汇报 / 修改 names, with its unit's count still to report (queries.task_to_report)."""
    return _owned(s, command, token, member, "T", lambda s, code: queries.task_to_report(s, code, month), "task")


def units_in_view(s: Session, command: str, member: Member, unit: Unit) -> list[Unit] | None:
    """The units a person looks across with 状态, 未报 and 排名: None for an admin (every unit), a
    分管领导's units (db/queries/people.py oversight; none: they are told where units come from), a
    负责人's own unit."""
    if member.role == ROLE_ADMIN:
        return None
    if member.role != ROLE_OVERSEER:
        return [unit]
    ids = queries.overseen_units(s, member)
    if not ids:
        raise UserError("no_units", command=command, member=member)
    return [u for u in queries.all_units(s) if u.id in ids]


def problem_by_code(s: Session, command: str, token: str, member: Member) -> Problem:
    return _owned(s, command, token, member, "P", queries.get_problem, "problem")


def highlight_by_code(s: Session, command: str, token: str, member: Member) -> Highlight:
    return _owned(s, command, token, member, "L", queries.get_highlight, "highlight")


def percent(command: str, token: str) -> int:
    value = parse_percent(token)
    if value is None:
        raise fail(command, "bad_percent", value=token)
    return value


def parse_date(command: str, token: str, today: date) -> date:
    """2026-03-28 (or / .), 2026年3月28日, 3月28日, 3.28 (no year: today's), in the years 2000-2100."""
    found = parse_date_text(token, today)
    if found is None:
        raise fail(command, "bad_date", value=token)
    return found


def parse_month(command: str, token: str, default: Month) -> Month:
    """2026-03 (or / .), 2026年3月, 3月 (in the default's year); nothing: the default."""
    if not token.strip():
        return default
    found = parse_month_text(token, default.year)
    if found is None:
        raise fail(command, "bad_month", value=token.strip())
    return found
