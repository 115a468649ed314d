"""Roster workbook: template, all-or-nothing import with row-numbered errors, re-import updates."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from openpyxl import Workbook, load_workbook
from sqlmodel import Session, func, select

from bot.app import Application
from bot.excel.roster import SHEETS, RosterFileError, import_roster, write_template
from conftest import ROOT, make_config
from db.models import Member, Problem, Report, Task, Unit


@pytest.fixture
def empty_app(db_url, clock):
    app = Application(make_config(db_url), clock=clock)
    app.migrate()
    yield app
    app.engine.dispose()


def workbook(path, **sheets):
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        ws.append(SHEETS[name])
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


GOOD = dict(
    单位=[["机电工程系", "系（部、院）", "zhang", "chat-jd", ""], ["信息工程系", "系（部、院）", "wang", "", "key-xx"]],
    人员=[["zhang", "张三", "机电工程系", "负责人"], ["wang", "王五", "信息工程系", "负责人"],
         ["li", "李四", "机电工程系", ""]],
    任务清单=[["T1", "机电工程系", "敢为争先", "建成实训中心", "李副校长", "li", "2026-03-01", datetime(2026, 12, 31)],
           ["t2", "信息工程系", "实干争效", "上线服务大厅", "", "wang", "2026/3/1", "2026-06-30"]],
    问题清单=[["P1", "机电工程系", "消防通道堆放杂物", "一周内清理", "li", "2026-03-15"]],
)


def counts(app):
    with Session(app.engine) as s:
        return tuple(s.exec(select(func.count()).select_from(m)).one() for m in (Unit, Member, Task, Problem))


def run_import(app, path, move=False):
    with app.session() as s:
        result = import_roster(s, path, app.clock.now(), move=move)
        if result.errors:
            s.rollback()
    return result


def test_template_has_the_sheets_headers_and_one_example_each(tmp_path):
    write_template(tmp_path / "r.xlsx")
    wb = load_workbook(tmp_path / "r.xlsx")
    assert wb.sheetnames == ["单位", "人员", "任务清单", "问题清单"]
    for name, header in SHEETS.items():
        rows = list(wb[name].iter_rows(values_only=True))
        assert list(rows[0]) == header and len(rows) == 2


def test_the_template_itself_imports(empty_app, tmp_path):
    write_template(tmp_path / "r.xlsx")
    assert not run_import(empty_app, tmp_path / "r.xlsx").errors
    assert counts(empty_app) == (1, 1, 1, 1)


def test_a_good_workbook_imports_everything(empty_app, tmp_path):
    result = run_import(empty_app, workbook(tmp_path / "r.xlsx", **GOOD))
    assert not result.errors
    assert counts(empty_app) == (2, 3, 2, 1)
    with Session(empty_app.engine) as s:
        t2 = s.exec(select(Task).where(Task.code == "T2")).one()
        li = s.get(Member, "li")
        jd = s.exec(select(Unit).where(Unit.name == "机电工程系")).one()
    assert str(t2.start_date) == "2026-03-01" and li.role == "成员" and jd.leader_userid == "zhang"


def test_reimport_updates_rows_by_key_instead_of_duplicating(empty_app, tmp_path):
    run_import(empty_app, workbook(tmp_path / "a.xlsx", **GOOD))
    changed = {**GOOD, "任务清单": [["T1", "机电工程系", "敢为争先", "建成实训中心（二期）", "", "zhang", "2026-03-01",
                                   "2026-11-30"]]}
    result = run_import(empty_app, workbook(tmp_path / "b.xlsx", **changed))
    assert result.counts["任务清单"] == (0, 1, 0) and result.counts["单位"] == (0, 0, 2)
    assert counts(empty_app) == (2, 3, 2, 1)
    with Session(empty_app.engine) as s:
        t1 = s.exec(select(Task).where(Task.code == "T1")).one()
    assert (t1.content, t1.owner_userid, str(t1.due_date)) == ("建成实训中心（二期）", "zhang", "2026-11-30")


def test_bad_rows_are_reported_by_sheet_and_row_and_nothing_is_stored(empty_app, tmp_path):
    bad = dict(
        单位=GOOD["单位"] + [["图书馆", "馆", "", "", ""]],
        人员=GOOD["人员"] + [["zhou", "周八", "不存在系", "成员"], ["wu", "吴九", "机电工程系", "校长"]],
        任务清单=GOOD["任务清单"] + [["T3", "机电工程系", "摸鱼", "x", "", "li", "2026-03-01", "2026-04-01"],
                               ["T4", "机电工程系", "敢为争先", "x", "", "nobody", "2026-03-01", "2026-04-01"],
                               ["T5", "机电工程系", "敢为争先", "x", "", "li", "2026-13-01", "2026-04-01"],
                               ["T1", "机电工程系", "敢为争先", "重复", "", "li", "2026-03-01", "2026-04-01"],
                               ["T6", "机电工程系", "敢为争先", "x", "", "li", "2026-05-01", "2026-04-01"]],
        问题清单=[["P1", "机电工程系", "", "x", "", ""]],
    )
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    where = [(e.sheet, e.row, e.code) for e in result.errors]
    assert where == [
        ("单位", 4, "no_target"),
        ("人员", 5, "unknown_unit"), ("人员", 6, "bad_role"),
        ("任务清单", 4, "bad_line"), ("任务清单", 5, "unknown_person"), ("任务清单", 6, "bad_date"),
        ("任务清单", 7, "duplicate"), ("任务清单", 8, "due_before_start"),
        ("问题清单", 2, "required"),
    ]
    assert counts(empty_app) == (0, 0, 0, 0)
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "【任务清单】第4行：行动“摸鱼”无效" in text and "未写入任何数据" in text
    assert "【任务清单】第7行：编号“T1”与第2行重复" in text


def test_a_missing_column_is_reported(empty_app, tmp_path):
    path = workbook(tmp_path / "m.xlsx", **GOOD)
    wb = load_workbook(path)
    wb["人员"].delete_cols(3)
    wb.save(path)
    result = run_import(empty_app, path)
    assert [(e.sheet, e.row, e.code, e.data["columns"]) for e in result.errors] == [("人员", 1, "missing_columns", ["单位名称"])]


def test_not_a_workbook_is_a_clear_error(empty_app, tmp_path):
    (tmp_path / "x.xlsx").write_text("hello")
    with pytest.raises(RosterFileError):
        run_import(empty_app, tmp_path / "x.xlsx")


def test_cli_template_and_import(tmp_path):
    db = tmp_path / "cli.db"
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    env_cmd = [sys.executable, "-m", "bot.cli", "--config", str(tmp_path / "config.toml")]
    run = lambda *a: subprocess.run([*env_cmd, *a], cwd=tmp_path, capture_output=True, text=True,  # noqa: E731
                                    env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run("template", str(tmp_path / "r.xlsx")).returncode == 0
    ok = run("import", str(tmp_path / "r.xlsx"))
    assert ok.returncode == 0 and "导入成功" in ok.stdout
    workbook(tmp_path / "bad.xlsx", **{**GOOD, "单位": [["图书馆", "馆", "", "", ""]]})
    bad = run("import", str(tmp_path / "bad.xlsx"))
    assert bad.returncode == 1 and "【单位】第2行" in bad.stderr
    (tmp_path / "junk.xlsx").write_text("junk")
    junk = run("import", str(tmp_path / "junk.xlsx"))
    assert junk.returncode == 1 and "不是有效的 .xlsx" in junk.stderr


def test_an_existing_code_naming_another_unit_is_refused_unless_moved(empty_app, tmp_path):
    run_import(empty_app, workbook(tmp_path / "a.xlsx", **GOOD))
    with empty_app.session() as s:
        t1 = s.exec(select(Task).where(Task.code == "T1")).one()
        s.add(Report(task_id=t1.id, unit_id=t1.unit_id, userid="li", month="2026-03", percent=30, text="进展",
                     local_day=20, created_at=empty_app.clock.now()))
    moved = {**GOOD,
             "人员": [["zhang", "张三", "机电工程系", "负责人"], ["wang", "王五", "信息工程系", "负责人"],
                    ["li", "李四", "信息工程系", ""]],
             "任务清单": [["T1", "信息工程系", "敢为争先", "建成实训中心", "", "li", "2026-03-01", "2026-12-31"]],
             "问题清单": [["p1", "信息工程系", "消防通道堆放杂物", "", "li", ""]]}
    result = run_import(empty_app, workbook(tmp_path / "b.xlsx", **moved))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [("任务清单", 2, "moves_unit"), ("问题清单", 2, "moves_unit")]
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "【任务清单】第2行：编号 T1 属于“机电工程系”，此行是“信息工程系”" in text and "--move" in text
    assert "【问题清单】第2行：编号 P1 属于“机电工程系”" in text
    with Session(empty_app.engine) as s:
        assert s.get(Member, "li").unit_id == s.exec(select(Task).where(Task.code == "T1")).one().unit_id
    assert not run_import(empty_app, tmp_path / "b.xlsx", move=True).errors
    with Session(empty_app.engine) as s:
        xx = s.exec(select(Unit).where(Unit.name == "信息工程系")).one()
        assert s.exec(select(Task).where(Task.code == "T1")).one().unit_id == xx.id
        assert s.exec(select(Problem).where(Problem.code == "P1")).one().unit_id == xx.id
        assert s.exec(select(func.count()).select_from(Report)).one() == 1


def test_a_responsible_person_must_belong_to_the_rows_unit(empty_app, tmp_path):
    bad = {**GOOD,
           "人员": GOOD["人员"] + [["admin", "王管理", "信息工程系", "管理员"]],
           "任务清单": GOOD["任务清单"] + [["T3", "信息工程系", "敢为争先", "x", "", "li", "2026-03-01", "2026-04-01"],
                                   ["T4", "机电工程系", "敢为争先", "x", "", "admin", "2026-03-01", "2026-04-01"]],
           "问题清单": [["P1", "信息工程系", "x", "", "zhang", ""]]}
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [
        ("任务清单", 4, "owner_other_unit"), ("任务清单", 5, "owner_other_unit"), ("问题清单", 2, "owner_other_unit")]
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "【任务清单】第4行：责任人账号“li”属于“机电工程系”，不是“信息工程系”的人员" in text
    assert counts(empty_app) == (0, 0, 0, 0)
    # moving a person away from the unit whose tasks they are responsible for is refused as well
    run_import(empty_app, workbook(tmp_path / "a.xlsx", **GOOD))
    away = {**GOOD, "人员": [["li", "李四", "信息工程系", ""]], "任务清单": [], "问题清单": []}
    result = run_import(empty_app, workbook(tmp_path / "c.xlsx", **away))
    assert [(e.sheet, e.row, e.code, e.data["codes"]) for e in result.errors] == [
        ("人员", 2, "owns_elsewhere", ["T1", "P1"])]


def test_missing_and_unknown_sheets_are_named(empty_app, tmp_path):
    path = workbook(tmp_path / "r.xlsx", **GOOD)
    wb = load_workbook(path)
    wb["人员"].title = "人员名单"
    wb.save(path)
    result = run_import(empty_app, path)
    assert [(e.sheet, e.code) for e in result.errors] == [("人员", "missing_sheet")]
    assert result.ignored == ["人员名单"]
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts,
                                     ignored=result.ignored)
    assert "缺少工作表“人员”" in text and "已忽略工作表：人员名单" in text
    assert counts(empty_app) == (0, 0, 0, 0)
    # 问题清单 may be left out; an extra sheet is named as ignored on success too
    path = workbook(tmp_path / "s.xlsx", **{k: v for k, v in GOOD.items() if k != "问题清单"})
    wb = load_workbook(path)
    wb.create_sheet("说明")
    wb.save(path)
    result = run_import(empty_app, path)
    assert not result.errors and result.ignored == ["说明"]
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts,
                                     ignored=result.ignored)
    assert "导入成功" in text and "已忽略工作表：说明" in text


def test_reimporting_an_unchanged_file_reports_rows_as_unchanged(empty_app, tmp_path):
    path = workbook(tmp_path / "r.xlsx", **GOOD)
    first = run_import(empty_app, path)
    assert first.counts == {"单位": (2, 0, 0), "人员": (3, 0, 0), "任务清单": (2, 0, 0), "问题清单": (1, 0, 0)}
    again = run_import(empty_app, path)
    assert again.counts == {"单位": (0, 0, 2), "人员": (0, 0, 3), "任务清单": (0, 0, 2), "问题清单": (0, 0, 1)}
    text = empty_app.renderer.render("import_result", errors=again.errors, counts=again.counts)
    assert "任务清单：新增 0，更新 0，未变 2" in text


def test_a_bad_date_is_shown_as_typed(empty_app, tmp_path):
    bad = {**GOOD, "任务清单": [["T1", "机电工程系", "敢为争先", "x", "", "li", "2026/13/45", "2026-12-31"]]}
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "日期“2026/13/45”无效" in text


def test_the_template_offers_drop_downs_and_marks_required_columns(empty_app, tmp_path):
    from db.models import ROLES, UNIT_CATEGORIES

    write_template(tmp_path / "r.xlsx")
    wb = load_workbook(tmp_path / "r.xlsx")
    lists = {(ws.title, str(dv.sqref).split(":")[0]): dv.formula1
             for ws in wb.worksheets for dv in ws.data_validations.dataValidation if dv.type == "list"}
    assert lists[("人员", "D2")] == '"' + ",".join(ROLES) + '"'
    assert lists[("单位", "B2")] == '"' + ",".join(UNIT_CATEGORIES) + '"'
    for name in ("单位", "人员", "任务清单", "问题清单"):
        marked = {c.value for c in wb[name][1] if c.comment and "必填" in c.comment.text}
        assert marked >= {"单位名称"} and "责任领导" not in marked
    assert {c.value for c in wb["任务清单"][1] if c.comment and "必填" in c.comment.text} == \
        {"编号", "单位名称", "行动", "任务内容", "开始日期", "完成时限"}
    # a category outside the list is a row error, like a role
    bad = {**GOOD, "单位": [["机电工程系", "车间", "zhang", "chat-jd", ""]] + GOOD["单位"][1:]}
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [("单位", 2, "bad_category")]


def test_the_smart_robot_group_column_binds_units_and_an_older_file_keeps_the_binding(empty_app, tmp_path):
    """单位 sheet's optional 群ID: the smart robot's chatid of the unit's group (as 绑定 sets it)."""
    app = empty_app
    units = [["机电工程系", "系（部、院）", "zhang", "chat-jd", "", "wrkJd"],
             ["信息工程系", "系（部、院）", "wang", "", "key-xx", ""]]
    assert "群ID" in SHEETS["单位"]
    assert not run_import(app, workbook(tmp_path / "a.xlsx", **{**GOOD, "单位": units})).errors
    with Session(app.engine) as s:
        assert {u.name: u.aibot_chatid for u in s.exec(select(Unit))} == {"机电工程系": "wrkJd", "信息工程系": ""}
        s.exec(select(Unit).where(Unit.name == "信息工程系")).one().aibot_chatid = "wrkXx"  # bound in chat
        s.commit()
    old = tmp_path / "old.xlsx"  # a file made before the column existed
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in GOOD.items():
        ws = wb.create_sheet(name)
        ws.append([c for c in SHEETS[name] if c != "群ID"])
        for row in rows:
            ws.append(row)
    wb.save(old)
    assert not run_import(app, old).errors
    with Session(app.engine) as s:
        assert {u.name: u.aibot_chatid for u in s.exec(select(Unit))} == {"机电工程系": "wrkJd", "信息工程系": "wrkXx"}
    twice = [units[0], ["信息工程系", "系（部、院）", "wang", "", "key-xx", "wrkJd"]]
    result = run_import(app, workbook(tmp_path / "b.xlsx", **{**GOOD, "单位": twice}))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [("单位", 3, "duplicate")]


