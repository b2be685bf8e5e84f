"""Rendering every card of v4 (context, four templates, Hub metadata round-trip through
huggingface_hub, link check, atomic writes) against the one-second goal, measured in this run.

    python benchmarks/cards.py [--runs N] [--release v4]

Prints the median and best wall time of `render_cards` (release already loaded and planned, as in the
pipeline's cards step), the same for the preview, and the ratio to the 1 s goal (< 1 meets it). The
first run (imports, template compilation) is reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from release.cards import build_preview, render_cards  # noqa: E402
from release.plan import plan_artifacts  # noqa: E402
from release.spec.load import load_release  # noqa: E402

GOAL_S = 1.0
PROVENANCE = {"tool_version": "bench", "pipelines_commit": "0" * 40, "pipelines_dirty": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--release", default="v4")
    args = ap.parse_args()

    t0 = time.perf_counter()
    release = load_release(args.release)
    _ = release.siblings  # loaded once per process, as the pipeline does
    load_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / args.release
        times: list[float] = []
        preview_times: list[float] = []
        first = None
        for i in range(args.runs + 1):
            artifacts = plan_artifacts(release)
            t = time.perf_counter()
            cards = render_cards(release, artifacts, out / "cards", provenance=PROVENANCE)
            dt = time.perf_counter() - t
            t = time.perf_counter()
            build_preview(release, artifacts, out / "cards", out / "preview")
            pdt = time.perf_counter() - t
            if i == 0:
                first = (dt, pdt)
            else:
                times.append(dt)
                preview_times.append(pdt)
    med, best = statistics.median(times), min(times)
    print(f"release {args.release}: {len(cards)} cards, {sum(a.size for a in cards)} bytes; "
          f"load_release {load_s:.3f} s (not counted)")
    print(f"render_cards first run: {first[0]:.3f} s   preview first run: {first[1]:.3f} s")
    print(f"render_cards over {args.runs} runs: median {med * 1000:.1f} ms, best {best * 1000:.1f} ms")
    print(f"build_preview over {args.runs} runs: median {statistics.median(preview_times) * 1000:.1f} ms")
    print(f"ratio vs {GOAL_S:.0f} s goal: median {med / GOAL_S:.3f}, first run {first[0] / GOAL_S:.3f} "
          f"→ {'meets' if max(med, first[0]) < GOAL_S else 'MISSES'} the goal")


if __name__ == "__main__":
    main()
