"""The Excel workbook (openpyxl): ranking, task progress, reports, problems, supervision."""
from __future__ import annotations

import io
from datetime import date, datetime

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.properties import PageSetupProperties
from sqlmodel import Session, select

from db.month import Month
from bot.config import Config
from bot.excel.cells import literal
from bot.campaign.digest import rank
from bot.campaign import release, reviews, scoring
from db import queries
from db.models import (ATTACH_STORED, COMMENT_ADMIN, COMMENT_SELF, EVENT_ISSUE, EVENT_RETURN, EVENT_SIGN,
                       RELEASE_PUBLISHED, Report)

LIGHT_NAMES = {"green": "绿", "yellow": "黄", "red": "红"}
ATTACH_STATES = {"held": "未指明归属", "pending": "保存中", "fetching": "保存中", "stored": "已保存",
                 "rejected": "不合格", "failed": "未取回"}
TIER_FILLS = {"先进": "C6EFCE", "滞后": "FFC7CE"}  # 达标 stays white
BOLD = Font(bold=True)
WRAP = Alignment(wrap_text=True, vertical="top")
DATETIME = "yyyy-mm-dd hh:mm"
MAX_WIDTH = 40  # columns; longer text wraps


def _new_workbook() -> Workbook:
    # Write-only: rows stream to the file, so a 2,000-unit year costs neither minutes nor memory.
    return Workbook(write_only=True)