LEADERS = dict(
    单位=GOOD["单位"] + [["校领导", "", "", "chat-xld", ""], ["马克思主义学院（思政部、体育部）", "", "", "chat-mk", ""]],
    人员=GOOD["人员"] + [["vp", "刘副校长", "校领导", "", "机电工程系、信息工程系，马克思主义学院（思政部、体育部）"],
                       ["vp2", "陈副书记", "校领导", "分管领导", ""]],
    任务清单=GOOD["任务清单"] + [["T3", "校领导", "深学争优", "学习", "陈副书记", "", "2026-03-01", "2026-12-31"]],
)


def leader_units(app) -> dict[str, set[str]]:
    from db import queries

    with Session(app.engine) as s:
        names = {u.id: u.name for u in s.exec(select(Unit))}
        leaders = list(s.exec(select(Member).where(Member.role == "分管领导")))
        return {userid: {names[i] for i in ids} for userid, ids in queries.oversight(s, leaders).items()}


def test_the_people_sheet_names_a_leaders_units_and_a_task_names_its_leader(empty_app, tmp_path):
    """分管单位 (、 , ， between names; a 、 inside brackets is part of the name): a blank 角色 there is
    分管领导. A task whose 责任领导 is a 分管领导's name puts its unit under them."""
    result = run_import(empty_app, workbook(tmp_path / "r.xlsx", **LEADERS))
    assert not result.errors
    with Session(empty_app.engine) as s:
        assert s.get(Member, "vp").role == "分管领导"
    assert leader_units(empty_app) == {"vp": {"机电工程系", "信息工程系", "马克思主义学院（思政部、体育部）"},
                                       "vp2": {"校领导"}}
    fewer = {**LEADERS, "人员": GOOD["人员"] + [["vp", "刘副校长", "校领导", "分管领导", "信息工程系"],
                                              ["vp2", "陈副书记", "校领导", "分管领导", ""]]}
    again = run_import(empty_app, workbook(tmp_path / "r2.xlsx", **fewer))
    assert again.counts["人员"] == (0, 1, 4) and leader_units(empty_app)["vp"] == {"信息工程系"}
    # An older file without the column leaves the 分管单位 as they are; a new role clears them.
    path = workbook(tmp_path / "r3.xlsx", **{**fewer, "人员": [row[:4] for row in fewer["人员"]]})
    wb = load_workbook(path)
    wb["人员"].delete_cols(5)
    wb.save(path)
    assert run_import(empty_app, path).counts["人员"] == (0, 0, 5)
    assert leader_units(empty_app)["vp"] == {"信息工程系"}
    demoted = {**LEADERS, "人员": GOOD["人员"] + [["vp", "刘副校长", "校领导", "成员", ""],
                                                ["vp2", "陈副书记", "校领导", "分管领导", ""]]}
    assert run_import(empty_app, workbook(tmp_path / "r4.xlsx", **demoted)).counts["人员"] == (0, 1, 4)
    assert leader_units(empty_app) == {"vp2": {"校领导"}}


