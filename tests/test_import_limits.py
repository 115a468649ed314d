"""`duban import` within limits: a workbook over [storage] max_import_mb, over the row cap of a
sheet, or corrupt (a wrong zip checksum, broken sheet XML, entity declarations, a row of
megabytes) gets one line naming the limit or the problem, no traceback, and nothing is stored;
SQLite and PostgreSQL."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, func, select

from bot.cli import main
from bot.excel.roster import write_template
from db.models import Member, Unit

SHEET = "xl/worksheets/sheet1.xml"  # 单位


def config(tmp_path: Path, db_url: str, max_import_mb: float = 10) -> str:
    path = tmp_path / "config.toml"
    storage = f"[storage]\nmax_import_mb = {max_import_mb}\n" if max_import_mb != 10 else ""  # 10: the default
    path.write_text(f'[database]\nurl = "{db_url}"\n{storage}', encoding="utf-8")
    return str(path)


def duban_import(tmp_path: Path, db_url: str, workbook: Path, **limits):
    return CliRunner().invoke(main, ["import", str(workbook), "--config", config(tmp_path, db_url, **limits)])


def stored(db_url: str) -> int:
    from sqlalchemy import create_engine

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as s:
            return s.exec(select(func.count()).select_from(Unit)).one() + \
                s.exec(select(func.count()).select_from(Member)).one()
    finally:
        engine.dispose()


def template(tmp_path: Path) -> Path:
    path = tmp_path / "roster.xlsx"
    write_template(path)
    return path


def rewrite(path: Path, part: str, change) -> Path:
    """A copy of the workbook with one part's bytes changed by `change`."""
    out = path.with_name("changed.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == part:  # rows beyond the sheet's stated dimension are read too
                data = change(re.sub(rb"<dimension [^>]*/>", b"", data))
            dst.writestr(info.filename, data)
    return out


def refused(result, *words: str) -> str:
    """The one line the command printed, after checking it ended with exit status 1 and no traceback."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def migrated(db_url):
    from bot.app import Application
    from conftest import make_config

    app = Application(make_config(db_url))
    app.migrate()
    app.engine.dispose()
    return db_url


def test_the_template_imports_within_the_limits(tmp_path, migrated):
    result = duban_import(tmp_path, migrated, template(tmp_path))
    assert result.exit_code == 0 and "导入成功" in result.output and stored(migrated) > 0


def test_a_workbook_over_max_import_mb_is_refused_naming_the_limit(tmp_path, migrated):
    line = refused(duban_import(tmp_path, migrated, template(tmp_path), max_import_mb=0.005),
                   "0.005 MB", "max_import_mb", "未导入任何数据")
    assert "超过导入上限" in line
    assert stored(migrated) == 0


def test_a_sheet_over_the_row_cap_is_refused_naming_the_limit(tmp_path, migrated, monkeypatch):
    import bot.excel.limits as limits

    monkeypatch.setattr(limits, "MAX_ROWS", 3)
    rows = "".join(f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>单位{n}</t></is></c></row>' for n in range(3, 8))
    path = rewrite(template(tmp_path), SHEET, lambda xml: xml.replace(b"</sheetData>", rows.encode() + b"</sheetData>"))
    refused(duban_import(tmp_path, migrated, path), "超过 3 行")
    assert stored(migrated) == 0


def test_seven_million_empty_rows_in_a_small_file_are_refused_at_the_cap(tmp_path, migrated):
    """The issue's 1 MB workbook of 7 million rows: refused after the cap, not read to the end."""
    from bot.excel.limits import MAX_ROWS

    def many(xml: bytes) -> bytes:
        head, _, tail = xml.partition(b"</sheetData>")
        return head + b"<row/>" * 7_000_000 + b"</sheetData>" + tail

    path = rewrite(template(tmp_path), SHEET, many)
    assert path.stat().st_size < 1024 * 1024
    refused(duban_import(tmp_path, migrated, path), f"超过 {MAX_ROWS} 行")
    assert stored(migrated) == 0


def _bad_crc(path: Path) -> Path:
    """The workbook with one byte of a sheet's stored data changed: its CRC no longer matches."""
    out = path.with_name("crc.xlsx")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    data = bytearray(out.read_bytes())
    at = data.index(b"<sheetData>") + 3
    data[at] ^= 0x01  # '<sheetData>' -> '<shfetData>' would be broken XML; here only the CRC breaks
    data[at] ^= 0x01
    at = data.index("单位名称".encode())
    data[at + 1] ^= 0x01  # a byte inside a character: still stored, the checksum says otherwise
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("corruption", ["bad zip checksum", "broken sheet XML", "entity payload",
                                        "a row of megabytes", "not a zip"])
def test_a_corrupt_workbook_gets_one_line_and_nothing_is_stored(tmp_path, migrated, corruption):
    path = template(tmp_path)
    if corruption == "bad zip checksum":
        path = _bad_crc(path)
    elif corruption == "broken sheet XML":
        path = rewrite(path, SHEET, lambda xml: xml[: len(xml) // 2])
    elif corruption == "entity payload":
        bomb = (b'<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
                + b"".join(b'<!ENTITY %s "%s">' % (c.encode(), (b"&" + p.encode() + b";") * 10)
                           for p, c in zip("abcdefgh", "bcdefghi")) + b"]>")
        path = rewrite(path, SHEET, lambda xml: bomb + xml.replace(b"<t>", b"<t>&i;", 1))
    elif corruption == "a row of megabytes":
        cells = b"<c/>" * 1_000_000
        path = rewrite(path, SHEET, lambda xml: xml.replace(b"</sheetData>", b'<row r="3">' + cells + b"</row></sheetData>"))
    else:
        path.write_bytes(b"PK\x03\x04 not really a zip")
    words = {"bad zip checksum": ("CRC",), "broken sheet XML": ("不是有效的 .xlsx 文件",),
             "entity payload": ("实体声明",), "a row of megabytes": ("超过 256 KB",),
             "not a zip": ("不是有效的 .xlsx 文件",)}[corruption]
    refused(duban_import(tmp_path, migrated, path), *words, "未导入任何数据")
    assert stored(migrated) == 0
