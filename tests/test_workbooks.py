"""The month and year workbooks as an office reads them in Excel or LibreOffice: columns fitted to
their content, a filter on every header, the header frozen, dates as dates, names not accounts, the
督办 sheet's whole life (配合单位, 下发, 签收, 办结, 退回) and the 问题 sheet's latest 整改 and 超期."""
from __future__ import annotations

import io
from datetime import datetime

from openpyxl import load_workbook
from sqlmodel import Session

from bot.excel.export import MAX_WIDTH, generate
from conftest import at


def say(app, userid: str, text: str, when: datetime | None = None) -> str:
    if when is not None:
        app.clock.set(when)
    return app.handle_message(userid, text)


def workbook(app, **spec):
    with Session(app.engine) as s:
        return load_workbook(io.BytesIO(generate(s, app.config, {**spec, "at": app.clock.now().isoformat()})))


def rows(ws) -> list[dict]:
    header, *body = ws.iter_rows(values_only=True)
    return [dict(zip(header, row)) for row in body]


def _busy_month(app) -> None:
    for k in range(6, 11):  # T6 … T10, so that T10 sorts after T2
        say(app, "admin", f"新增任务 图书馆 实干争效 第{k}项任务 责任人=sun 期限=2026-12-31 开始=2026-03-01",
            at(2026, 3, 2, 9))
    say(app, "li", "汇报 T1 30% 完成方案论证，形成实训中心建设方案并提交学院党委会审议通过", at(2026, 3, 10, 9))
    say(app, "li", "问题 实训室漏水 时限=2026-03-15", at(2026, 3, 5, 9))
    say(app, "li", "整改 P1 已联系后勤", at(2026, 3, 8, 9))
    say(app, "li", "整改 P1 屋面防水已施工", at(2026, 3, 12, 9))
    say(app, "admin", "督办 机电工程系,图书馆 2026-03-28 报送实训中心验收方案", at(2026, 3, 11, 9))
    say(app, "zhang", "签收 D1", at(2026, 3, 12, 9))
    say(app, "zhang", "反馈 D1 已报送", at(2026, 3, 13, 9))
    say(app, "admin", "退回 D1 缺少预算表", at(2026, 3, 14, 9))
    say(app, "zhang", "反馈 D1 已补预算表", at(2026, 3, 16, 9))
    say(app, "admin", "办结 D1 同意", at(2026, 3, 17, 9))
    app.clock.set(at(2026, 3, 20, 10))


def test_month_workbook_sheets_are_fitted_filtered_frozen_and_dated(app):
    _busy_month(app)
    wb = workbook(app, kind="month", month="2026-03")
    for ws in wb.worksheets:
        header = [c.value for c in ws[1]]
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref == f"A1:{chr(64 + len(header))}{max(ws.max_row, 1)}", ws.title
        assert all(c.font.b for c in ws[1]), ws.title
        assert ws.oddHeader.center.text == "&A" and ws.page_setup.orientation == "landscape"  # printed, named
        for i, _ in enumerate(header):
            width = ws.column_dimensions[chr(65 + i)].width
            assert 4 <= width <= MAX_WIDTH, (ws.title, header[i], width)
    tasks = wb["任务进度"]
    assert [r["编号"] for r in rows(tasks)] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10"]
    assert rows(tasks)[0]["完成时限"] == datetime(2026, 12, 31)  # a date cell, not text
    assert tasks["H2"].is_date
    widths = {c.value: tasks.column_dimensions[c.column_letter].width for c in tasks[1]}
    assert widths["编号"] < widths["责任人"] < widths["任务内容"]  # fitted: a code is narrower than a name
    reports = wb["汇报记录"]
    (report,) = rows(reports)
    assert report["时间"] == datetime(2026, 3, 10, 9) and reports["F2"].number_format == "yyyy-mm-dd hh:mm"
    assert reports["E2"].alignment.wrap_text  # longer than its column: wrapped, not cut off
    assert report["汇报人"] == "李四"


def test_supervision_and_problem_sheets_tell_the_whole_story_by_name(app):
    _busy_month(app)
    wb = workbook(app, kind="month", month="2026-03")
    (item,) = rows(wb["督办"])
    assert (item["牵头单位"], item["配合单位"], item["状态"]) == ("机电工程系", "图书馆", "办结")
    assert (item["下发"], item["签收"], item["办结"]) == (datetime(2026, 3, 11, 9), datetime(2026, 3, 12, 9),
                                                         datetime(2026, 3, 17, 9))
    assert item["退回次数"] == 1 and item["期限"] == datetime(2026, 3, 28)
    (problem,) = rows(wb["问题清单"])
    assert problem["责任人"] == "李四"  # a name, not the account li
    assert problem["最新整改"] == "屋面防水已施工" and problem["整改时间"] == datetime(2026, 3, 12, 9)
    assert problem["超期"] == "超期"  # due 03-15, open on 03-20
    say(app, "li", "问题 宿舍网络慢 时限=2026-04-30")
    assert [r["超期"] for r in rows(workbook(app, kind="month", month="2026-03")["问题清单"])] == ["超期", None]


def test_year_workbook_is_fitted_and_filtered_too(app):
    _busy_month(app)
    wb = workbook(app, kind="year", year=2026)
    assert wb.sheetnames[0] == "2026年度考核" and "亮点" in wb.sheetnames
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), ws.title
    year = rows(wb["2026年度考核"])
    assert {r["单位"] for r in year} >= {"机电工程系", "图书馆"}