def test_unknown_units_or_a_role_that_is_not_a_leaders_refuse_the_whole_import(empty_app, tmp_path):
    bad = {**LEADERS, "人员": GOOD["人员"] + [["vp", "刘副校长", "校领导", "分管领导", "机电工程系,外语系，不存在系"],
                                            ["vp2", "陈副书记", "校领导", "负责人", "信息工程系"]]}
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [("人员", 5, "unknown_oversee_unit"),
                                                                  ("人员", 6, "oversee_role")]
    assert counts(empty_app) == (0, 0, 0, 0)
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "【人员】第5行：分管单位中的“外语系”“不存在系”不在单位表中（须写单位全称，多个单位用、或,分隔）" in text
    assert "【人员】第6行：填写了分管单位，角色应为分管领导（或留空），此行是“负责人”" in text


def test_a_leader_named_in_a_task_must_be_one_person(empty_app, tmp_path):
    twins = {**LEADERS, "人员": GOOD["人员"] + [["liu1", "刘明", "校领导", "分管领导", ""],
                                              ["liu2", "刘明", "校领导", "分管领导", ""]],
             "任务清单": GOOD["任务清单"] + [["T3", "校领导", "深学争优", "学习", "刘明", "", "2026-03-01", "2026-12-31"]]}
    result = run_import(empty_app, workbook(tmp_path / "t.xlsx", **twins))
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert "【任务清单】第4行：责任领导“刘明”有多名分管领导同名（liu1、liu2），请改填其账号" in text
    assert counts(empty_app) == (0, 0, 0, 0)
    twins["任务清单"][-1][4] = "liu2"
    assert not run_import(empty_app, workbook(tmp_path / "t2.xlsx", **twins)).errors
    assert leader_units(empty_app) == {"liu1": set(), "liu2": {"校领导"}}


