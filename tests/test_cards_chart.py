"""The GGUF card's KLD-vs-size chart at a real sweep's size: 29 tiers, most of them crowded between 11 and
13 GB. Every label must sit beside its point, or be joined to it by a leader line; no two labels overlap,
and no label covers a point. Checked on the SVG's own geometry, and in headless Chromium on what the
browser really draws.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.cards.context import quality_chart
from release.manifest import FileEntry
from release.plan import plan_artifacts
from release.quality.chart import Point, svg_chart
from release.spec.load import load_release

SVG = "{http://www.w3.org/2000/svg}"
GOLDEN_SIZES = Path(__file__).parent / "golden" / "v4" / "planned-sizes.json"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
NEAR = 14.0  # px from a point's centre to its label's box that still reads as "beside it"
# A 12 px label's extent around its baseline as Chromium's getBBox reports it (font ascent and descent),
# and the overhang its last glyph may have past its advance width.
ASCENT, DESCENT, OVERHANG = 11.0, 3.0, 1.5


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def distance(self, x: float, y: float) -> float:
        dx = max(self.x0 - x, 0.0, x - self.x1)
        dy = max(self.y0 - y, 0.0, y - self.y1)
        return math.hypot(dx, dy)

    def crosses(self, ax: float, ay: float, bx: float, by: float) -> bool:
        """Whether the segment a→b passes through the box's interior (sampled finely)."""
        steps = max(2, int(math.hypot(bx - ax, by - ay)))
        for i in range(1, steps):
            t = i / steps
            x, y = ax + t * (bx - ax), ay + t * (by - ay)
            if self.x0 + 0.5 < x < self.x1 - 0.5 and self.y0 + 0.5 < y < self.y1 - 0.5:
                return True
        return False


def _realistic_kld(tier: str, bpw: float) -> float:
    """KL divergence falling with bits per weight, the i-quants and CD mixes a little better at their size
    (the shape of a real sweep: ≈0.0003 nats at Q8_0, ≈0.3 at 2.6 bits)."""
    bonus = 0.8 if tier.startswith(("IQ", "CD-")) else 1.0
    wobble = 1.0 + 0.15 * math.sin(sum(map(ord, tier)))
    return 0.35 * math.exp(-1.3 * (bpw - 3.0)) * bonus * wobble


def v4_measured():
    """v4 with every tier built at its planned size and measured (synthetic but realistic figures)."""
    release = load_release("v4")
    reg = plan_artifacts(release)
    sizes = json.loads(GOLDEN_SIZES.read_text())
    params = 20.4e9
    for tier in release.definition.gguf.tiers:
        a = reg[f"gguf:{tier}"]
        size = sizes[f"gguf:{tier}"]
        a.status = "built"
        a.files = [FileEntry(a.files[0].path, size, "0" * 64)]
        a.facts = {**a.facts, "size": size, "estimated": False,
                   "quality": {"kld_mean": _realistic_kld(tier, size * 8 / params), "top1_agreement": 0.9,
                               "tokens": 4080, "text_sha256": "1" * 64, "kld_p99": 0.5, "ppl": 7.0,
                               "ppl_reference": 6.9, "reference": "F16"}}
    return release, reg


def _geometry(svg: str):
    root = ET.fromstring(svg)
    points: dict[str, tuple[float, float, float]] = {}
    for el in root.iter():
        tier = el.get("data-tier")
        if tier is None or el.get("class") != "point":
            continue
        points[tier] = (float(el.get("data-x")), float(el.get("data-y")), float(el.get("data-r")))
    labels: dict[str, tuple[Box, str]] = {}
    for el in root.iter(f"{SVG}text"):
        if el.get("class") not in ("label", "number"):
            continue
        x, y, width = float(el.get("x")), float(el.get("y")), float(el.get("textLength"))
        anchor = el.get("text-anchor", "start")
        x0 = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        labels[el.get("data-tier")] = (Box(x0, y - ASCENT, x0 + width + OVERHANG, y + DESCENT), el.text or "")
    leaders = {el.get("data-tier"): tuple(float(el.get(k)) for k in ("x1", "y1", "x2", "y2"))
               for el in root.iter(f"{SVG}line") if el.get("class") == "leader"}
    size = (float(root.get("width")), float(root.get("height")))
    return points, labels, leaders, size


def assert_readable(svg: str, tiers: list[str]) -> dict[str, str]:
    """Every tier's label beside its point or on a leader line; no overlaps; all on the canvas. Returns
    how each tier was labelled (near | leader | numbered)."""
    points, labels, leaders, (width, height) = _geometry(svg)
    assert sorted(points) == sorted(tiers)
    assert sorted(labels) == sorted(tiers)
    how: dict[str, str] = {}
    for tier, (box, _text) in labels.items():
        px, py, r = points[tier]
        assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, (tier, box)
        gap = box.distance(px, py)
        if gap <= NEAR:
            how[tier] = "near"
            continue
        assert tier in leaders, f"{tier}: label {gap:.0f} px from its point and no leader line"
        x1, y1, x2, y2 = leaders[tier]
        assert math.hypot(x1 - px, y1 - py) <= r + 1.5, f"{tier}: the leader does not start at the point"
        assert box.distance(x2, y2) <= 1.5, f"{tier}: the leader does not end at the label"
        how[tier] = "leader"
    names = sorted(labels)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not labels[a][0].overlaps(labels[b][0]), f"labels {a} and {b} overlap"
        for other, (px, py, r) in points.items():
            if other != a:
                assert labels[a][0].distance(px, py) > r, f"label {a} covers the point of {other}"
        if a in leaders:
            for other in names:
                if other != a:
                    assert not labels[other][0].crosses(*leaders[a]), f"the leader of {a} crosses label {other}"
    return how