def _text_width(value) -> int:
    """Columns a value needs: CJK characters count two, a date or time its written form."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    # (UTF-8 bytes + characters) / 2: a CJK character (3 bytes) counts 2, ASCII 1; computed in C,
    # as 2,000 units' sheets have a few million characters
    return max((len(line.encode()) + len(line)) // 2 for line in text.splitlines() or [""])


def _sheet(wb: Workbook, title: str, header: list[str], rows: list[list], tiers: str = "") -> None:
    """One sheet: the header bold, frozen and filtered; each column as wide as its content (up to
    MAX_WIDTH, longer text wraps); dates and times as Excel dates; printed landscape, one page wide.
    `tiers`: the column coloured by 等次."""
    ws = wb.create_sheet(title)
    widths = [_text_width(h) + 2 for h in header]  # room for the filter's button
    for row in rows:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], _text_width(v))
    widths = [min(MAX_WIDTH, w + 2) for w in widths]
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w
    last = f"{get_column_letter(len(header))}{len(rows) + 1}"
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{last}"
    ws.print_title_rows = "1:1"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.oddHeader.center.text = "&A"  # the sheet's name on the printed page
    if tiers:
        _tier_colours(ws, tiers, len(rows))
    ws.append([_styled(ws, h, font=BOLD) for h in header])
    for row in rows:
        ws.append([_cell(ws, v, widths[i]) for i, v in enumerate(row)])


def _cell(ws, value, width: int):
    """A value as written: text never a formula (literal), a time as a local date-time, text
    longer than its column wrapped."""
    if isinstance(value, datetime):
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = DATETIME
        return cell
    value = literal(ws, value)
    if isinstance(value, str) and _text_width(value) > width:
        cell = WriteOnlyCell(ws, value=value)
        cell.alignment = WRAP
        return cell
    return value


def _styled(ws, value, font=None) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, value=value)
    if font is not None:
        cell.font = font
    return cell


def _tier_colours(ws, column: str, rows: int) -> None:
    """Colour the 等次 column by its value with one conditional format per tier, instead of a
    style on each of 2,000 cells a sheet (which cost a tenth of the annual export's time)."""
    if rows == 0:
        return
    cells = f"{column}2:{column}{rows + 1}"
    for tier, colour in TIER_FILLS.items():
        fill = PatternFill(start_color=colour, end_color=colour, fill_type="solid")
        ws.conditional_formatting.add(cells, CellIsRule(operator="equal", formula=[f'"{tier}"'], fill=fill))


def _local(dt: datetime | None, config: Config) -> datetime | None:
    """A stored time as the local date-time Excel shows (Excel has no time zones)."""
    return dt.astimezone(config.schedule.tz).replace(tzinfo=None) if dt else None


def _ranking_sheet(wb: Workbook, title: str, scores) -> None:
    _sheet(wb, title, ["名次", "单位", "得分", "等次", "较上月", "汇报率", "进度", "督办", "逾期任务", "任务数", "已汇报"], [
        [sc.rank or "", sc.unit.name, sc.score if sc.rank else "", sc.tier, sc.trend if sc.rank else "",
         round(sc.report_rate * 100, 1), round(sc.progress * 100, 1), round(sc.supervision * 100, 1), sc.overdue,
         sc.active_tasks, sc.reported] for sc in scores], tiers="D")


def month_workbook(s: Session, config: Config, month: Month, now: datetime) -> bytes:
    tz = config.schedule.tz
    wb = _new_workbook()
    frozen = release.get(s, month)
    if frozen is not None and frozen.status == RELEASE_PUBLISHED:  # what was published, not a recount
        scores = release.thaw(frozen.data)
    else:
        scores = rank(s, config, month, now)
    _ranking_sheet(wb, f"{month}排名", scores)
    units = {u.id: u for u in queries.all_units(s)}
    people = queries.members_by_id(s)
    if frozen is not None and frozen.status == RELEASE_PUBLISHED and frozen.note:
        _correction_sheet(wb, config, release.correction(frozen))

    def name(userid: str) -> str:
        return people[userid].name if userid in people else userid

    files = queries.attachments(s)
    kept: dict[str, int] = {}  # code -> stored attachments
    for att in files:
        if att.status == ATTACH_STORED:
            kept[att.code] = kept.get(att.code, 0) + 1

    snaps = scoring.snapshots(s, month, now, tz, config.schedule.report_deadline_day)
    _sheet(wb, "任务进度", ["编号", "单位", "行动", "任务内容", "责任领导", "责任人", "开始日期", "完成时限",
                           "计划进度%", "实际进度%", "本月已汇报", "红黄绿", "佐证材料"], [
        [t.code, units[t.unit_id].name, t.line, t.content, t.leader_in_charge, name(t.owner_userid),
         t.start_date, t.due_date, round(sn.planned), sn.percent, "是" if sn.reported_in_month else "否",
         LIGHT_NAMES[sn.light], kept.get(t.code, 0)]
        for sn in sorted(snaps, key=lambda x: queries.code_key(x.task.code)) for t in [sn.task]])

    tasks = {t.id: t for t in queries.all_tasks(s, month.year)}  # the month's campaign year's
    _sheet(wb, "汇报记录", ["任务编号", "单位", "汇报人", "进度%", "内容", "时间", "版本", "更正", "迟报"], [
        [tasks[r.task_id].code, units[r.unit_id].name, name(r.userid), r.percent, r.text,
         _local(r.created_at, config), r.version, "是" if r.supersedes_id else "",
         "迟报" if r.local_day > config.schedule.report_deadline_day else ""]
        for r in s.exec(select(Report).where(Report.month == str(month)).order_by(Report.id))
        if r.task_id in tasks])  # a task of another year (one carried over goes on with its last report)

    today = now.astimezone(tz).date()
    problems = queries.all_problems(s, month.year)
    latest = queries.latest_notes(s)
    _sheet(wb, "问题清单", ["编号", "单位", "问题描述", "整改措施", "责任人", "整改时限", "状态", "超期",
                           "最新整改", "整改时间", "佐证材料"], [
        [p.code, units[p.unit_id].name, p.description, p.measure, name(p.owner_userid), p.deadline,
         "未整改" if p.status == "open" else p.status, "超期" if p.overdue(today) else "",
         latest[p.id].text if p.id in latest else "", _local(latest[p.id].created_at, config) if p.id in latest else None,
         kept.get(p.code, 0)]
        for p in problems])

    accepted = queries.accepted_answers(s, month)
    cutoff = scoring.evaluation_moment(month, now, tz)
    verdicts = {True: "是", False: "否", None: "未到期"}
    items = queries.month_items_full(s, month, month.end_utc(tz))
    steps: dict[int, dict[str, list]] = {}
    for e in queries.events_of(s, [it.id for it in items]):
        steps.setdefault(e.item_id, {}).setdefault(e.kind, []).append(e)
    rows = []
    for it in items:
        done, mine = accepted.get(it.id), steps.get(it.id, {})

        def first(kind: str):
            return _local(mine[kind][0].created_at, config) if kind in mine else None

        rows.append([it.code, units[it.unit_id].name, "、".join(units[u].name for u in it.partners if u in units),
                     it.content, it.deadline, it.status, first(EVENT_ISSUE) or _local(it.created_at, config),
                     first(EVENT_SIGN), _local(it.closed_at, config), len(mine.get(EVENT_RETURN, [])),
                     _local(done.answered_at if done else None, config),
                     verdicts[scoring.item_on_time(it, done, cutoff, tz)], kept.get(it.code, 0)])
    _sheet(wb, "督办", ["编号", "牵头单位", "配合单位", "内容", "期限", "状态", "下发", "签收", "办结", "退回次数",
                        "办结答复时间", "按时", "佐证材料"], rows)

    _attachment_sheet(wb, config, [a for a in files if Month.of(a.created_at.astimezone(tz)) == month], units, people)
    _voided_sheet(wb, config, void_rows(s))
    return _save(wb)


def _correction_sheet(wb: Workbook, config: Config, correction: dict) -> None:
    """A corrected (更正) month: its note and the lines it changed (the ranking sheet is the latest version)."""
    rows = []
    for c in correction["changes"]:
        old, new = c["old"] or ["", "", ""], c["new"]
        rows.append([correction["version"], _local(correction["at"], config), correction["note"],
                     c["unit"], old[0] or "", old[1], new[0] or "", new[1]])
    _sheet(wb, "排名更正", ["版本", "更正时间", "说明", "单位", "原名次", "原得分", "现名次", "现得分"], rows)


def void_rows(s: Session) -> list:
    """What was 作废 (or 撤回), for the 作废 sheet of every workbook."""
    units = {u.id: u.name for u in queries.all_units(s)}
    people = queries.members_by_id(s)
    return [(v, units.get(v.unit_id, ""), people[v.voided_by].name if v.voided_by in people else v.voided_by)
            for v in queries.voided(s)]


def _voided_sheet(wb: Workbook, config: Config, rows: list) -> None:
    """The 作废 sheet, once anything was voided."""
    if not rows:
        return
    _sheet(wb, "作废", ["编号", "类别", "单位", "内容", "作废人", "作废时间", "原因"],
           [[v.code, v.kind, unit, v.what, who, _local(v.voided_at, config), v.reason] for v, unit, who in rows])


def _attachment_sheet(wb: Workbook, config: Config, files: list, units: dict, people: dict) -> None:
    """Each picture or file sent in the month: what it belongs to, and where it is kept (by hash)."""
    _sheet(wb, "佐证材料", ["所属编号", "单位", "提交人", "时间", "类型", "文件名", "大小KB", "状态", "存储文件"], [
        [a.code, units[a.unit_id].name if a.unit_id in units else "",
         people[a.userid].name if a.userid in people else a.userid,
         _local(a.created_at, config), a.ext or ("图片" if a.kind == "image" else "文件"), a.name,
         round(a.size / 1024, 1) if a.sha256 else "", ATTACH_STATES.get(a.status, a.status),
         f"{a.sha256[:2]}/{a.sha256}.{a.ext}" if a.sha256 else ""] for a in files])


def annual_workbook(config: Config, year: int, year_scores, monthly: dict, comments: dict,
                    highlights: list | None = None, voided: list | None = None) -> bytes:
    """The year table first, with each unit's 点评 and 自评 of the mid-year and the annual review
    (`comments`: period -> reviews.latest()), then one ranking sheet per scored month (from the
    year's first month, years.first_month), then the 亮点 picked that year (rows from highlight_rows)."""
    wb = _new_workbook()
    periods = [reviews.midyear(year), reviews.annual(year)]
    rows = []
    for ys in year_scores:
        texts = []
        for period in periods:
            mine = comments.get(period, {}).get(ys.unit.id, {})
            texts += [mine[kind].text if kind in mine else "" for kind in (COMMENT_ADMIN, COMMENT_SELF)]
        rows.append([ys.rank or "", ys.unit.name, ys.score if ys.rank else "", ys.tier, ys.top_months, ys.low_months,
                     round(ys.report_rate * 100, 1), round(ys.progress * 100, 1), *texts])
    _sheet(wb, f"{year}年度考核", ["名次", "单位", "年度得分", "等次", "先进月数", "滞后月数", "平均汇报率", "平均进度",
                                  "上半年点评", "上半年自评", "年度点评", "年度自评"], rows, tiers="D")
    for month, scores in monthly.items():
        _ranking_sheet(wb, f"{month.month}月", scores)
    _sheet(wb, "亮点", ["编号", "单位", "标题", "内容", "报送人", "报送时间", "选用时间", "亮晒月份", "图片"],
           highlights or [])
    _voided_sheet(wb, config, voided or [])
    return _save(wb)


def highlight_rows(s: Session, config: Config, year: int) -> list[list]:
    """The 亮点 picked (选用) in `year`, for the year's workbook."""
    units = {u.id: u for u in queries.all_units(s)}
    people = queries.members_by_id(s)
    picked = [h for h in reversed(queries.highlights(s))
              if h.picked_at is not None and h.picked_at.astimezone(config.schedule.tz).year == year]
    kept: dict[str, int] = {}
    for att in queries.attachments(s, [h.code for h in picked]):
        if att.status == ATTACH_STORED:
            kept[att.code] = kept.get(att.code, 0) + 1
    return [[h.code, units[h.unit_id].name, h.title, h.content,
             people[h.userid].name if h.userid in people else h.userid, _local(h.created_at, config),
             _local(h.picked_at, config), h.shown_month, kept.get(h.code, 0)] for h in picked]


def generate(s: Session, config: Config, spec: dict) -> bytes:
    """Build the workbook (or picture) an outbox file or image message describes:
    {"kind": "month"|"year"|"lists"|"ranking_image"|"attachment", ..., "at": ISO time}."""
    at = datetime.fromisoformat(spec["at"])
    if spec["kind"] == "ranking_image":
        from bot.charts import ranking_image

        return ranking_image(s, config, Month.parse(spec["month"]), at)
    if spec["kind"] == "attachment":  # a stored picture (a 亮点's, after the ranking broadcast)
        from bot.evidence import read

        return read(s, config, int(spec["id"]))
    if spec["kind"] == "lists":  # a unit's own lists, for its 负责人 (清单)
        from bot.excel.lists import unit_workbook

        return unit_workbook(s, int(spec["unit"]))
    if spec["kind"] == "month":
        return month_workbook(s, config, Month.parse(spec["month"]), at)
    if spec["kind"] == "year":
        from bot.campaign.digest import year_ranking

        year = int(spec["year"])
        year_scores, monthly = year_ranking(s, config, year, at)
        comments = {p: reviews.latest(s, p, until=at) for p in (reviews.midyear(year), reviews.annual(year))}
        return annual_workbook(config, year, year_scores, monthly, comments, highlight_rows(s, config, year),
                               void_rows(s))
    raise ValueError(f"unknown workbook kind {spec['kind']!r}")


def _save(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
