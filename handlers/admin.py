"""Admin commands: 状态 未报 提醒 导出 新增任务. 状态 and 未报 also serve a 分管领导 (their units)
and 状态 a 负责人 (their own unit)."""
import re

from bot import targets
from bot.campaign import digest, scoring, years
from db.month import Month
from bot.reply import Push, Reply, Target
from bot.router import ADMINS, HEADS, IN_GROUP_PRIVATE, IN_GROUP_REFUSE, OVERSIGHT, Context, Router
from bot.text import MARKS, field_pattern, normalize_map, split_args
from db import queries
from db.models import LINES, ROLE_LEADER, Task, Unit
from handlers.common import fail, parse_date, parse_month, units_in_view

router = Router("admin")


def _this_month(ctx: Context) -> Month:
    return Month.of(ctx.now.astimezone(ctx.tz))


def _unit_arg(ctx: Context, command: str):
    name = ctx.args.strip()
    if not name:
        return None
    unit = queries.find_unit(ctx.session, name)
    if unit is None:
        raise fail(command, "unit_not_found", name=name)
    return unit


@router.command("状态", "status", roles=HEADS, in_group=IN_GROUP_PRIVATE)
def status(ctx: Context) -> Reply:
    """Admins: every unit, or one in detail. A 分管领导: their units, or one of them in detail.
    A 负责人: their own unit in detail."""
    month = _this_month(ctx)
    unit = _unit_arg(ctx, "状态")
    if unit is None and ctx.member.role == ROLE_LEADER:
        unit = ctx.unit
    scope = units_in_view(ctx.session, "状态", ctx.member, ctx.unit)
    if unit is not None and scope is not None and unit.id not in {u.id for u in scope}:
        raise fail("状态", "unit_not_in_view", unit=unit, units=scope)
    if unit is not None:
        snaps = scoring.snapshots(
            ctx.session, month, ctx.now, ctx.tz, ctx.config.schedule.report_deadline_day, unit_id=unit.id
        )
        people = queries.members_by_id(ctx.session)
        items = queries.open_items(ctx.session, ctx.now, unit.id)
        return Reply("status_unit", {"unit": unit, "snaps": [x for x in snaps if x.active], "month": month,
                                     "people": people, "items": items})
    scores = digest.rank(ctx.session, ctx.config, month, ctx.now)
    rated = sum(1 for x in scores if x.rank)
    if scope is not None:  # a 分管领导's units, each with its place among all units
        ids = {u.id for u in scope}
        scores = [x for x in scores if x.unit.id in ids]
    return Reply("status_all", {"scores": scores, "month": month, "scoped": scope is not None, "rated": rated,
                                "reported": sum(x.reported for x in scores),
                                "total": sum(x.active_tasks for x in scores)})


@router.command("未报", "unreported", roles=OVERSIGHT, in_group=IN_GROUP_PRIVATE)
def unreported(ctx: Context) -> Reply:
    month = parse_month("未报", ctx.args, _this_month(ctx))
    scope = units_in_view(ctx.session, "未报", ctx.member, ctx.unit)
    dues = [d for d in digest.unit_dues(ctx.session, ctx.config, month, ctx.now, scope) if d.unreported]
    return Reply("unreported", {"dues": dues, "month": month, "scoped": scope is not None})


