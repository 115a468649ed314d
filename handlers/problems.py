"""问题 / 整改 / 销号 / 确认销号 (and 退回 P…): the unit's problem list (问题清单).

    问题 (登记) -> 整改 (one or more notes) -> 销号 by the 负责人, with what was done -> 确认销号 by an admin
                                                                      -> 退回 by an admin: back to 整改中"""

from bot import targets
from bot.reply import Button, Card, Push, Reply, Target
from bot.router import ADMINS, IN_GROUP_REFUSE, LEADERS, Context, Router
from bot.text import blank, field_pattern, labelled_fields
from db import queries
from db.models import (
    PROBLEM_ASKED, PROBLEM_CLOSED, PROBLEM_RECTIFYING, PROGRESS_ASK, PROGRESS_CONFIRM, PROGRESS_RETURN, ROLE_ADMIN,
    Problem, Unit,
)
from handlers.common import fail, need_args, parse_date, problem_by_code

router = Router("problems")

# 措施=… 时限=… after the description (措施：…，时限：… too); a value runs to the next field.
_FIELDS = field_pattern(["整改措施", "措施", "整改时限", "时限"])


def _fields(text: str) -> tuple[str, dict[str, str]]:
    """The description (as typed) and the fields that follow it (整改措施 is 措施)."""
    description, fields, unknown = labelled_fields(text, _FIELDS)
    if unknown:
        raise fail("问题", "unknown_field", label=unknown[0], labels=["措施", "时限"])
    return description, {key[-2:]: value for key, value in fields.items()}


@router.command("问题", "problem")
def problem(ctx: Context) -> Reply:
    text = ctx.args.strip()
    if blank(text):
        return _list(ctx)
    description, fields = _fields(text)
    if blank(description):
        raise fail("问题", "missing_args")
    deadline = None
    if fields.get("时限"):
        deadline = parse_date("问题", fields["时限"], ctx.now.astimezone(ctx.tz).date())
    s = ctx.session
    row = Problem(code=queries.next_code(s, Problem, "P"), unit_id=ctx.unit.id, description=description,
                  measure=fields.get("措施", ""), owner_userid=ctx.member.userid, deadline=deadline, created_at=ctx.now)
    s.add(row)
    s.flush()
    return Reply("problem_ok", {"problem": row, "unit": ctx.unit})


def _list(ctx: Context) -> Reply:
    """The unit's problems (admins: every unit's not yet closed), each with its last note."""
    s = ctx.session
    if ctx.member.role == ROLE_ADMIN:
        problems = [p for p in queries.all_problems(s) if p.status != PROBLEM_CLOSED]
    else:
        problems = queries.unit_problems(s, ctx.unit.id)
    notes = {}
    for note in queries.progress_of(s, [p.id for p in problems]):
        notes[note.problem_id] = note  # the last one wins
    units = {u.id: u for u in queries.all_units(s)}
    today = ctx.now.astimezone(ctx.tz).date()
    return Reply("problems_list", {"problems": problems, "notes": notes, "units": units, "today": today,
                                   "unit": None if ctx.member.role == ROLE_ADMIN else ctx.unit})


@router.command("整改", "rectify")
def rectify(ctx: Context) -> Reply:
    (code,), text = need_args("整改", ctx.args, 1)
    row = problem_by_code(ctx.session, "整改", code, ctx.member)
    if row.status == PROBLEM_CLOSED:
        raise fail("整改", "problem_closed", code=row.code)
    queries.add_problem_progress(ctx.session, row, ctx.member.userid, text, ctx.now)
    if row.status != PROBLEM_ASKED:
        row.status = PROBLEM_RECTIFYING
    ctx.session.add(row)
    return Reply("rectify_ok", {"problem": row, "text": text})


