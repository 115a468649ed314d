"""Roster workbook: the empty template, and the all-or-nothing import keyed by 单位名称/账号/编号."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zipfile import BadZipFile

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from openpyxl.utils.exceptions import InvalidFileException
from sqlmodel import Session, select

from db.models import LINES, ROLE_MEMBER, ROLES, Member, Problem, Task, Unit

SHEETS: dict[str, list[str]] = {
    "单位": ["单位名称", "单位类别", "负责人账号", "群聊ID", "群机器人Key"],
    "人员": ["账号", "姓名", "单位名称", "角色"],
    "任务清单": ["编号", "单位名称", "行动", "任务内容", "责任领导", "责任人账号", "开始日期", "完成时限"],
    "问题清单": ["编号", "单位名称", "问题描述", "整改措施", "责任人账号", "整改时限"],
}
OPTIONAL = {"单位类别", "负责人账号", "群聊ID", "群机器人Key", "责任领导", "整改措施", "责任人账号", "整改时限", "角色"}

EXAMPLES = {
    "单位": ["机电工程系", "系（部、院）", "zhangsan", "wrkSFfCgAAxxxx", ""],
    "人员": ["zhangsan", "张三", "机电工程系", "负责人"],
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
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # sheet -> (added, updated)


class RosterFileError(Exception):
    """The file is not a readable .xlsx workbook."""


def write_template(path: str | Path) -> None:
    wb = Workbook()
    wb.remove(wb.active)
    for name, header in SHEETS.items():
        ws = wb.create_sheet(name)
        ws.append(header)
        ws.append(EXAMPLES[name])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for col, title in zip("ABCDEFGH", header):
            ws.column_dimensions[col].width = max(12, len(title) * 3)
    wb.save(path)


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _date(v) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    text = _text(v).replace("/", "-").replace(".", "-")
    if not text:
        return None
    try:
        return date.fromisoformat("-".join(p.zfill(2) for p in text.split("-")))
    except ValueError:
        raise ValueError(text) from None


def _rows(wb, sheet: str, result: ImportResult) -> list[tuple[int, dict]] | None:
    if sheet not in wb.sheetnames:
        return None
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


def import_roster(session: Session, path: str | Path, now: datetime) -> ImportResult:
    """Validate every row first; write only when there is no error (the caller's transaction)."""
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, KeyError, OSError) as exc:
        raise RosterFileError(str(exc)) from None
    result = ImportResult()
    sheets = {name: _rows(wb, name, result) for name in SHEETS}
    wb.close()
    if all(v is None for v in sheets.values()):
        result.errors.append(RowError("", 0, "no_sheets", {"sheets": list(SHEETS)}))
        return result
    err = result.errors.append

    units = {u.name: u for u in session.exec(select(Unit))}
    members = {m.userid: m for m in session.exec(select(Member))}
    file_units: dict[str, tuple[int, dict]] = {}
    for n, v in sheets["单位"] or []:
        name = _text(v.get("单位名称"))
        if not name:
            err(RowError("单位", n, "required", {"column": "单位名称"}))
        elif name in file_units:
            err(RowError("单位", n, "duplicate", {"column": "单位名称", "value": name, "first": file_units[name][0]}))
        elif not (_text(v.get("群聊ID")) or _text(v.get("群机器人Key"))):
            err(RowError("单位", n, "no_target", {"value": name}))
        else:
            file_units[name] = (n, v)
    known_units = set(units) | set(file_units)

    file_members: dict[str, tuple[int, dict]] = {}
    for n, v in sheets["人员"] or []:
        userid, name, unit, role = (_text(v.get(k)) for k in ("账号", "姓名", "单位名称", "角色"))
        role = role or ROLE_MEMBER
        if not userid or not name or not unit:
            err(RowError("人员", n, "required", {"column": "账号" if not userid else "姓名" if not name else "单位名称"}))
        elif userid in file_members:
            err(RowError("人员", n, "duplicate", {"column": "账号", "value": userid, "first": file_members[userid][0]}))
        elif unit not in known_units:
            err(RowError("人员", n, "unknown_unit", {"value": unit}))
        elif role not in ROLES:
            err(RowError("人员", n, "bad_role", {"value": role, "roles": ROLES}))
        else:
            file_members[userid] = (n, {"userid": userid, "name": name, "unit": unit, "role": role})
    known_people = set(members) | set(file_members)

    for n, v in file_units.values():
        leader = _text(v.get("负责人账号"))
        if leader and leader not in known_people:
            err(RowError("单位", n, "unknown_person", {"column": "负责人账号", "value": leader}))

    def coded_row(sheet: str, n: int, v: dict, required: tuple[str, ...], seen: dict[str, int]):
        """Checks the task and problem sheets share: required cells, code, duplicates, unit, owner.
        Returns (code, unit, owner), or None after reporting the row's first error."""
        values = {k: _text(v.get(k)) for k in required}
        missing = next((k for k in required if not values[k]), None)
        if missing:
            err(RowError(sheet, n, "required", {"column": missing}))
            return None
        code, unit, owner = values["编号"].upper(), values["单位名称"], _text(v.get("责任人账号"))
        if not CODE.fullmatch(code):
            err(RowError(sheet, n, "bad_code", {"value": code}))
        elif code in seen:
            err(RowError(sheet, n, "duplicate", {"column": "编号", "value": code, "first": seen[code]}))
        elif unit not in known_units:
            seen[code] = n
            err(RowError(sheet, n, "unknown_unit", {"value": unit}))
        elif owner and owner not in known_people:
            seen[code] = n
            err(RowError(sheet, n, "unknown_person", {"column": "责任人账号", "value": owner}))
        else:
            seen[code] = n
            return code, unit, owner
        return None

    tasks: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    for n, v in sheets["任务清单"] or []:
        row = coded_row("任务清单", n, v, ("编号", "单位名称", "行动", "任务内容"), seen)
        if row is None:
            continue
        code, unit, owner = row
        line, content = _text(v.get("行动")), _text(v.get("任务内容"))
        if line not in LINES:
            err(RowError("任务清单", n, "bad_line", {"value": line, "lines": LINES}))
            continue
        try:
            start, due = _date(v.get("开始日期")), _date(v.get("完成时限"))
        except ValueError as exc:
            err(RowError("任务清单", n, "bad_date", {"value": str(exc)}))
            continue
        if start is None or due is None:
            err(RowError("任务清单", n, "required", {"column": "开始日期" if start is None else "完成时限"}))
            continue
        if due < start:
            err(RowError("任务清单", n, "due_before_start", {"value": str(due)}))
            continue
        tasks.append((n, {"code": code, "unit": unit, "line": line, "content": content, "owner": owner,
                          "leader": _text(v.get("责任领导")), "start": start, "due": due}))

    problems: list[tuple[int, dict]] = []
    seen = {}
    for n, v in sheets["问题清单"] or []:
        row = coded_row("问题清单", n, v, ("编号", "单位名称", "问题描述"), seen)
        if row is None:
            continue
        code, unit, owner = row
        try:
            deadline = _date(v.get("整改时限"))
        except ValueError as exc:
            err(RowError("问题清单", n, "bad_date", {"value": str(exc)}))
            continue
        problems.append((n, {"code": code, "unit": unit, "desc": _text(v.get("问题描述")),
                             "measure": _text(v.get("整改措施")), "owner": owner, "deadline": deadline}))

    if result.errors:
        result.errors.sort(key=lambda e: (list(SHEETS).index(e.sheet) if e.sheet in SHEETS else -1, e.row))
        return result

    # ---- write: units first (without leaders), then people, then leaders, tasks, problems
    def count(sheet: str, added: bool) -> None:
        a, u = result.counts.get(sheet, (0, 0))
        result.counts[sheet] = (a + added, u + (not added))

    for name, (_, v) in file_units.items():
        unit = units.get(name)
        count("单位", unit is None)
        unit = unit or Unit(name=name)
        unit.category = _text(v.get("单位类别"))
        unit.chat_id = _text(v.get("群聊ID"))
        unit.webhook_key = _text(v.get("群机器人Key"))
        session.add(unit)
        units[name] = unit
    session.flush()
    for userid, (_, m) in file_members.items():
        member = members.get(userid)
        count("人员", member is None)
        member = member or Member(userid=userid, name=m["name"], unit_id=units[m["unit"]].id)
        member.name, member.unit_id, member.role = m["name"], units[m["unit"]].id, m["role"]
        session.add(member)
    session.flush()
    for name, (_, v) in file_units.items():
        units[name].leader_userid = _text(v.get("负责人账号"))
        session.add(units[name])
    existing_tasks = {t.code: t for t in session.exec(select(Task))}
    for _, t in tasks:
        task = existing_tasks.get(t["code"])
        count("任务清单", task is None)
        task = task or Task(code=t["code"], unit_id=0, line="", content="", start_date=t["start"], due_date=t["due"])
        task.unit_id, task.line, task.content = units[t["unit"]].id, t["line"], t["content"]
        task.owner_userid, task.leader_in_charge = t["owner"], t["leader"]
        task.start_date, task.due_date = t["start"], t["due"]
        session.add(task)
    existing_problems = {p.code: p for p in session.exec(select(Problem))}
    for _, p in problems:
        problem = existing_problems.get(p["code"])
        count("问题清单", problem is None)
        problem = problem or Problem(code=p["code"], unit_id=0, description="", created_at=now)
        problem.unit_id, problem.description, problem.measure = units[p["unit"]].id, p["desc"], p["measure"]
        problem.owner_userid, problem.deadline = p["owner"], p["deadline"]
        session.add(problem)
    session.flush()
    return result
