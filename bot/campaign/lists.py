"""A unit's lists from its own 负责人 (清单): the difference a checked workbook makes to what is stored,
kept as the unit's submission until an admin says 通过 (applied at once, in the message's
transaction) or 退回 (sent back with an opinion). A later submission replaces a waiting one.

The difference is kept row by row: 新增 (a row without 编号: it gets the next code on 通过), 修改 (the
values before and after), 删除 (a stored row the workbook left out; never a task with reports or a
problem being rectified: the check refuses those). What a row was when the unit sent it is kept too,
so that 通过 refuses a submission whose rows were changed meanwhile (an import, 新增任务, a report on
a task it deletes) instead of overwriting them."""
from __future__ import annotations

import json
from datetime import date, datetime

from sqlmodel import Session

from db import queries
from db.models import (
    LISTS_APPROVED, LISTS_NONE, LISTS_REPLACED, LISTS_RETURNED, LISTS_WAITING, ListSubmission, Member, Problem, Task, Unit,
)

ADDED, CHANGED, DELETED = "新增", "修改", "删除"
OPS = (ADDED, CHANGED, DELETED)
# Each sheet: the model, its code prefix, and (column shown, key of the checked row, attribute).
TASK_FIELDS = (("行动", "line", "line"), ("任务内容", "content", "content"), ("责任领导", "leader", "leader_in_charge"),
               ("责任人", "owner", "owner_userid"), ("开始日期", "start", "start_date"), ("完成时限", "due", "due_date"))
PROBLEM_FIELDS = (("问题描述", "desc", "description"), ("整改措施", "measure", "measure"),
                  ("责任人", "owner", "owner_userid"), ("整改时限", "deadline", "deadline"))
SHEETS = {"任务清单": (Task, "T", TASK_FIELDS), "问题清单": (Problem, "P", PROBLEM_FIELDS)}
DATES = {"start_date", "due_date", "deadline"}


def year_start(now: datetime, tz) -> datetime:
    """The first moment of `now`'s local year: a unit's lists state counts that year's submissions
    only, so February of a new year asks every unit again."""
    local = now.astimezone(tz)
    return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def states(s: Session, now: datetime, tz) -> dict[int, str]:
    """Each unit's lists state this year: 未提交, 待审核, 已退回 or 已通过."""
    found = queries.list_states(s, since=year_start(now, tz))
    return {u.id: found.get(u.id, LISTS_NONE) for u in queries.all_units(s)}


def workbook_name(unit: Unit) -> str:
    """The file name a unit's own workbook is sent under (清单)."""
    return f"{unit.name}-三张清单.xlsx"


def _shown(value) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, date) else str(value)


def _stored(row, fields) -> dict[str, str]:
    return {label: _shown(getattr(row, attr)) for label, _, attr in fields}


def difference(s: Session, unit: Unit, tasks: list[dict], problems: list[dict]) -> dict:
    """What the checked rows (bot/excel/roster.py with `unit`) change in the unit's stored lists:
    {"任务清单": [{"op", "code", "before", "after"}, …], "问题清单": […], "unchanged": {sheet: n}}."""
    changes: dict = {"unchanged": {}}
    for sheet, rows, stored in (("任务清单", tasks, queries.unit_tasks(s, unit.id)),
                                ("问题清单", problems, queries.unit_problems(s, unit.id))):
        _, _, fields = SHEETS[sheet]
        by_code = {r.code: r for r in stored}
        out, same, named = [], 0, set()
        for row in rows:
            after = {label: _shown(row[key]) for label, key, _ in fields}
            if not row["code"]:
                out.append({"op": ADDED, "code": "", "after": after})
                continue
            named.add(row["code"])
            before = _stored(by_code[row["code"]], fields)
            if before == after:
                same += 1
            else:
                out.append({"op": CHANGED, "code": row["code"], "before": before, "after": after})
        out += [{"op": DELETED, "code": r.code, "before": _stored(r, fields)} for r in stored if r.code not in named]
        changes[sheet] = out
        changes["unchanged"][sheet] = same
    return changes


