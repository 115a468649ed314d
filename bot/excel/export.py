"""The Excel workbook (openpyxl): ranking, task progress, reports, problems, supervision."""
from __future__ import annotations

import io
from datetime import datetime

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Font, PatternFill
from sqlmodel import Session, select

from db.month import Month
from bot.config import Config
from bot.excel.cells import literal_row
from bot.campaign.digest import rank
from bot.campaign import release, reviews, scoring
from db import queries
from db.models import ATTACH_STORED, COMMENT_ADMIN, COMMENT_SELF, RELEASE_PUBLISHED, Problem, Report

LIGHT_NAMES = {"green": "绿", "yellow": "黄", "red": "红"}
ATTACH_STATES = {"held": "未指明归属", "pending": "保存中", "fetching": "保存中", "stored": "已保存",
                 "rejected": "不合格", "failed": "未取回"}
TIER_FILLS = {"先进": "C6EFCE", "滞后": "FFC7CE"}  # 达标 stays white
BOLD = Font(bold=True)


def _new_workbook() -> Workbook:
    # Write-only: rows stream to the file, so a 2,000-unit year costs neither minutes nor memory.
    return Workbook(write_only=True)


def _sheet(wb: Workbook, title: str, header: list[str]):
    ws = wb.create_sheet(title)
    ws.freeze_panes = "A2"
    ws.append([_styled(ws, h, font=BOLD) for h in header])
    return ws


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


def _local(dt: datetime | None, config: Config) -> str:
    return dt.astimezone(config.schedule.tz).strftime("%Y-%m-%d %H:%M") if dt else ""


def _ranking_sheet(wb: Workbook, title: str, scores) -> None:
    ws = _sheet(wb, title, ["名次", "单位", "得分", "等次", "较上月", "汇报率", "进度", "督办", "逾期任务", "任务数", "已汇报"])
    _tier_colours(ws, "D", len(scores))
    for sc in scores:
        ws.append(literal_row(ws, [
            sc.rank or "", sc.unit.name, sc.score, sc.tier, sc.trend if sc.rank else "",
            round(sc.report_rate * 100, 1), round(sc.progress * 100, 1), round(sc.supervision * 100, 1), sc.overdue,
            sc.active_tasks, sc.reported,
        ]))


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

    files = queries.attachments(s)
    kept: dict[str, int] = {}  # code -> stored attachments
    for att in files:
        if att.status == ATTACH_STORED:
            kept[att.code] = kept.get(att.code, 0) + 1

    ws = _sheet(wb, "任务进度", ["编号", "单位", "行动", "任务内容", "责任领导", "责任人", "开始日期", "完成时限",
                                 "计划进度%", "实际进度%", "本月已汇报", "红黄绿", "佐证材料"])
    snaps = scoring.snapshots(s, month, now, tz, config.schedule.report_deadline_day)
    for sn in sorted(snaps, key=lambda x: (units[x.task.unit_id].name, queries.code_key(x.task.code))):
        t = sn.task
        owner = people.get(t.owner_userid)
        ws.append(literal_row(ws, [
            t.code, units[t.unit_id].name, t.line, t.content, t.leader_in_charge,
            owner.name if owner else t.owner_userid, t.start_date, t.due_date, round(sn.planned),
            sn.percent, "是" if sn.reported_in_month else "否", LIGHT_NAMES[sn.light], kept.get(t.code, 0),
        ]))

    ws = _sheet(wb, "汇报记录", ["任务编号", "单位", "汇报人", "进度%", "内容", "时间", "版本", "更正", "迟报"])
    tasks = {t.id: t for t in queries.all_tasks(s)}
    for r in s.exec(select(Report).where(Report.month == str(month)).order_by(Report.id)):
        who = people.get(r.userid)
        ws.append(literal_row(ws, [
            tasks[r.task_id].code, units[r.unit_id].name, who.name if who else r.userid, r.percent,
            r.text, _local(r.created_at, config), r.version, "是" if r.supersedes_id else "",
            "迟报" if r.local_day > config.schedule.report_deadline_day else "",
        ]))

    ws = _sheet(wb, "问题清单", ["编号", "单位", "问题描述", "整改措施", "责任人", "整改时限", "状态", "佐证材料"])
    for p in s.exec(select(Problem).order_by(Problem.id)):
        ws.append(literal_row(ws, [
            p.code, units[p.unit_id].name, p.description, p.measure, p.owner_userid, p.deadline,
            "未整改" if p.status == "open" else p.status, kept.get(p.code, 0),
        ]))

    ws = _sheet(wb, "督办", ["编号", "单位", "内容", "期限", "状态", "办结答复时间", "按时", "佐证材料"])
    accepted = queries.accepted_answers(s, month)
    cutoff = scoring.evaluation_moment(month, now, tz)
    verdicts = {True: "是", False: "否", None: "未到期"}
    for it in queries.month_items_full(s, month):
        done = accepted.get(it.id)
        verdict = scoring.item_on_time(it, done, cutoff, tz)
        ws.append(literal_row(ws, [
            it.code, units[it.unit_id].name, it.content, it.deadline, it.status,
            _local(done.answered_at if done else None, config), verdicts[verdict], kept.get(it.code, 0),
        ]))

    _attachment_sheet(wb, config, [a for a in files if Month.of(a.created_at.astimezone(tz)) == month], units, people)
    return _save(wb)


