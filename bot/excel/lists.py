"""A unit's own lists as a workbook: sent by `清单` (the template's layout, that unit's rows only) and
taken back from its 负责人 (a file in chat, fetched by bot/evidence.py, or an upload on the unit's
page): checked as `duban import` checks (bot/excel/roster.py, for that unit alone) and kept as the
unit's submission waiting for review (bot/campaign/lists.py)."""
from __future__ import annotations

import io
from datetime import datetime

import filetype
from sqlmodel import Session

from bot.campaign import lists
from bot.excel.roster import RosterFileError, import_roster, write_template
from bot.reply import Push, Reply, Target
from db import queries
from db.models import Member, Unit

# The unit's own workbook says, on its headers, what differs from the organisation's template.
NOTES = {
    "任务清单": {"编号": "已有任务的编号请勿修改；新增任务将编号留空，审核通过后自动编号。删除整行即删除该任务（已有汇报的任务不能删除）",
                 "单位名称": "本单位（可留空）"},
    "问题清单": {"编号": "已有问题的编号请勿修改；新增问题将编号留空，审核通过后自动编号",
                 "单位名称": "本单位（可留空）"},
}


def unit_workbook(s: Session, unit_id: int) -> bytes:
    """The unit's 任务清单 (with its 责任领导 and 责任人: the 责任清单) and 问题清单 as stored."""
    unit = s.get(Unit, unit_id)
    tasks = [[t.code, unit.name, t.line, t.content, t.leader_in_charge, t.owner_userid, t.start_date, t.due_date]
             for t in queries.unit_tasks(s, unit_id)]
    problems = [[p.code, unit.name, p.description, p.measure, p.owner_userid, p.deadline]
                for p in queries.unit_problems(s, unit_id)]
    buf = io.BytesIO()
    write_template(buf, {"任务清单": tasks, "问题清单": problems}, NOTES)
    return buf.getvalue()


def is_workbook(data: bytes) -> bool:
    """An .xlsx by its content (the parts inside its zip), whatever its name says."""
    kind = filetype.guess(data)
    return kind is not None and kind.extension == "xlsx"


def take(s: Session, unit: Unit, member: Member, data: bytes, now: datetime, via: str, name: str = "") -> Reply:
    """Check a workbook the unit sent and keep it as its submission. The Reply is the answer to the
    sender (lists_result: the counts, or every error) with the admins' notices as its pushes; nothing
    is kept when the check finds an error."""
    try:
        result = import_roster(s, io.BytesIO(data), now, unit=unit)
    except RosterFileError:
        return Reply("lists_result", {"unit": unit, "problem": "not_workbook"})
    if result.errors:
        return Reply("lists_result", {"unit": unit, "errors": result.errors, "ignored": result.ignored})
    changes = lists.difference(s, unit, result.tasks, result.problems)
    submission, replaced = lists.submit(s, unit, member, changes, now, via, name)
    data = {"unit": unit, "submission": submission, "counts": lists.counts(changes), "replaced": replaced,
            "ignored": result.ignored, "member": member}
    pushes = [Push(Target("app", a.userid), "lists_admin_push", data, markdown=False,
                   key=f"lists{submission.id}:admin:{a.userid}")
              for a in queries.admins(s) if a.userid != member.userid]
    return Reply("lists_result", data, pushes)