def test_v4_chart_labels_sit_beside_their_points():
    release, reg = v4_measured()
    svg = quality_chart(release, reg)
    tiers = list(release.definition.gguf.tiers)
    how = assert_readable(svg, tiers)
    # The crowd between 11 and 13 GB needs leader lines, the outliers none.
    assert how["Q8_0"] == "near" and how["IQ2_XS"] == "near"
    assert "leader" in how.values()
    # Q4_K_M ★: the label a reader looks for first is drawn where its point is.
    points, labels, _leaders, _size = _geometry(svg)
    box, text = labels["Q4_K_M"]
    assert text == "Q4_K_M ★"
    px, py, _r = points["Q4_K_M"]
    assert box.distance(px, py) <= 80


def _sweep(n: int) -> list[Point]:
    """`n` tiers from 2.6 to 8.6 bits per weight of a 20.4B model, the KLD falling with size."""
    points = []
    for i in range(n):
        bpw = 2.6 + 6.0 * i / (n - 1)
        size = int(bpw * 20.4e9 / 8 * (1 + 0.03 * math.sin(i * 1.7)))
        points.append(Point(f"T{i:02d}-Q{i % 7}_K", size, _realistic_kld(f"T{i}", bpw), recommended=i % 13 == 0))
    return points


def test_crowded_beyond_labels_falls_back_to_numbers_and_a_key():
    """50 tiers: too many names for the plot, so numbered markers and a key, still without overlaps."""
    points = _sweep(50)
    svg = svg_chart(points, title="crowd", subtitle="50 tiers")
    assert_readable(svg, [p.tier for p in points])
    root = ET.fromstring(svg)
    key = {el.get("data-tier"): el.text for el in root.iter(f"{SVG}text") if el.get("class") == "key"}
    numbers = {el.get("data-tier"): el.text for el in root.iter(f"{SVG}text") if el.get("class") == "number"}
    assert sorted(key) == sorted(p.tier for p in points)
    for tier, number in numbers.items():
        assert key[tier].startswith(f"{number} ") and tier in key[tier]


def test_a_few_tiers_need_no_leader_lines():
    points = [Point("Q8_0", 21_000_000_000, 0.001), Point("Q4_K_M", 13_000_000_000, 0.03, recommended=True),
              Point("Q2_K", 8_000_000_000, 0.3)]
    svg = svg_chart(points, title="three", subtitle="3 tiers")
    assert set(assert_readable(svg, [p.tier for p in points]).values()) == {"near"}


# ---- what the browser draws -------------------------------------------------------------------------

MEASURE = """<script>
window.onload = () => {
  const out = [];
  for (const t of document.querySelectorAll('text.label, text.number')) {
    const b = t.getBBox();
    out.push([t.getAttribute('data-tier'), t.getAttribute('class'), b.x, b.y, b.width, b.height]);
  }
  const pre = document.createElement('pre');
  pre.id = 'boxes';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
};
</script>"""


def test_chromium_draws_the_labels_inside_their_boxes(tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    release, reg = v4_measured()
    svg = quality_chart(release, reg)
    page = tmp_path / "chart.html"
    page.write_text(f"<!doctype html><html><body style='margin:0'>{svg}{MEASURE}</body></html>")
    profile = tmp_path / "profile"
    env = {**os.environ, "HOME": str(profile)}
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}"]
    run = subprocess.run([binary, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    start = run.stdout.index('<pre id="boxes">') + len('<pre id="boxes">')
    drawn = json.loads(run.stdout[start:run.stdout.index("</pre>", start)])
    _points, labels, _leaders, _size = _geometry(svg)
    assert len(drawn) == len(labels)
    for tier, _cls, x, y, w, h in drawn:
        box = labels[tier][0]
        # textLength makes the browser fit the text to the computed width whatever the font
        assert box.x0 - 0.5 <= x and x + w <= box.x1 + 0.5, (tier, box, (x, w))
        assert box.y0 - 0.5 <= y and y + h <= box.y1 + 0.5, (tier, box, (y, h))
    if os.environ.get("CHART_SCREENSHOT"):  # for a person to look at: test-artifacts/chart-v4.png
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "chart-v4.svg").write_text(svg)
        subprocess.run([binary, *flags, "--window-size=760,588", f"--screenshot={ARTIFACTS / 'chart-v4.png'}",
                        (ARTIFACTS / "chart-v4.svg").as_uri()], capture_output=True, timeout=120, env=env,
                       check=True)
