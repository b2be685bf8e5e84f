"""The GGUF card's chart: every measured tier's KL divergence against its file size, as a standalone SVG
the GGUF repo ships beside its README (the Hub renders it in the card).

Drawn from artifact facts only (sizes and `facts.quality`), so `--finish` on another machine draws the
same bytes. The KL axis is logarithmic when the tiers span more than a factor of 20 (a real sweep runs
from ≈0.001 at Q8_0 to ≈0.5 at 2 bits), else linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

CHART_FILE = "quality-kld-vs-size.svg"  # in the GGUF repo, beside its README
W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 78, 150, 48, 58
POINT = "#1f77b4"
RECOMMENDED = "#d62728"
REMOVED = "#8c8c8c"
LINE = 14  # label height
CHAR_WIDTH = 7.0  # an upper bound of a 12 px sans-serif character's width, for placing labels


@dataclass(frozen=True)
class Point:
    tier: str
    size: int  # bytes
    kld: float  # nats per token
    recommended: bool = False
    removed: bool = False


def _unit(max_bytes: int) -> tuple[str, float]:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if max_bytes >= scale:
            return unit, scale
    return "B", 1.0


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round linear ticks covering [lo, hi]."""
    span = hi - lo or abs(hi) or 1.0
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    start = math.floor(lo / step) * step
    return [round(start + i * step, 12) for i in range(math.ceil((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def svg_chart(points: list[Point], *, title: str, subtitle: str) -> str:
    """The chart as SVG text (deterministic: the same points give the same bytes)."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="{LEFT}" y="38" fill="#555555">{escape(subtitle)}</text>']
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP + 10
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#cccccc"/>')
    if not points:
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" fill="#555555">'
                   "No tier measured yet</text></svg>")
        return "\n".join(out) + "\n"
    unit, scale = _unit(max(p.size for p in points))
    xs = [p.size / scale for p in points]
    xt = _ticks(0.0, max(xs) * 1.05)
    xmax = xt[-1]
    klds = [max(p.kld, 1e-9) for p in points]
    log = max(klds) / min(klds) > 20
    if log:
        lo, hi = math.floor(math.log10(min(klds))), math.ceil(math.log10(max(klds)))
        hi = hi if hi > lo else lo + 1
        yt = [10.0 ** e for e in range(lo, hi + 1)]

        def ypos(v: float) -> float:
            return y0 - (math.log10(max(v, 1e-9)) - lo) / (hi - lo) * (y0 - y1)
    else:
        yt = _ticks(0.0, max(klds) * 1.08)

        def ypos(v: float) -> float:
            return y0 - v / yt[-1] * (y0 - y1)

    def xpos(v: float) -> float:
        return x0 + v / xmax * (x1 - x0)

    for t in xt:
        x = xpos(t)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in yt:
        y = ypos(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{H - 18}" text-anchor="middle">File size ({unit})</text>')
    scale_name = "log scale" if log else "linear"
    out.append(f'<text transform="translate(18 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"KL divergence, nats/token ({scale_name}; lower is better)</text>")
    marks = [(xpos(p.size / scale), ypos(p.kld)) for p in points]
    boxes: list[tuple[float, float, float, float]] = []  # labels placed so far (x0, y0, x1, y1)

    def free(box: tuple[float, float, float, float]) -> bool:
        bx0, by0, bx1, by1 = box
        if bx0 < 2 or bx1 > W - 2:
            return False
        hits_mark = any(bx0 - 8 <= mx <= bx1 + 8 and by0 - 8 <= my <= by1 + 8 for mx, my in marks)
        return not hits_mark and not any(bx0 < c1 and c0 < bx1 and by0 < d1 and d0 < by1 for c0, d0, c1, d1 in boxes)

    for p in sorted(points, key=lambda q: (ypos(q.kld), q.size, q.tier)):
        x, y = xpos(p.size / scale), ypos(p.kld)
        colour = REMOVED if p.removed else RECOMMENDED if p.recommended else POINT
        if p.removed:
            out.append(f'<path d="M{x - 5:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 5:.1f}M{x - 5:.1f} {y + 5:.1f}'
                       f'L{x + 5:.1f} {y - 5:.1f}" stroke="{colour}" stroke-width="2"/>')
        else:
            r = 7 if p.recommended else 5
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}"/>')
        label = p.tier + (" ★" if p.recommended else "") + (" (removed)" if p.removed else "")
        width = CHAR_WIDTH * len(label)
        # Right of the point, else above or below it, else left of it; as a last resort stacked below.
        options = [(x + 10, y + 4, "start"), (x + 6, y - 10, "start"), (x + 6, y + 18, "start"),
                   (x - 10, y + 4, "end"), (x - 6, y - 10, "end"), (x - 6, y + 18, "end")]
        for lx, ly, anchor in options:
            box = (lx, ly - 11, lx + width, ly + 3) if anchor == "start" else (lx - width, ly - 11, lx, ly + 3)
            if free(box):
                break
        else:
            lx, ly, anchor = x + 10, y + 4, "start"
            while not free((lx, ly - 11, lx + width, ly + 3)) and ly < H:
                ly += LINE
            box = (lx, ly - 11, lx + width, ly + 3)
        boxes.append(box)
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="{colour}">{escape(label)}</text>')
    lx, ly = x1 + 16, y1 + 10
    legend = [(POINT, "tier"), (RECOMMENDED, "★ recommended")]
    if any(p.removed for p in points):
        legend.append((REMOVED, "removed (threshold)"))
    for i, (colour, text) in enumerate(legend):
        out.append(f'<circle cx="{lx:.1f}" cy="{ly + i * 18:.1f}" r="5" fill="{colour}"/>')
        out.append(f'<text x="{lx + 10:.1f}" y="{ly + i * 18 + 4:.1f}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
