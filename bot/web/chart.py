"""A line chart as inline SVG, drawn on the server: no script, no font or file from elsewhere."""
from __future__ import annotations

from markupsafe import Markup, escape

W, H = 480, 264
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 38, 44


def line_chart(labels: list[str], series: list[tuple[str, str, list[float | None]]], title: str,
               running: str = "") -> Markup:
    """`series`: (name, colour, values on a 0-100 scale, None for no value) drawn over `labels`.
    `running`: the last label is a month not yet over (e.g. "截至10日", written under it): its
    points are hollow and joined by a dashed line, apart from the finished months.
    The SVG scales to its container's width."""
    n = max(len(labels), 1)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - max(0.0, min(v, 100.0)) / 100)

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg" font-size="15">']
    for v in range(0, 101, 20):
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#7a828c">{v}</text>')
    for i, label in enumerate(labels):
        out.append(f'<text x="{x(i):.1f}" y="{H - 24}" text-anchor="middle" font-size="12" fill="#7a828c">{escape(label)}</text>')
    last = len(labels) - 1 if running else len(labels)  # the first point drawn apart
    if running:
        out.insert(1, f'<rect class="running" x="{x(last) - plot_w / n / 2:.1f}" y="{TOP}" width="{plot_w / n:.1f}" '
                      f'height="{plot_h}" fill="#f3f5f8"/>')  # under the grid
        out.append(f'<text x="{min(x(last), W - RIGHT - 26):.1f}" y="{H - 8}" text-anchor="middle" font-size="12" '
                   f'fill="#b71c1c">{escape(running)}</text>')
    lx = LEFT
    for name, colour, values in series:
        out.append(f'<rect x="{lx}" y="10" width="16" height="5" fill="{colour}"/>'
                   f'<text x="{lx + 20}" y="18" fill="#333">{escape(name)}</text>')
        lx += 36 + 15 * len(name)
        run: list[str] = []
        for i, v in enumerate(values[:last] + [None]):
            if v is None:
                if len(run) > 1:
                    out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{" ".join(run)}"/>')
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                       f'<title>{escape(labels[i])} {escape(name)} {v:.1f}</title></circle>')
        v = values[last] if last < len(values) else None
        if v is not None:
            before = values[last - 1] if last > 0 else None
            if before is not None:
                out.append(f'<line class="running" x1="{x(last - 1):.1f}" y1="{y(before):.1f}" x2="{x(last):.1f}" '
                           f'y2="{y(v):.1f}" stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>')
            out.append(f'<circle class="running" cx="{x(last):.1f}" cy="{y(v):.1f}" r="4" fill="#fff" stroke="{colour}" '
                       f'stroke-width="2"><title>{escape(labels[last])} {escape(running)} {escape(name)} {v:.1f}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))
