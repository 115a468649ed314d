"""The monthly ranking as a picture for the broadcast group: one bar a unit in rank order,
coloured by tier, with the change since last month, the month and the formula.

Every text is drawn as plain text (parse_math=False): a unit named "$…$" or with a backslash is
its name, never a formula. matplotlib draws it through the Agg canvas directly (no pyplot: no global figure state, so the
outbox threads may draw at the same time). The Chinese font is the Noto Sans CJK file that the
`mplfonts` package installs with the bot; system fonts are never looked at.
"""
from __future__ import annotations

import importlib.util
import io
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.campaign.scoring import TIER_LOW, TIER_NONE, TIER_OK, TIER_TOP, UnitScore
from bot.render import Renderer
from db.month import Month

MAX_BYTES = 2 * 1024 * 1024  # WeCom: a robot image (before base64) is at most 2 MB
MANY = 40  # more units than this: the top and the bottom KEEP units, and a gap between
KEEP = 15
NOT_RANKED = TIER_NONE  # a unit without a task this month: no bar
DPI = 150
WIDTH_IN = 9.0
ROW_IN = 0.3
HEADER_IN = 1.35
TIERS = (TIER_TOP, TIER_OK, TIER_LOW)
TIER_COLOURS = {TIER_TOP: "#2f9e5a", TIER_OK: "#6f8fb8", TIER_LOW: "#d64541"}
TREND_COLOURS = {"↑": "#2f9e5a", "↓": "#d64541", "新": "#3b6fb6"}
GREY = "#7a7a7a"
NAME_CHARS = 16

_font_lock = threading.Lock()
_font = None
_renderer: Renderer | None = None


def font_file() -> Path:
    """The font file inside the installed mplfonts package (found without importing it)."""
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the Chinese font is missing: install the bot's dependencies (pip install .)")
    path = Path(list(spec.submodule_search_locations)[0]) / "fonts" / "NotoSansCJKsc-Regular.otf"
    if not path.is_file():
        raise RuntimeError(f"the Chinese font is missing: {path} (reinstall the mplfonts package)")
    return path


def _cjk_font():
    """The FontProperties of the bundled CJK font, registered with matplotlib once."""
    global _font
    with _font_lock:
        if _font is None:
            from matplotlib import font_manager

            path = font_file()
            font_manager.fontManager.addfont(str(path))
            _font = font_manager.FontProperties(fname=str(path))
        return _font


def _text(part: str, **data) -> str:
    global _renderer
    if _renderer is None:
        _renderer = Renderer(ZoneInfo("UTC"))  # the picture shows no times
    return _renderer.render("ranking_chart", part=part, **data)


def bars(scores: list[UnitScore]) -> list[UnitScore | int]:
    """What the picture shows, top to bottom: the ranked units (不参评 left out) in rank order; beyond
    MANY units, the first and last KEEP with the number of units between them in their place."""
    ranked = sorted((sc for sc in scores if sc.tier != NOT_RANKED), key=lambda sc: sc.rank)
    if len(ranked) <= MANY:
        return list(ranked)
    return [*ranked[:KEEP], len(ranked) - 2 * KEEP, *ranked[-KEEP:]]


def _trend(sc: UnitScore, previous_ranks: dict[int, int] | None) -> str:
    if previous_ranks is None:
        return sc.trend
    prev = previous_ranks.get(sc.unit.id)
    if prev is None:
        return "新"
    return f"↑{prev - sc.rank}" if prev > sc.rank else f"↓{sc.rank - prev}" if prev < sc.rank else "—"


def ranking_png(scores: list[UnitScore], month: Month, weights_text: str,
                previous_ranks: dict[int, int] | None = None) -> bytes:
    """The ranking picture as PNG bytes, at most MAX_BYTES. `previous_ranks` (unit id -> last
    month's rank) gives the change; without it each score's own trend is shown."""
    rows = bars(scores)
    dpi = DPI
    while True:
        png = _draw(scores, rows, month, weights_text, previous_ranks, dpi)
        if len(png) <= MAX_BYTES or dpi <= 40:
            return png
        dpi = int(dpi * 0.8)