@router.command("销号", "close", roles=LEADERS)
def close(ctx: Context) -> Reply:
    """The 负责人 asks for closing with what was done; an admin confirms or sends it back."""
    (code,), text = need_args("销号", ctx.args, 1)
    row = problem_by_code(ctx.session, "销号", code, ctx.member)
    if row.status == PROBLEM_CLOSED:
        raise fail("销号", "problem_closed", code=row.code)
    if row.status == PROBLEM_ASKED:
        raise fail("销号", "problem_asked", code=row.code)
    queries.add_problem_progress(ctx.session, row, ctx.member.userid, text, ctx.now, PROGRESS_ASK)
    row.status = PROBLEM_ASKED
    ctx.session.add(row)
    unit = ctx.session.get(Unit, row.unit_id)
    data = {"problem": row, "unit": unit, "member": ctx.member, "text": text}
    card = Card("card_problem_close", f"{row.code}:close",
                [Button("确认销号", f"确认销号 {row.code}"), Button("退回", f"退回 {row.code}", "退回意见")])
    pushes = [Push(Target("app", a.userid), "problem_admin_push", data, markdown=False, key=f"admin:{a.userid}",
                   card=card)
              for a in queries.admins(ctx.session) if a.userid != ctx.member.userid]
    return Reply("close_ok", {"problem": row, "kind": "asked", "notified": _where(ctx, pushes)}, pushes)


@router.command("确认销号", "confirmclose", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def confirm(ctx: Context) -> Reply:
    (code,), remark = need_args("确认销号", ctx.args, 1, content=False)
    row = problem_by_code(ctx.session, "确认销号", code, ctx.member)
    if row.status == PROBLEM_CLOSED:
        raise fail("确认销号", "problem_closed", code=row.code)
    if row.status != PROBLEM_ASKED:
        raise fail("确认销号", "problem_not_asked", code=row.code)
    queries.add_problem_progress(ctx.session, row, ctx.member.userid, remark, ctx.now, PROGRESS_CONFIRM)
    row.status, row.closed_at = PROBLEM_CLOSED, ctx.now
    ctx.session.add(row)
    pushes = _to_unit(ctx, row, "closed", remark)
    return Reply("close_ok", {"problem": row, "kind": "closed", "notified": _where(ctx, pushes)}, pushes,
                 settles=[(f"{row.code}:close", {"kind": "确认销号"})])


def send_back(ctx: Context, code: str, remark: str) -> Reply:
    """退回 P3 <意见> (the 退回 command also serves 督办 items: handlers/supervision.py)."""
    row = problem_by_code(ctx.session, "退回", code, ctx.member)
    if row.status == PROBLEM_CLOSED:
        raise fail("退回", "problem_closed", code=row.code)
    if row.status != PROBLEM_ASKED:
        raise fail("退回", "problem_not_asked", code=row.code)
    queries.add_problem_progress(ctx.session, row, ctx.member.userid, remark, ctx.now, PROGRESS_RETURN)
    row.status = PROBLEM_RECTIFYING
    ctx.session.add(row)
    pushes = _to_unit(ctx, row, "returned", remark)
    return Reply("close_ok", {"problem": row, "kind": "returned", "notified": _where(ctx, pushes)}, pushes,
                 settles=[(f"{row.code}:close", {"kind": "退回"})])


def _where(ctx: Context, pushes: list[Push]) -> list[targets.Place]:
    return targets.places(ctx.session, ctx.config, pushes)


def _to_unit(ctx: Context, row: Problem, kind: str, remark: str) -> list[Push]:
    """To the 负责人 who asked (else the unit's 负责人), 1:1."""
    unit = ctx.session.get(Unit, row.unit_id)
    asked = queries.last_close_request(ctx.session, row.id)
    userid = asked.userid if asked else unit.leader_userid
    if not userid or queries.get_member(ctx.session, userid) is None:
        return []
    data = {"problem": row, "kind": kind, "remark": remark, "unit": unit}
    return [Push(Target("app", userid), "problem_push", data, markdown=False, key=f"problem:{kind}")]
