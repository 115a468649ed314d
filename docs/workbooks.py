"""Render the month and year workbooks as LibreOffice prints them, into docs/workbook-*.png:
the showcase college of the browser tests (tests/showcase.py) on 2026-04-10, exported as the
chat's 导出 does, converted by headless LibreOffice to PDF and by pdftoppm to one PNG per page.

    .venv/bin/python docs/workbooks.py        (needs soffice and pdftoppm on PATH)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS.parent / "tests")]

from bot.app import Application  # noqa: E402
from bot.clock import FixedClock  # noqa: E402
from bot.excel.export import generate  # noqa: E402
from conftest import at, make_config, seed  # noqa: E402
from showcase import showcase  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        app = Application(make_config(f"sqlite:///{work / 'duban.db'}"), clock=FixedClock(at(2026, 4, 10, 10)))
        app.migrate()
        seed(app)
        showcase(app)
        with app.session() as s:
            for name, spec in (("month", {"kind": "month", "month": "2026-04"}), ("year", {"kind": "year", "year": 2026})):
                (work / f"workbook-{name}.xlsx").write_bytes(
                    generate(s, app.config, {**spec, "at": app.clock.now().isoformat()}))
        app.engine.dispose()
        for name in ("month", "year"):
            subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{work}/lo", "--convert-to", "pdf",
                            "--outdir", str(work), str(work / f"workbook-{name}.xlsx")], check=True, capture_output=True)
            for old in DOCS.glob(f"workbook-{name}-*.png"):
                old.unlink()
            subprocess.run(["pdftoppm", "-png", "-r", "110", str(work / f"workbook-{name}.pdf"),
                            str(DOCS / f"workbook-{name}")], check=True)
    for png in sorted(DOCS.glob("workbook-*.png")):
        trim(png)
        print(png.relative_to(DOCS.parent))


def trim(png: Path, margin: int = 12) -> None:
    """Cut the page's empty paper, so the picture is the sheet."""
    from PIL import Image, ImageOps

    with Image.open(png) as img:
        box = ImageOps.invert(img.convert("L")).getbbox()
        if box:
            left, top, right, bottom = box
            img.convert("RGB").crop((max(left - margin, 0), max(top - margin, 0), min(right + margin, img.width),
                       min(bottom + margin, img.height))).quantize(64).save(png, optimize=True)


if __name__ == "__main__":
    main()