def _draw(scores, rows, month, weights_text, previous_ranks, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    font = _cjk_font()
    ranked = [sc for sc in scores if sc.tier != NOT_RANKED]
    n = max(len(rows), 1)
    height = HEADER_IN + ROW_IN * n + 1.0
    fig = Figure(figsize=(WIDTH_IN, height), dpi=dpi, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 1 - HEADER_IN / height))  # the bars below the header
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    ys = list(range(len(rows)))
    unit_rows = [(y, sc) for y, sc in zip(ys, rows) if not isinstance(sc, int)]
    ax.barh([y for y, _ in unit_rows], [sc.score for _, sc in unit_rows], height=0.7,
            color=[TIER_COLOURS.get(sc.tier, TIER_COLOURS[TIER_OK]) for _, sc in unit_rows])
    top = max([100.0] + [sc.score for _, sc in unit_rows])
    trend_x = top * 1.15
    for y, sc in unit_rows:
        ax.text(sc.score + top * 0.01, y, f"{sc.score:.1f}", va="center", ha="left", fontsize=9, color="#333333",
                parse_math=False)
        trend = _trend(sc, previous_ranks)
        ax.text(trend_x, y, trend, va="center", ha="center", fontproperties=_sized(font, 10),
                color=TREND_COLOURS.get(trend[:1], GREY), parse_math=False)
    for y, gap in zip(ys, rows):
        if isinstance(gap, int):
            ax.text(top * 0.5, y, _text("gap", count=gap), va="center", ha="center",
                    fontproperties=_sized(font, 11), color=GREY,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 2}, parse_math=False)
            ax.axhline(y, color="#dddddd", linestyle=":", linewidth=1, zorder=0)

    ax.text(trend_x, -0.75, _text("trend"), va="bottom", ha="center", fontproperties=_sized(font, 9), color=GREY,
            parse_math=False)
    ax.set_yticks(ys, [f"{sc.rank}. {_short(sc.unit.name)}" if not isinstance(sc, int) else "" for sc in rows],
                  fontproperties=_sized(font, 10), parse_math=False)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # rank 1 at the top
    ax.set_xlim(0, top * 1.22)
    ax.set_xticks([t for t in range(0, int(top) + 1, 20)])
    ax.set_xlabel(_text("axis"), fontproperties=_sized(font, 10), parse_math=False)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#eeeeee", zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    counts = {t: sum(1 for sc in ranked if sc.tier == t) for t in TIERS}
    handles = [Patch(color=TIER_COLOURS[t], label=_text("tier", tier=t, count=counts[t])) for t in TIERS]
    # the header, centred on the picture: title, formula, tiers
    fig.text(0.5, 1 - 0.15 / height, _text("title", month=month), ha="center", va="top",
             fontproperties=_sized(font, 17), parse_math=False)
    fig.text(0.5, 1 - 0.62 / height, weights_text, ha="center", va="top", fontproperties=_sized(font, 11),
             color="#555555", parse_math=False)
    legend = fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.88 / height), ncol=3,
                        frameon=False, prop=_sized(font, 11), labelcolor="#333333")
    legend.set_in_layout(False)
    for label in legend.get_texts():
        label.set_parse_math(False)
    hidden = sum(x for x in rows if isinstance(x, int))
    fig.supxlabel(_text("footer", ranked=len(ranked), unranked=len(scores) - len(ranked), hidden=hidden),
                  fontproperties=_sized(font, 9), color=GREY, parse_math=False)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _short(name: str) -> str:
    """A name too long for the picture keeps its first characters (the text has it in full)."""
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _sized(font, size: float):
    f = font.copy()
    f.set_size(size)
    return f


def ranking_image(s, config, month: Month, at) -> bytes:
    """The picture of `month`'s ranking as of `at`: the computation the text and the export use."""
    from bot.campaign import digest, release

    frozen = release.get(s, month)  # what was published, when it was; else the ranking as of `at`
    scores = release.thaw(frozen.data) if frozen is not None else digest.rank(s, config, month, at)
    formula = Renderer(config.schedule.tz, ranking=config.ranking).render("ranking_formula")
    return ranking_png(scores, month, formula, None)
