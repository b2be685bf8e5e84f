"""The GGUF card's chart: every measured tier's KL divergence against its file size, as a standalone SVG
the GGUF repo ships beside its README (the Hub renders it in the card).

Drawn from artifact facts only (sizes and `facts.quality`), so `--finish` on another machine draws the
same bytes. The KL axis is logarithmic when the tiers span more than a factor of 20 (a real sweep runs
from ≈0.001 at Q8_0 to ≈0.5 at 2 bits), else linear; the size axis spans the measured sizes.

Labels: a real sweep crowds a dozen tiers between 11 and 13 GB, so every label is placed where it
overlaps no other label, no point and no leader line — beside its point when there is room, else further
out on a leader line back to the point (`place_labels`). When even that fails, the points are numbered
and a key lists the tiers under the plot. Each label's width is fixed with `textLength` (computed from
Helvetica's advance widths), so the browser draws it in exactly the box it was placed in, whatever font
it substitutes. Points, labels and leaders carry `data-tier` (and points their centre), so tests can
check the geometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

CHART_FILE = "quality-kld-vs-size.svg"  # in the GGUF repo, beside its README
W = 760
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 70, 58
PLOT_H = 460
POINT = "#1f77b4"
RECOMMENDED = "#d62728"
REMOVED = "#8c8c8c"
FONT_SIZE = 12
# The box a 12 px label occupies around its baseline, as Chromium measures it (getBBox: the font's ascent
# and descent), and what the last glyph may overhang its advance.
ASCENT, DESCENT, OVERHANG = 11.0, 3.0, 1.5
PAD = 2.0  # clear space kept around every label
NEAR_GAP = 4.0  # between a point's marker and a label placed beside it
MAX_RADIUS = 230.0  # how far a label may move from its point on a leader line
KEY_LINE = 16  # height of a row of the key (numbered fallback)

# Advance widths of Helvetica (= Arial) in 1/1000 em, the fonts the SVG asks for; characters not listed
# count as a full em, so a wider substitute font is squeezed slightly by `textLength`, never spills over.
_WIDTHS = {" ": 278, "(": 333, ")": 333, "-": 333, ".": 278, "_": 556, "★": 800, "·": 278, ",": 278}
_WIDTHS.update(dict.fromkeys("0123456789", 556))
_WIDTHS.update(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556,
                                                   833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
                                                   667, 611), strict=True))
_WIDTHS.update(zip("abcdefghijklmnopqrstuvwxyz", (556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222,
                                                   833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500,
                                                   500, 500), strict=True))


@dataclass(frozen=True)
class Point:
    tier: str
    size: int  # bytes
    kld: float  # nats per token
    recommended: bool = False
    removed: bool = False


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, pad: float = 0.0) -> bool:
        return (self.x0 - pad < other.x1 and other.x0 - pad < self.x1
                and self.y0 - pad < other.y1 and other.y0 - pad < self.y1)

    def distance(self, x: float, y: float) -> float:
        return math.hypot(max(self.x0 - x, 0.0, x - self.x1), max(self.y0 - y, 0.0, y - self.y1))

    def nearest(self, x: float, y: float) -> tuple[float, float]:
        return min(max(x, self.x0), self.x1), min(max(y, self.y0), self.y1)

    def inside(self, outer: Box) -> bool:
        return outer.x0 <= self.x0 and self.x1 <= outer.x1 and outer.y0 <= self.y0 and self.y1 <= outer.y1


@dataclass(frozen=True)
class Mark:
    """A drawn point: centre and radius."""

    x: float
    y: float
    r: float


@dataclass(frozen=True)
class Placed:
    x: float  # text anchor (start) and baseline
    y: float
    width: float
    leader: tuple[float, float, float, float] | None  # from the point's rim to the label's box

    @property
    def box(self) -> Box:
        return Box(self.x, self.y - ASCENT, self.x + self.width + OVERHANG, self.y + DESCENT)


def text_width(text: str, size: float = FONT_SIZE) -> float:
    return round(sum(_WIDTHS.get(c, 1000) for c in text) * size / 1000, 1)


def _segment_hits_box(ax: float, ay: float, bx: float, by: float, box: Box) -> bool:
    """Whether segment a→b meets the box (Liang–Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = bx - ax, by - ay
    for p, q in ((-dx, ax - box.x0), (dx, box.x1 - ax), (-dy, ay - box.y0), (dy, box.y1 - ay)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _segments_cross(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    def orient(px: float, py: float, qx: float, qy: float, rx: float, ry: float) -> float:
        return (qx - px) * (ry - py) - (qy - py) * (rx - px)

    ax, ay, bx, by = a
    cx, cy, dx, dy = b
    d1, d2 = orient(cx, cy, dx, dy, ax, ay), orient(cx, cy, dx, dy, bx, by)
    d3, d4 = orient(ax, ay, bx, by, cx, cy), orient(ax, ay, bx, by, dx, dy)
    return d1 * d2 < 0 and d3 * d4 < 0


def _candidates(mark: Mark, width: float, reach: float) -> list[tuple[float, float, bool]]:
    """Text origins around a point, nearest first: beside it (right, left, above, below, diagonals), then
    on rings further out (with a leader line)."""
    r, g = mark.r, NEAR_GAP
    mid = (ASCENT - DESCENT) / 2  # baseline offset that centres the text on the point
    near = [(mark.x + r + g, mark.y + mid), (mark.x - r - g - width, mark.y + mid),
            (mark.x - width / 2, mark.y - r - g - DESCENT), (mark.x - width / 2, mark.y + r + g + ASCENT),
            (mark.x + r, mark.y - r - DESCENT), (mark.x - r - width, mark.y - r - DESCENT),
            (mark.x + r, mark.y + r + ASCENT), (mark.x - r - width, mark.y + r + ASCENT)]
    out = [(x, y, False) for x, y in near]
    radius = 2 * r + 18.0
    while radius <= reach:
        steps = max(16, int(2 * math.pi * radius / 14))
        ring = []
        for i in range(steps):
            angle = 2 * math.pi * i / steps
            cx, cy = mark.x + radius * math.cos(angle), mark.y - radius * math.sin(angle)
            # prefer sideways spots: a label left or right of its point reads more naturally
            ring.append((abs(math.sin(angle)), i, cx - width / 2, cy + mid))
        out += [(x, y, True) for _, _, x, y in sorted(ring)]
        radius += 12.0
    return out


def place_labels(marks: list[Mark], widths: list[float], area: Box, *, strict: bool = True) -> list[Placed] | None:
    """A position for every label (same order as `marks`), or None when some label finds no free spot.

    Greedy: a spot is free when its box (with PAD) stays in `area` and touches no placed label, no point
    and no leader line, and its own leader touches no label, no other point and no leader. Which label
    goes first decides what the later ones find, so a few orders are tried and the one with the shortest
    leader lines in all wins. Not `strict`: leaders may cross each other and pass over points, and labels
    may go anywhere in the plot (the last resort for numbers).
    """
    n = len(marks)

    def crowding(i: int) -> int:
        return sum(1 for o in marks if math.hypot(o.x - marks[i].x, o.y - marks[i].y) < 60)

    orders = [sorted(range(n), key=lambda i: (marks[i].x, marks[i].y)),
              sorted(range(n), key=lambda i: (marks[i].y, marks[i].x)),
              sorted(range(n), key=lambda i: (-marks[i].x, marks[i].y)),
              sorted(range(n), key=lambda i: (-marks[i].y, marks[i].x)),
              sorted(range(n), key=lambda i: (-crowding(i), marks[i].x, marks[i].y)),
              sorted(range(n), key=lambda i: (crowding(i), marks[i].x, marks[i].y))]
    best: list[Placed] | None = None
    for order in orders:
        spots = _place_in_order(marks, widths, area, order, strict)
        if spots is not None and (best is None or _leader_length(spots) < _leader_length(best)):
            best = spots
    return best


def _leader_length(spots: list[Placed]) -> float:
    return sum(math.hypot(s.leader[2] - s.leader[0], s.leader[3] - s.leader[1]) for s in spots if s.leader)


def _place_in_order(marks: list[Mark], widths: list[float], area: Box, order: list[int],
                    strict: bool) -> list[Placed] | None:
    placed: dict[int, Placed] = {}
    leaders: list[tuple[float, float, float, float]] = []
    for i in order:
        mark, width = marks[i], widths[i]
        spot = None
        reach = MAX_RADIUS if strict else math.hypot(area.x1 - area.x0, area.y1 - area.y0)
        for x, y, far in _candidates(mark, width, reach):
            box = Placed(x, y, width, None).box
            if not box.inside(area) or _blocked(box, marks, placed, leaders):
                continue
            leader = None
            if far:
                ex, ey = box.nearest(mark.x, mark.y)
                length = math.hypot(ex - mark.x, ey - mark.y)
                sx, sy = mark.x + (ex - mark.x) * mark.r / length, mark.y + (ey - mark.y) * mark.r / length
                leader = (round(sx, 1), round(sy, 1), round(ex, 1), round(ey, 1))
                if not _leader_free(leader, i, marks, placed, leaders if strict else [], strict):
                    continue
            spot = Placed(round(x, 1), round(y, 1), width, leader)
            break
        if spot is None:
            return None
        placed[i] = spot
        if spot.leader:
            leaders.append(spot.leader)
    return [placed[i] for i in range(len(marks))]


def _blocked(box: Box, marks: list[Mark], placed: dict[int, Placed],
             leaders: list[tuple[float, float, float, float]]) -> bool:
    if any(box.overlaps(p.box, PAD) for p in placed.values()):
        return True
    if any(box.distance(m.x, m.y) <= m.r + PAD for m in marks):
        return True
    padded = Box(box.x0 - PAD, box.y0 - PAD, box.x1 + PAD, box.y1 + PAD)
    return any(_segment_hits_box(*seg, padded) for seg in leaders)


def _leader_free(leader: tuple[float, float, float, float], i: int, marks: list[Mark], placed: dict[int, Placed],
                 leaders: list[tuple[float, float, float, float]], strict: bool) -> bool:
    for p in placed.values():
        b = p.box
        if _segment_hits_box(*leader, Box(b.x0 - PAD, b.y0 - PAD, b.x1 + PAD, b.y1 + PAD)):
            return False
    own = marks[i]
    for j, m in enumerate(marks if strict else []):
        touching = math.hypot(m.x - own.x, m.y - own.y) <= m.r + own.r + PAD  # the leader starts among them
        if j != i and not touching and _segment_distance(m.x, m.y, *leader) <= m.r + PAD:
            return False
    return not any(_segments_cross(leader, other) for other in leaders)


# ---- axes --------------------------------------------------------------------------------------------

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
    return [round(start + i * step, 12) for i in range(math.ceil((hi - start) / step - 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _y_axis(klds: list[float], y0: float, y1: float) -> tuple[list[float], Callable[[float], float], bool]:
    log = max(klds) / min(klds) > 20
    if log:
        # a tenth of a decade of margin, not whole decades: the points get the plot's full height
        lo, hi = math.log10(min(klds)) - 0.1, math.log10(max(klds)) + 0.1
        ticks = [m * 10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
        return ([t for t in ticks if lo <= math.log10(t) <= hi],
                lambda v: y0 - (math.log10(max(v, 1e-9)) - lo) / (hi - lo) * (y0 - y1), True)
    ticks = _ticks(0.0, max(klds) * 1.08)
    return ticks, lambda v: y0 - v / ticks[-1] * (y0 - y1), False


def _x_axis(xs: list[float], x0: float, x1: float) -> tuple[list[float], Callable[[float], float]]:
    """Ticks spanning the sizes (with a margin), not from zero: the tiers sit in a narrow band of sizes."""
    lo, hi = min(xs), max(xs)
    margin = max((hi - lo) * 0.06, hi * 0.02)
    ticks = _ticks(max(0.0, lo - margin), hi + margin)
    start, end = ticks[0], ticks[-1]
    return ticks, lambda v: x0 + (v - start) / (end - start) * (x1 - x0)


# ---- the chart ---------------------------------------------------------------------------------------

def _label_text(p: Point) -> str:
    return p.tier + (" ★" if p.recommended else "") + (" (removed)" if p.removed else "")


def _colour(p: Point) -> str:
    return REMOVED if p.removed else RECOMMENDED if p.recommended else POINT


def svg_chart(points: list[Point], *, title: str, subtitle: str) -> str:
    """The chart as SVG text (deterministic: the same points give the same bytes)."""
    x0, x1, y1 = LEFT, W - RIGHT, TOP
    y0 = TOP + PLOT_H
    marks: list[Mark] = []
    placed: list[Placed] | None = []
    numbered = False
    texts = [_label_text(p) for p in points]
    if points:
        unit, scale = _unit(max(p.size for p in points))
        xt, xpos = _x_axis([p.size / scale for p in points], x0, x1)
        klds = [max(p.kld, 1e-9) for p in points]
        yt, ypos, log = _y_axis(klds, y0, y1)
        marks = [Mark(round(xpos(p.size / scale), 1), round(ypos(k), 1), 7.0 if p.recommended else 5.0)
                 for p, k in zip(points, klds, strict=True)]
        area = Box(x0 + 2, y1 + 2, x1 - 2, y0 - 2)
        placed = place_labels(marks, [text_width(t) for t in texts], area)
        if placed is None:
            # Too crowded for names: each point gets its number (short enough to place) and the key names it.
            numbered = True
            texts = [str(i + 1) for i in range(len(points))]
            widths = [text_width(t) for t in texts]
            placed = place_labels(marks, widths, area) or place_labels(marks, widths, area, strict=False)
            assert placed is not None, "no room even for numbered markers"
    key_rows = math.ceil(len(points) / 3) if numbered else 0
    height = y0 + BOTTOM + (key_rows * KEY_LINE + 12 if numbered else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="{FONT_SIZE}">',
           f'<rect width="{W}" height="{height}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="{LEFT}" y="38" fill="#555555">{escape(subtitle)}</text>',
           f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#cccccc"/>']
    if not points:
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" fill="#555555">'
                   "No tier measured yet</text></svg>")
        return "\n".join(out) + "\n"
    out += _legend(points)
    for t in xt:
        x = xpos(t)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in yt:
        y = ypos(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 40}" text-anchor="middle">File size ({unit})</text>')
    scale_name = "log scale" if log else "linear"
    out.append(f'<text transform="translate(18 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"KL divergence, nats/token ({scale_name}; lower is better)</text>")
    assert placed is not None
    for p, spot in zip(points, placed, strict=True):
        if spot.leader:
            sx, sy, ex, ey = spot.leader
            out.append(f'<line class="leader" data-tier="{escape(p.tier)}" x1="{sx}" y1="{sy}" x2="{ex}" y2="{ey}" '
                       f'stroke="#999999" stroke-width="0.8"/>')
    for p, m in zip(points, marks, strict=True):
        attrs = f'class="point" data-tier="{escape(p.tier)}" data-x="{m.x}" data-y="{m.y}" data-r="{m.r}"'
        colour = _colour(p)
        if p.removed:
            out.append(f'<path {attrs} d="M{m.x - 5:.1f} {m.y - 5:.1f}L{m.x + 5:.1f} {m.y + 5:.1f}M{m.x - 5:.1f} '
                       f'{m.y + 5:.1f}L{m.x + 5:.1f} {m.y - 5:.1f}" stroke="{colour}" stroke-width="2"/>')
        else:
            out.append(f'<circle {attrs} cx="{m.x}" cy="{m.y}" r="{m.r:g}" fill="{colour}"/>')
    kind = "number" if numbered else "label"
    for p, text, spot in zip(points, texts, placed, strict=True):
        out.append(f'<text class="{kind}" data-tier="{escape(p.tier)}" x="{spot.x}" y="{spot.y}" '
                   f'textLength="{spot.width}" lengthAdjust="spacingAndGlyphs" fill="{_colour(p)}">'
                   f"{escape(text)}</text>")
    if numbered:
        out += _key(points, y0 + BOTTOM)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(points: list[Point]) -> list[str]:
    """One row between the subtitle and the plot."""
    legend = [(POINT, "tier"), (RECOMMENDED, "★ recommended")]
    if any(p.removed for p in points):
        legend.append((REMOVED, "removed (threshold)"))
    out, x, y = [], float(LEFT), 56.0
    for colour, text in legend:
        out.append(f'<circle cx="{x + 5:.1f}" cy="{y - 4:.1f}" r="5" fill="{colour}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}">{escape(text)}</text>')
        x += 14 + text_width(text) + 24
    return out


def _key(points: list[Point], top: float) -> list[str]:
    """The numbered markers' key, three columns under the plot."""
    rows = math.ceil(len(points) / 3)
    column = (W - LEFT - RIGHT) / 3
    out = []
    for i, p in enumerate(points):
        x = LEFT + (i // rows) * column
        y = top + (i % rows) * KEY_LINE
        text = f"{i + 1} {_label_text(p)}"
        out.append(f'<text class="key" data-tier="{escape(p.tier)}" x="{x:.1f}" y="{y:.1f}" fill="{_colour(p)}">'
                   f"{escape(text)}</text>")
    return out