def test_a_unit_without_a_group_is_reached_through_its_leader(empty_app, tmp_path):
    """Only the smart robot's 群ID (which cannot start a conversation), or no group at all: the
    unit's prompts go to its 负责人 1:1, so a 负责人 is enough."""
    only_leader = {**GOOD, "单位": GOOD["单位"] + [["图书馆", "馆", "zhao", "", "", "grp-lib"]],
                   "人员": GOOD["人员"] + [["zhao", "赵六", "图书馆", "负责人"]]}
    result = run_import(empty_app, workbook(tmp_path / "a.xlsx", **only_leader))
    assert result.errors == [] and counts(empty_app)[0] == 3



def test_every_error_of_a_row_is_listed_not_only_the_first(empty_app, tmp_path):
    """issue 24: a row with a bad action, an unknown 责任人 and a bad date gets three lines."""
    bad = {**GOOD, "任务清单": GOOD["任务清单"] + [
        ["T3", "机电工程系", "摸鱼", "x", "", "nobody", "2026-13-01", "2026-04-01"]]}
    result = run_import(empty_app, workbook(tmp_path / "bad.xlsx", **bad))
    assert [(e.sheet, e.row, e.code) for e in result.errors] == [
        ("任务清单", 4, "unknown_person"), ("任务清单", 4, "bad_line"), ("任务清单", 4, "bad_date")]
    text = empty_app.renderer.render("import_result", errors=result.errors, counts=result.counts)
    assert text.count("【任务清单】第4行") == 3
    assert "开始日期“2026-13-01”无效，可写 2026-03-01、2026年3月1日 或 3月1日" in text
    assert counts(empty_app) == (0, 0, 0, 0)


def test_dates_are_taken_as_chat_takes_them(empty_app, tmp_path):
    """issue 24: 3月1日 (this year) and 2026年6月30日 in the workbook, as a 汇报 or 新增任务 would take them."""
    rows = {**GOOD, "任务清单": [["T1", "机电工程系", "敢为争先", "建成实训中心", "", "li", "3月1日", "2026年6月30日"]],
            "问题清单": [["P1", "机电工程系", "消防通道堆放杂物", "", "li", "3.15"]]}
    assert not run_import(empty_app, workbook(tmp_path / "d.xlsx", **rows)).errors
    with Session(empty_app.engine) as s:
        t1 = s.exec(select(Task).where(Task.code == "T1")).one()
        p1 = s.exec(select(Problem).where(Problem.code == "P1")).one()
    assert (str(t1.start_date), str(t1.due_date), str(p1.deadline)) == ("2026-03-01", "2026-06-30", "2026-03-15")
