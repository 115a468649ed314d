"""Roster workbook: the empty template, and the all-or-nothing import keyed by 单位名称/账号/编号."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from datetime import date, datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlmodel import Session, select

from bot.excel.cells import literal_row
from bot.excel.limits import RosterFileError, open_workbook  # noqa: F401 (RosterFileError: callers import it from here)
from bot.text import parse_date_text
from db import queries
from db.models import (
    LINES, PROBLEM_OPEN, ROLE_MEMBER, ROLE_OVERSEER, ROLES, UNIT_CATEGORIES, Member, Problem, Report, Task, Unit,
)

SHEETS: dict[str, list[str]] = {
    "单位": ["单位名称", "单位类别", "负责人账号", "群聊ID", "群机器人Key", "群ID"],
    "人员": ["账号", "姓名", "单位名称", "角色", "分管单位"],
    "任务清单": ["编号", "单位名称", "行动", "任务内容", "责任领导", "责任人账号", "开始日期", "完成时限"],
    "问题清单": ["编号", "单位名称", "问题描述", "整改措施", "责任人账号", "整改时限"],
}
OPTIONAL = {"单位类别", "负责人账号", "群聊ID", "群机器人Key", "群ID", "责任领导", "整改措施", "责任人账号", "整改时限", "角色", "分管单位"}
REQUIRED_SHEETS = ("单位", "人员", "任务清单")  # 问题清单 may be left out
LIST_SHEETS = ("任务清单", "问题清单")  # what a unit sends of its own (import_roster with `unit`)
# What the template says about a column in its header's note (the header text itself stays as is).
NOTES = {
    "单位": {"单位名称": "必填", "单位类别": "从下拉列表选择", "群聊ID": "群聊ID与群机器人Key至少填一项",
             "群机器人Key": "群聊ID与群机器人Key至少填一项", "负责人账号": "须在人员表中",
             "群ID": "可选：智能机器人所在单位群的chatid，填写后可在群里 @争先督办；也可由管理员在群里发送“绑定 单位名称”。"
                     "留空不改变已有绑定"},
    "人员": {"账号": "必填（企业微信账号）", "姓名": "必填", "单位名称": "必填，须在单位表中",
             "角色": "从下拉列表选择，空白为成员",
             "分管单位": "分管领导填写：其分管的单位，多个用、或,分隔（角色可留空）。任务清单的责任领导填写分管领导的"
                         "姓名或账号时，该任务所属单位也归其分管"},
    "任务清单": {"编号": "必填，如 T12", "单位名称": "必填", "行动": "必填，从下拉列表选择", "任务内容": "必填",
                 "开始日期": "必填，YYYY-MM-DD", "完成时限": "必填，YYYY-MM-DD",
                 "责任人账号": "须是本任务所属单位的人员"},
    "问题清单": {"编号": "必填，如 P3", "单位名称": "必填", "问题描述": "必填", "责任人账号": "须是本问题所属单位的人员",
                 "整改时限": "YYYY-MM-DD"},
}
CHOICES = {("单位", "单位类别"): UNIT_CATEGORIES, ("人员", "角色"): ROLES, ("任务清单", "行动"): LINES}

EXAMPLES = {
    "单位": ["机电工程系", "系（部、院）", "zhangsan", "wrkSFfCgAAxxxx", "", ""],
    "人员": ["zhangsan", "张三", "机电工程系", "负责人", ""],
    "任务清单": ["T1", "机电工程系", "敢为争先", "建成智能制造实训中心", "李副校长", "zhangsan", "2026-03-01", "2026-10-31"],
    "问题清单": ["P1", "机电工程系", "实训室消防通道堆放杂物", "一周内清理并张贴警示标识", "zhangsan", "2026-03-15"],
}

CODE = re.compile(r"[A-Za-z]{1,4}\d{1,6}")


@dataclass
class RowError:
    sheet: str
    row: int
    code: str
    data: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    errors: list[RowError] = field(default_factory=list)
    counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # sheet -> (added, updated, unchanged)
    ignored: list[str] = field(default_factory=list)  # sheets the import does not know
    voided: list[tuple[str, int, Any]] = field(default_factory=list)  # (sheet, row, the 作废 task or problem): left as is
    tasks: list[dict] = field(default_factory=list)  # with `unit`: the checked rows, for the difference
    problems: list[dict] = field(default_factory=list)


def write_template(path, rows: dict[str, list[list]] | None = None, notes: dict | None = None) -> None:
    """The sheets and headers, one example row each, drop-down lists for the fixed choices and a
    note on each header saying what it needs ("必填" marks the required ones). With `rows`: only
    those sheets, holding those rows, and `notes` in place of some of the headers' notes (a unit's own
    lists, bot/excel/lists.py). `path`: a file name or a binary stream."""
    wb = Workbook()
    wb.remove(wb.active)
    for name, header in SHEETS.items():
        if rows is not None and name not in rows:
            continue
        ws = wb.create_sheet(name)
        ws.append(literal_row(ws, header))
        for row in rows[name] if rows is not None else [EXAMPLES[name]]:
            ws.append(literal_row(ws, row))
        sheet_notes = {**NOTES[name], **(notes or {}).get(name, {})}
        for col, cell in enumerate(ws[1], start=1):
            letter = get_column_letter(col)
            cell.font = Font(bold=True, color="C00000" if "必填" in sheet_notes.get(cell.value, "") else None)
            if cell.value in sheet_notes:
                cell.comment = Comment(sheet_notes[cell.value], "duban")
            ws.column_dimensions[letter].width = max(12, len(cell.value) * 3)
            choices = CHOICES.get((name, cell.value))
            if choices:
                dv = DataValidation(type="list", formula1='"' + ",".join(choices) + '"', allow_blank=True)
                dv.add(f"{letter}2:{letter}1048576")
                ws.add_data_validation(dv)
    wb.save(path)


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _date(v, today: date) -> date | None:
    """A date cell: a date, or text as chat takes it (2026-03-01 or / ., 2026年3月1日, 3月1日: this year)."""
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    typed = _text(v)
    if not typed:
        return None
    found = parse_date_text(typed, today)
    if found is None:
        raise ValueError(typed)  # the cell as typed, which is what the user looks for
    return found


def _unit_list(cell: str) -> list[str]:
    """分管单位: names separated by 、 , ， ; ； or line breaks; inside brackets a 、 belongs to the name."""
    names, depth, word = [], 0, ""
    for ch in cell:
        depth += (ch in "（(") - (ch in "）)" and depth > 0)
        if depth == 0 and ch in "、,，;；\n":
            names.append(word)
            word = ""
        else:
            word += ch
    names.append(word)
    return list(dict.fromkeys(w.strip() for w in names if w.strip()))


def _rows(wb, sheet: str, result: ImportResult) -> list[tuple[int, dict]]:
    if sheet not in wb.sheetnames:
        if sheet in REQUIRED_SHEETS:
            result.errors.append(RowError(sheet, 0, "missing_sheet"))
        return []
    ws = wb[sheet]
    rows = ws.iter_rows(values_only=True)
    header = [_text(h) for h in next(rows, ())]
    missing = [c for c in SHEETS[sheet] if c not in header and c not in OPTIONAL]
    if missing:
        result.errors.append(RowError(sheet, 1, "missing_columns", {"columns": missing}))
        return []
    index = {name: header.index(name) for name in SHEETS[sheet] if name in header}
    out = []
    for n, row in enumerate(rows, start=2):
        values = {name: (row[i] if i < len(row) else None) for name, i in index.items()}
        if all(_text(v) == "" for v in values.values()):
            continue
        out.append((n, values))
    return out


def _assign(obj, **values) -> bool:
    """Set the attributes that differ; True if any did."""
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def import_roster(session: Session, path: str | Path, now: datetime, move: bool = False,
                  unit: Unit | None = None, max_mb: float = 10) -> ImportResult:
    """Validate every row first, listing every error of each row; write only when there is no error
    (the caller's transaction).

    A task or problem code that exists under another unit is an error unless `move` is given.
    A 责任人 must belong to the unit of the task or problem (whatever their role): a member may
    only report on, or rectify, their own unit's.

    With `unit`: one unit's own lists as its 负责人 sends them (bot/excel/lists.py), checked the same
    way for that unit alone. Only 任务清单 and 问题清单 are read; every row must name that unit; a
    blank 编号 is a new row, a code the unit does not have is an error; a stored task with reports
    (or a problem being rectified) that the file leaves out is an error. Nothing is written:
    result.tasks and result.problems hold the checked rows.

    A file over `max_mb`, over the limits of bot/excel/limits.py, or unreadable: RosterFileError."""
    wb = open_workbook(path, max_mb)
    result = ImportResult()
    wanted = SHEETS if unit is None else LIST_SHEETS
    result.ignored = [name for name in wb.sheetnames if name not in wanted]
    try:
        sheets = {name: _rows(wb, name, result) if name in wanted else [] for name in SHEETS}
        if unit is not None and "问题清单" not in wb.sheetnames:
            result.errors.append(RowError("问题清单", 0, "missing_sheet"))
    finally:
        wb.close()
    if result.errors:  # a missing sheet or column: the rows' own errors would only be noise
        return _sorted(result)
    err = result.errors.append
    today = now.date()

    units = {u.name: u for u in session.exec(select(Unit))}
    unit_names = {u.id: u.name for u in units.values()}
    members = {m.userid: m for m in session.exec(select(Member))}
    file_units: dict[str, tuple[int, dict]] = {}
    groups: dict[str, int] = {}  # 群ID -> the row that gives it (a group belongs to one unit)
    named = set()  # units the file names, good rows or not: people in them are not reported again
    for n, v in sheets["单位"]:
        before = len(result.errors)
        name, category, group = _text(v.get("单位名称")), _text(v.get("单位类别")), _text(v.get("群ID"))
        named.add(name)
        if not name:
            err(RowError("单位", n, "required", {"column": "单位名称"}))
        elif name in file_units:
            err(RowError("单位", n, "duplicate", {"column": "单位名称", "value": name, "first": file_units[name][0]}))
        if not (_text(v.get("群聊ID")) or _text(v.get("群机器人Key")) or _text(v.get("负责人账号"))):
            # a unit's prompts and 督办单 go to its group, else 1:1 to its 负责人: one must be there
            err(RowError("单位", n, "no_target", {"value": name}))
        if category and category not in UNIT_CATEGORIES:
            err(RowError("单位", n, "bad_category", {"value": category, "categories": UNIT_CATEGORIES}))
        if group and group in groups:
            err(RowError("单位", n, "duplicate", {"column": "群ID", "value": group, "first": groups[group]}))
        if len(group) > 64:
            err(RowError("单位", n, "too_long", {"column": "群ID", "max": 64}))
        if len(result.errors) == before:
            if group:
                groups[group] = n
            file_units[name] = (n, v)
    known_units = (set(units) | named) - {""}

    file_members: dict[str, tuple[int, dict]] = {}
    for n, v in sheets["人员"]:
        before = len(result.errors)
        userid, name, unit_name, role = (_text(v.get(k)) for k in ("账号", "姓名", "单位名称", "角色"))
        # 分管单位: None when the sheet has no such column (then what the database holds stays).
        oversee = _unit_list(_text(v.get("分管单位"))) if "分管单位" in v else None
        role = role or (ROLE_OVERSEER if oversee else ROLE_MEMBER)
        unknown = [u for u in oversee or () if u not in known_units]
        for column, value in (("账号", userid), ("姓名", name), ("单位名称", unit_name)):
            if not value:
                err(RowError("人员", n, "required", {"column": column}))
        if userid and userid in file_members:
            err(RowError("人员", n, "duplicate", {"column": "账号", "value": userid, "first": file_members[userid][0]}))
        if unit_name and unit_name not in known_units:
            err(RowError("人员", n, "unknown_unit", {"value": unit_name}))
        if role not in ROLES:
            err(RowError("人员", n, "bad_role", {"value": role, "roles": ROLES}))
        elif oversee and role != ROLE_OVERSEER:
            err(RowError("人员", n, "oversee_role", {"value": role, "role": ROLE_OVERSEER}))
        if unknown:
            err(RowError("人员", n, "unknown_oversee_unit", {"values": unknown}))
        if len(result.errors) == before:
            file_members[userid] = (n, {"userid": userid, "name": name, "unit": unit_name, "role": role,
                                        "oversee": oversee})
    known_people = set(members) | set(file_members)

    def unit_of(userid: str) -> str:
        """The person's unit once this file is imported."""
        return file_members[userid][1]["unit"] if userid in file_members else unit_names[members[userid].unit_id]

    for n, v in file_units.values():
        leader = _text(v.get("负责人账号"))
        if leader and leader not in known_people:
            err(RowError("单位", n, "unknown_person", {"column": "负责人账号", "value": leader}))

    def coded_row(sheet: str, n: int, v: dict, required: tuple[str, ...], seen: dict[str, int], existing: dict):
        """Checks the task and problem sheets share: required cells, code, duplicates, unit, owner.
        Reports every error it finds; returns (code, unit, owner) as the row gives them."""
        values = {k: _text(v.get(k)) for k in required}
        for k in required:
            # a unit's new row has no code yet, and its unit goes without saying
            if not values[k] and not (unit is not None and k in ("编号", "单位名称")):
                err(RowError(sheet, n, "required", {"column": k}))
        code, unit_name, owner = values["编号"].upper(), values["单位名称"], _text(v.get("责任人账号"))
        old = existing.get(code)
        if code and not CODE.fullmatch(code):
            err(RowError(sheet, n, "bad_code", {"value": code}))
        elif code in seen:
            err(RowError(sheet, n, "duplicate", {"column": "编号", "value": code, "first": seen[code]}))
        elif code:
            seen[code] = n
        if unit is not None:  # one unit's own lists
            if unit_name and unit_name != unit.name:
                err(RowError(sheet, n, "not_this_unit", {"value": unit_name, "unit": unit.name}))
            if old is not None and old.unit_id != unit.id:
                err(RowError(sheet, n, "code_other_unit", {"value": code, "unit": unit_names[old.unit_id]}))
            elif code and CODE.fullmatch(code) and old is None:
                err(RowError(sheet, n, "unknown_code", {"value": code}))
            unit_name = unit.name
        elif unit_name and unit_name not in known_units:
            err(RowError(sheet, n, "unknown_unit", {"value": unit_name}))
        elif old is not None and unit_name and unit_names[old.unit_id] != unit_name and not move:
            err(RowError(sheet, n, "moves_unit", {"value": code, "unit": unit_names[old.unit_id], "to": unit_name}))
        if owner and owner not in known_people:
            err(RowError(sheet, n, "unknown_person", {"column": "责任人账号", "value": owner}))
        elif owner and unit_name in known_units and unit_of(owner) != unit_name:
            err(RowError(sheet, n, "owner_other_unit", {"value": owner, "unit": unit_of(owner), "to": unit_name}))
        return code, unit_name, owner

    def day(sheet: str, n: int, v: dict, column: str) -> date | None:
        try:
            return _date(v.get(column), today)
        except ValueError as exc:
            err(RowError(sheet, n, "bad_date", {"column": column, "value": str(exc)}))
            return None

    # A 责任领导 naming a 分管领导 puts the task's unit under them: a name two of them share must be an account.
    people = {m.userid: (m.name, m.role) for m in members.values()}
    people.update({userid: (x["name"], x["role"]) for userid, (_, x) in file_members.items()})
    overseers: dict[str, set[str]] = {}  # name -> the 分管领导 of that name, once this file is imported
    for userid, (name, role) in people.items():
        if role == ROLE_OVERSEER:
            overseers.setdefault(name, set()).add(userid)
    overseer_ids = {u for ids in overseers.values() for u in ids}

    existing_tasks = {t.code: t for t in queries.year_tasks(session)}  # the current campaign year's
    tasks: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    for n, v in sheets["任务清单"]:
        before = len(result.errors)
        code, unit_name, owner = coded_row("任务清单", n, v, ("编号", "单位名称", "行动", "任务内容"), seen,
                                           existing_tasks)
        line, content = _text(v.get("行动")), _text(v.get("任务内容"))
        if line and line not in LINES:
            err(RowError("任务清单", n, "bad_line", {"value": line, "lines": LINES}))
        start, due = (day("任务清单", n, v, c) for c in ("开始日期", "完成时限"))
        for column in ("开始日期", "完成时限"):
            if not _text(v.get(column)):
                err(RowError("任务清单", n, "required", {"column": column}))
        if start and due and due < start:
            err(RowError("任务清单", n, "due_before_start", {"value": str(due)}))
        leader = _text(v.get("责任领导"))
        shared = next((w for w in queries.leader_names(leader)
                       if w not in overseer_ids and len(overseers.get(w, ())) > 1), None)
        if shared:
            err(RowError("任务清单", n, "leader_ambiguous", {"value": shared, "people": sorted(overseers[shared])}))
        if len(result.errors) == before:
            tasks.append((n, {"code": code, "unit": unit_name, "line": line, "content": content, "owner": owner,
                              "leader": leader, "start": start, "due": due}))

    existing_problems = {p.code: p for p in queries.all_problems(session)}
    problems: list[tuple[int, dict]] = []
    seen_problems: dict[str, int] = {}
    for n, v in sheets["问题清单"]:
        before = len(result.errors)
        code, unit_name, owner = coded_row("问题清单", n, v, ("编号", "单位名称", "问题描述"), seen_problems,
                                           existing_problems)
        deadline = day("问题清单", n, v, "整改时限")
        if len(result.errors) == before:
            problems.append((n, {"code": code, "unit": unit_name, "desc": _text(v.get("问题描述")),
                                 "measure": _text(v.get("整改措施")), "owner": owner, "deadline": deadline}))

    # A person moved to another unit must not stay 责任人 of tasks or problems this file leaves where they are.
    for userid, (n, m) in file_members.items():
        if userid not in members or unit_names[members[userid].unit_id] == m["unit"]:
            continue
        left = [x.code for kind, seen_codes in ((existing_tasks, seen), (existing_problems, seen_problems))
                for x in kind.values()
                if x.owner_userid == userid and x.code not in seen_codes and unit_names[x.unit_id] != m["unit"]]
        if left:
            err(RowError("人员", n, "owns_elsewhere", {"value": userid, "codes": left, "to": m["unit"]}))

    if unit is not None:
        # What the unit's file leaves out is deleted on 通过; never a task with reports, nor a problem
        # already being rectified: those are named, not silently dropped.
        reported = set(session.exec(select(Report.task_id).where(Report.unit_id == unit.id)))
        for t in existing_tasks.values():
            if t.unit_id == unit.id and t.code not in seen and t.id in reported:
                err(RowError("任务清单", 0, "reported_dropped", {"value": t.code}))
        for p in existing_problems.values():
            if p.unit_id == unit.id and p.code not in seen_problems and p.status != PROBLEM_OPEN:
                err(RowError("问题清单", 0, "problem_dropped", {"value": p.code, "status": p.status}))
        result.tasks, result.problems = [t for _, t in tasks], [p for _, p in problems]
        return _sorted(result)

    if result.errors:
        return _sorted(result)

    # ---- write: units first (without leaders), then people, then leaders, tasks, problems
    def count(sheet: str, added: bool, changed: bool) -> None:
        a, u, k = result.counts.get(sheet, (0, 0, 0))
        result.counts[sheet] = (a + added, u + (changed and not added), k + (not changed and not added))

    unit_changed: dict[str, bool] = {}
    new_units = set(file_units) - set(units)
    for name, (_, v) in file_units.items():
        unit = units.get(name)
        unit_changed[name] = unit is None
        unit = unit or Unit(name=name)
        unit_changed[name] |= _assign(unit, category=_text(v.get("单位类别")), chat_id=_text(v.get("群聊ID")),
                                      webhook_key=_text(v.get("群机器人Key")))
        session.add(unit)
        units[name] = unit
    session.flush()
    changed_people: dict[str, bool] = {}
    moved: set[str] = set()
    for userid, (_, m) in file_members.items():
        member = members.get(userid)
        added = member is None
        member = member or Member(userid=userid, name=m["name"], unit_id=units[m["unit"]].id)
        before = (member.role, member.unit_id)
        changed_people[userid] = _assign(member, name=m["name"], unit_id=units[m["unit"]].id, role=m["role"])
        if not added and (member.role, member.unit_id) != before:
            moved.add(userid)
        session.add(member)
    queries.end_web_sessions(session, moved)  # signed in with the old role or unit: sign in again
    session.flush()
    oversight = queries.leader_units(session)
    for userid, (_, m) in file_members.items():
        before = oversight.get(userid, set())
        after = set() if m["role"] != ROLE_OVERSEER else before if m["oversee"] is None \
            else {units[name].id for name in m["oversee"]}
        if after != before:
            queries.set_leader_units(session, userid, after)
            changed_people[userid] = True
        count("人员", userid not in members, changed_people[userid])
    for name, (_, v) in file_units.items():
        unit_changed[name] |= _assign(units[name], leader_userid=_text(v.get("负责人账号")))
        group = _text(v.get("群ID"))  # empty or no such column: the binding stays as it is
        if group and units[name].aibot_chatid != group:
            queries.bind_group(session, units[name], group)
            unit_changed[name] = True
        count("单位", name in new_units, unit_changed[name])
        session.add(units[name])
    for n, t in tasks:
        task = existing_tasks.get(t["code"])
        if task is not None and task.voided_at is not None:  # 作废 stays 作废: the result names it
            result.voided.append(("任务清单", n, task))
            continue
        added = task is None
        task = task or Task(code=t["code"], unit_id=0, line="", content="", start_date=t["start"], due_date=t["due"])
        count("任务清单", added, _assign(
            task, unit_id=units[t["unit"]].id, line=t["line"], content=t["content"], owner_userid=t["owner"],
            leader_in_charge=t["leader"], start_date=t["start"], due_date=t["due"]))
        session.add(task)
    for n, p in problems:
        problem = existing_problems.get(p["code"])
        if problem is not None and problem.voided_at is not None:
            result.voided.append(("问题清单", n, problem))
            continue
        added = problem is None
        problem = problem or Problem(code=p["code"], unit_id=0, description="", created_at=now)
        count("问题清单", added, _assign(
            problem, unit_id=units[p["unit"]].id, description=p["desc"], measure=p["measure"],
            owner_userid=p["owner"], deadline=p["deadline"]))
        session.add(problem)
    session.flush()
    result.counts = {sheet: result.counts[sheet] for sheet in SHEETS if sheet in result.counts}
    return result


def _sorted(result: ImportResult) -> ImportResult:
    result.errors.sort(key=lambda e: (list(SHEETS).index(e.sheet), e.row))
    return result