@router.command("提醒", "remind", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def remind(ctx: Context) -> Reply:
    unit = _unit_arg(ctx, "提醒")
    month = _this_month(ctx)
    dues = digest.unit_dues(ctx.session, ctx.config, month, ctx.now, [unit] if unit else None)
    pushes, sent, skipped = [], [], []
    for due in dues:
        if due.empty and unit is None:
            continue
        rows = targets.unit_prompt(ctx.session, ctx.config, due, month)
        if rows:
            pushes += rows
            sent.append((due.unit, targets.places(ctx.session, ctx.config, rows)))
        else:
            skipped.append(due.unit)
    return Reply("remind_ok", {"sent": sent, "skipped": skipped, "unit": unit}, pushes)


@router.command("导出", "export", roles=ADMINS, in_group=IN_GROUP_PRIVATE)
def export(ctx: Context) -> Reply:
    """导出 [月份]: the month's workbook; 导出 2026年 (or 全年): the year's, as annual_summary sends it,
    with everything up to now (a 点评 added after the appraisal went out included)."""
    year = _YEAR.fullmatch(ctx.args.strip())
    if year:
        number = int(year.group(1) or years.current_year(ctx.session, ctx.config, ctx.now))
        spec = {"kind": "year", "year": number, "at": ctx.now.isoformat()}
        push = Push(Target("app", ctx.member.userid), "", file=spec, filename=f"争先督办-{number}年度考核.xlsx",
                    key="file")
        return Reply("export_ok", {"month": f"{number}年度", "filename": push.filename}, [push])
    month = parse_month("导出", ctx.args, _this_month(ctx))
    spec = {"kind": "month", "month": str(month), "at": ctx.now.isoformat()}
    push = Push(Target("app", ctx.member.userid), "", file=spec, filename=f"争先督办-{month}.xlsx", key="file")
    return Reply("export_ok", {"month": month, "filename": push.filename}, [push])


_YEAR = re.compile(r"(?:(20\d\d)\s*年(?:度)?|全年|年度)")


@router.command("新增任务", "addtask", roles=ADMINS, in_group=IN_GROUP_REFUSE)
def add_task(ctx: Context) -> Reply:
    tokens, rest = split_args(ctx.args, 2)
    if len(tokens) < 2 or not rest:
        raise fail("新增任务", "missing_args")
    unit_name, line = tokens
    unit = queries.find_unit(ctx.session, unit_name)
    if unit is None:
        raise fail("新增任务", "unit_not_found", name=unit_name)
    line = next((x for x in LINES if x == line or x in line), None) or _line_by_index(tokens[1])
    if line is None:
        raise fail("新增任务", "bad_line", value=tokens[1], lines=LINES)
    fields, content = _key_values(rest)
    owner, due = fields.get("责任人"), fields.get("期限")
    if not content or not owner or not due:
        raise fail("新增任务", "missing_args")
    member = queries.get_member(ctx.session, owner)
    if member is None:  # a name does as well as an account, if only one person has it
        named = queries.members_with_name(ctx.session, owner)
        if len(named) != 1:
            raise fail("新增任务", "owner_not_found", userid=owner, named=named,
                       units={u.id: u for u in queries.all_units(ctx.session)})
        member, owner = named[0], named[0].userid
    if member.unit_id != unit.id:  # a member reports only on their own unit's tasks (admins included)
        raise fail("新增任务", "owner_other_unit", member=member, unit=unit,
                   owner_unit=ctx.session.get(Unit, member.unit_id))
    today = ctx.now.astimezone(ctx.tz).date()
    due_date = parse_date("新增任务", due, today)
    start = parse_date("新增任务", fields["开始"], today) if "开始" in fields else today
    if due_date < start:
        raise fail("新增任务", "due_before_start", value=due)
    task = Task(
        code=queries.next_code(ctx.session, Task, "T"), unit_id=unit.id, line=line, content=content,
        leader_in_charge=fields.get("责任领导", ""), owner_userid=owner, start_date=start, due_date=due_date,
    )
    ctx.session.add(task)
    ctx.session.flush()
    return Reply("task_added", {"task": task, "unit": unit, "owner": queries.get_member(ctx.session, owner)})


def _line_by_index(token: str) -> str | None:
    return LINES[int(token) - 1] if token.isdigit() and 1 <= int(token) <= len(LINES) else None


# The fields 新增任务 takes, as key=value; ＝ ： and : work too, after a space or a mark (，；、).
_FIELDS = field_pattern(["责任人", "责任领导", "期限", "开始", "owner", "due", "start"])
_VALUE = re.compile(r"[^\s,;、。]*")
_ALIASES = {"owner": "责任人", "due": "期限", "start": "开始"}


def _key_values(text: str) -> tuple[dict[str, str], str]:
    """Pull the known key=value fields (责任人=zhang 期限=2026-06-30) out of free text; the rest,
    as typed, is content (so 目标：建成 stays content). A field-like label not understood is named."""
    norm, index = normalize_map(text)
    fields, pieces, pos = {}, [], 0
    for m in _FIELDS.finditer(norm):
        if m.group("other") and m.start() == 0:  # the content may open with what looks like a label
            continue
        if m.group("other"):
            raise fail("新增任务", "unknown_field", label=m.group("other"), labels=["责任人", "期限", "开始", "责任领导"])
        key = m.group("known").lower()
        value = _VALUE.match(norm, m.end())
        fields[_ALIASES.get(key, key)] = value.group()
        pieces.append(text[index[pos]:index[m.start()]].strip(MARKS))
        pos = value.end()
    pieces.append(text[index[pos]:].strip(MARKS))
    return fields, " ".join(" ".join(pieces).split())
