"""Opening an uploaded workbook within limits, streaming (openpyxl read-only): the roster import's
reading layer.

Before openpyxl sees the file: its size (at most [storage] max_import_mb), and then every part of
the zip read through once, which checks each part's checksum, the unpacked total (at most
UNPACKED_RATIO times the file limit), that no part declares entities (<!DOCTYPE, <!ENTITY: an
.xlsx never does), that no sheet has more than MAX_ROWS rows and that no sheet row is larger than
MAX_ROW_BYTES of XML. While the sheets are
read: at most MAX_ROWS rows a sheet and MAX_COLS columns a row. Anything else that goes wrong
reading (broken XML, a part missing) is the same one-line RosterFileError, never a traceback.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

MAX_ROWS = 20_000  # data rows a sheet (the header not counted): 2,000 units of 10 tasks each
MAX_COLS = 64  # columns read a row (the roster's sheets have at most 8)
MAX_ROW_BYTES = 256 * 1024  # XML of one sheet row (to within two chunks); a roster row is under 10 KB
UNPACKED_RATIO = 20  # an .xlsx unpacks to 5-10 times its size
CHUNK = 64 * 1024
_ROW = re.compile(rb"<(?:\w+:)?row[\s>/]")
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)")
READ_ERRORS = (InvalidFileException, zipfile.BadZipFile, zlib.error, ParseError, KeyError, ValueError, TypeError,
               IndexError, OSError, EOFError)


class RosterFileError(Exception):
    """The file is not an .xlsx workbook the import can read, or is over a limit: `kind` and the
    values the message names (cli_bad_workbook)."""

    def __init__(self, error: str, kind: str = "unreadable", **data):
        super().__init__(" ".join(error.split()))  # one line
        self.kind, self.data = kind, data


def open_workbook(path, max_mb: float) -> "LimitedWorkbook":
    """`path`: a file's path, or a binary file object (a unit's lists as sent)."""
    path = path if hasattr(path, "read") else Path(path)
    limit = int(max_mb * 1024 * 1024)
    try:
        size = path.seek(0, 2) if hasattr(path, "read") else path.stat().st_size
    except OSError as exc:
        raise RosterFileError(str(exc)) from None
    if size > limit:
        raise RosterFileError(f"{size} bytes, over {max_mb:g} MB", "too_large", size_mb=f"{size / 1048576:.1f}",
                              limit_mb=f"{max_mb:g}")
    try:
        _check_parts(path, limit * UNPACKED_RATIO, max_mb)
        return LimitedWorkbook(load_workbook(path, read_only=True, data_only=True))
    except RosterFileError:
        raise
    except READ_ERRORS as exc:
        raise RosterFileError(f"{type(exc).__name__}: {exc}") from None


def _check_parts(path: Path, unpacked_limit: int, max_mb: float) -> None:
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            total += info.file_size
            if total > unpacked_limit:
                raise RosterFileError(f"unpacks to more than {unpacked_limit} bytes", "unpacked_too_large",
                                      limit_mb=f"{unpacked_limit / 1048576:g}", max_mb=f"{max_mb:g}")
            sheet = info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")
            with zf.open(info) as part:  # read through: a part whose checksum is wrong raises here
                tail, without_row, rows = b"", 0, 0
                while chunk := part.read(CHUNK):
                    data = tail + chunk
                    if _DECLARATION.search(data):
                        raise RosterFileError(f"{info.filename} declares entities", "entities", part=info.filename)
                    if not sheet:
                        tail = data[-16:]
                        continue
                    # counted here: openpyxl reads a sheet that states no dimension to its end on opening
                    found = len(_ROW.findall(data)) - len(_ROW.findall(tail))
                    rows += found
                    if rows > MAX_ROWS + 1:
                        raise RosterFileError(f"a sheet has more than {MAX_ROWS} rows", "too_many_rows", sheet="",
                                              limit=MAX_ROWS)
                    # a chunk without a row tag is inside one row: too many of them in a row, a row too large
                    without_row = 0 if found else without_row + len(chunk)
                    if without_row > MAX_ROW_BYTES:
                        raise RosterFileError(f"a sheet row over {MAX_ROW_BYTES // 1024} KB of XML", "row_too_large",
                                              limit_kb=MAX_ROW_BYTES // 1024)
                    tail = data[-16:]


class LimitedWorkbook:
    """openpyxl's read-only workbook, its sheets read within MAX_ROWS and MAX_COLS."""

    def __init__(self, wb):
        self.wb = wb
        self.sheetnames = wb.sheetnames

    def __getitem__(self, name: str) -> "LimitedSheet":
        return LimitedSheet(self.wb[name], name)

    def close(self) -> None:
        self.wb.close()


class LimitedSheet:
    def __init__(self, ws, name: str):
        self.ws, self.name = ws, name

    def iter_rows(self, **kwargs):
        # bounds given, openpyxl reads no further (without, a sheet that states no dimension is
        # read to its end first, to find one); the row after the cap's last says "too many"
        kwargs["max_col"] = min(kwargs.get("max_col") or MAX_COLS, MAX_COLS)
        kwargs["max_row"] = min(kwargs.get("max_row") or MAX_ROWS + 2, MAX_ROWS + 2)
        try:
            for n, row in enumerate(self.ws.iter_rows(**kwargs), start=1):
                if n > MAX_ROWS + 1:
                    raise RosterFileError(f"sheet {self.name} has more than {MAX_ROWS} rows", "too_many_rows",
                                          sheet=self.name, limit=MAX_ROWS)
                yield row
        except RosterFileError:
            raise
        except READ_ERRORS as exc:
            raise RosterFileError(f"{type(exc).__name__}: {exc}") from None