def counts(changes: dict) -> dict[str, dict[str, int]]:
    """{sheet: {新增: n, 修改: n, 删除: n, 未变: n}}."""
    return {sheet: {**{op: sum(c["op"] == op for c in changes[sheet]) for op in OPS},
                    "未变": changes["unchanged"][sheet]} for sheet in SHEETS}


def changes_of(submission: ListSubmission) -> dict:
    return json.loads(submission.changes)


def submit(s: Session, unit: Unit, member: Member, changes: dict, now: datetime, via: str,
           name: str = "") -> tuple[ListSubmission, bool]:
    """Keep the difference as the unit's submission waiting for review; a waiting one is replaced.
    Returns it and whether one was replaced."""
    old = queries.waiting_submission(s, unit.id)
    if old is not None:
        old.status = LISTS_REPLACED
        s.add(old)
        s.flush()
    row = ListSubmission(unit_id=unit.id, userid=member.userid, via=via, name=name[:255], status=LISTS_WAITING,
                         changes=json.dumps(changes, ensure_ascii=False), created_at=now)
    s.add(row)
    s.flush()
    return row, old is not None


def stale(s: Session, submission: ListSubmission) -> list[str]:
    """Codes whose stored row is no longer what the unit's workbook was checked against (changed,
    gone, or, for a task it deletes, reported on since): 通过 must not apply over them."""
    changes = changes_of(submission)
    out = []
    for sheet, (_, _, fields) in SHEETS.items():
        rows = {r.code: r for r in (queries.unit_tasks if sheet == "任务清单" else queries.unit_problems)(
            s, submission.unit_id)}
        for c in changes[sheet]:
            if c["op"] == ADDED:
                continue
            row = rows.get(c["code"])
            if row is None or _stored(row, fields) != c["before"]:
                out.append(c["code"])
            elif c["op"] == DELETED and (queries.task_has_reports(s, row.id) if sheet == "任务清单"
                                         else queries.problem_has_progress(s, row.id)):
                out.append(c["code"])
    return out


def approve(s: Session, submission: ListSubmission, member: Member, now: datetime) -> dict[str, list[str]]:
    """通过: apply the difference (the caller checked `stale` first). Returns the codes by operation
    ({新增: [T9], 修改: [T1], 删除: [T2]}), new rows with the codes they got."""
    changes = changes_of(submission)
    done: dict[str, list[str]] = {op: [] for op in OPS}
    for sheet, (model, prefix, fields) in SHEETS.items():
        rows = {r.code: r for r in (queries.unit_tasks if sheet == "任务清单" else queries.unit_problems)(
            s, submission.unit_id)}
        for c in changes[sheet]:
            if c["op"] == DELETED:
                s.delete(rows[c["code"]])
                s.flush()
                done[DELETED].append(c["code"])
                continue
            values = {attr: _value(attr, c["after"][label]) for label, _, attr in fields}
            if c["op"] == ADDED:
                row = model(code=queries.next_code(s, model, prefix), unit_id=submission.unit_id, **values,
                            **({"created_at": now} if model is Problem else {}))
            else:
                row = rows[c["code"]]
                for attr, value in values.items():
                    setattr(row, attr, value)
            s.add(row)
            s.flush()  # the next new row's code counts this one
            done[c["op"]].append(row.code)
    _review(s, submission, LISTS_APPROVED, member, now, "")
    return done


def send_back(s: Session, submission: ListSubmission, member: Member, now: datetime, opinion: str) -> None:
    """退回: nothing changes; the unit is told the opinion and sends its lists again."""
    _review(s, submission, LISTS_RETURNED, member, now, opinion)


def _review(s: Session, submission: ListSubmission, status: str, member: Member, now: datetime, opinion: str):
    submission.status, submission.reviewed_by, submission.reviewed_at = status, member.userid, now
    submission.opinion = opinion
    s.add(submission)
    s.flush()


def _value(attr: str, text: str):
    if attr in DATES:
        return date.fromisoformat(text) if text else None
    return text
