"""`release plan v4 --matrix` for the full-size v4 definition (no weights): wall time against the
2-second goal and against the bare Python start-up measured in the same run.

    python benchmarks/plan_matrix.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 2.0


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    plan = [sys.executable, "-m", "release", "plan", "v4", "--matrix"]
    bare = [sys.executable, "-c", "pass"]
    timed(plan)  # warm the page cache
    plan_s = statistics.median(timed(plan) for _ in range(args.runs))
    bare_s = statistics.median(timed(bare) for _ in range(args.runs))
    print(f"release plan v4 --matrix: median {plan_s:.3f} s over {args.runs} runs")
    print(f"python start-up baseline: median {bare_s:.3f} s")
    print(f"ratio plan / python start-up: {plan_s / bare_s:.1f}x")
    print(f"ratio plan / {GOAL_S:.0f} s goal: {plan_s / GOAL_S:.2f} ({'met' if plan_s < GOAL_S else 'MISSED'})")


if __name__ == "__main__":
    main()