def _attachment_sheet(wb: Workbook, config: Config, files: list, units: dict, people: dict) -> None:
    """Each picture or file sent in the month: what it belongs to, and where it is kept (by hash)."""
    ws = _sheet(wb, "佐证材料", ["所属编号", "单位", "提交人", "时间", "类型", "文件名", "大小KB", "状态", "存储文件"])
    for a in files:
        who = people.get(a.userid)
        ws.append(literal_row(ws, [
            a.code, units[a.unit_id].name if a.unit_id in units else "", who.name if who else a.userid,
            _local(a.created_at, config), a.ext or ("图片" if a.kind == "image" else "文件"), a.name,
            round(a.size / 1024, 1) if a.sha256 else "", ATTACH_STATES.get(a.status, a.status),
            f"{a.sha256[:2]}/{a.sha256}.{a.ext}" if a.sha256 else "",
        ]))


def annual_workbook(config: Config, year: int, year_scores, monthly: dict, comments: dict,
                    highlights: list | None = None) -> bytes:
    """The year table first, with each unit's 点评 and 自评 of the mid-year and the annual review
    (`comments`: period -> reviews.latest()), then one ranking sheet per campaign month (March to
    December), then the 亮点 picked that year (rows from highlight_rows)."""
    wb = _new_workbook()
    periods = [reviews.midyear(year), reviews.annual(year)]
    ws = _sheet(wb, f"{year}年度考核", ["名次", "单位", "年度得分", "等次", "先进月数", "滞后月数", "平均汇报率", "平均进度",
                                         "上半年点评", "上半年自评", "年度点评", "年度自评"])
    _tier_colours(ws, "D", len(year_scores))
    for ys in year_scores:
        texts = []
        for period in periods:
            mine = comments.get(period, {}).get(ys.unit.id, {})
            texts += [mine[kind].text if kind in mine else "" for kind in (COMMENT_ADMIN, COMMENT_SELF)]
        ws.append(literal_row(ws, [
            ys.rank or "", ys.unit.name, ys.score, ys.tier, ys.top_months,
            ys.low_months, round(ys.report_rate * 100, 1), round(ys.progress * 100, 1), *texts,
        ]))
    for month, scores in monthly.items():
        _ranking_sheet(wb, f"{month.month}月", scores)
    ws = _sheet(wb, "亮点", ["编号", "单位", "标题", "内容", "报送人", "报送时间", "选用时间", "亮晒月份", "图片"])
    for row in highlights or []:
        ws.append(literal_row(ws, row))
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
        return annual_workbook(config, year, year_scores, monthly, comments, highlight_rows(s, config, year))
    raise ValueError(f"unknown workbook kind {spec['kind']!r}")


def _save(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
