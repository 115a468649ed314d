"""Cells written from user or roster text: always text, never a formula (CSV/formula injection)."""
from __future__ import annotations

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES

# What Excel, LibreOffice and WPS may take for the start of a formula when a cell is edited.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def literal(ws, value):
    """`value` as it should be written to `ws`: a string that could be read as a formula (or an
    error code such as #N/A) becomes a text cell with Excel's quote prefix, so it is shown, and
    kept on editing, exactly as typed. Anything else is returned unchanged, to stay cheap."""
    if isinstance(value, str) and (value.startswith(FORMULA_START) or value in ERROR_CODES):
        cell = WriteOnlyCell(ws, value=value)  # a plain Cell: fits write-only and normal sheets
        cell.data_type = "s"
        cell.quotePrefix = True
        return cell
    return value


def literal_row(ws, values) -> list:
    return [literal(ws, v) for v in values]
