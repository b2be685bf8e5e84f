"""`release plan v4` and `release plan v4 --matrix --json` for the full-size v4 definition (no weights): wall
time against the 1-second goal and against the bare Python start-up measured in the same run, and the
modules each run imported (neither torch nor transformers: plan runs no model).

    python benchmarks/plan_matrix.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.0
# Runs the command as `release` does, then reports which heavy packages got imported.
PROBE = ("import runpy, sys\n"
         "sys.argv = ['release', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('release', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "sys.stderr.write('HEAVY ' + ' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
         "{'torch', 'transformers', 'numpy', 'huggingface_hub', 'git'})) + '\\n')\n")


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU time (user + system) is what a busy machine moves least."""
    before, t = os.times(), time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - t, os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def medians(cmd: list[str], runs: int) -> tuple[float, float]:
    samples = [timed(cmd) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def heavy_imports(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY"))
    return line.removeprefix("HEAVY").strip() or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as dist:
        commands = {"plan v4": ["plan", "v4", "--dist", dist],
                    "plan v4 --matrix --json": ["plan", "v4", "--matrix", "--json"]}
        bare = [sys.executable, "-c", "pass"]
        for argv in commands.values():
            timed([sys.executable, "-m", "release", *argv])  # warm the page cache
        bare_s, bare_cpu = medians(bare, args.runs)
        print(f"python start-up baseline: median {bare_s:.3f} s wall, {bare_cpu:.3f} s CPU over {args.runs} runs")
        for label, argv in commands.items():
            s, cpu = medians([sys.executable, "-m", "release", *argv], args.runs)
            print(f"release {label}: median {s:.3f} s wall ({s / bare_s:.1f}x python start-up; {s / GOAL_S:.2f} "
                  f"of the {GOAL_S:.0f} s goal, {'met' if s < GOAL_S else 'MISSED'}), {cpu:.3f} s CPU "
                  f"({cpu / max(bare_cpu, 1e-3):.1f}x; {cpu / GOAL_S:.2f} of the goal); imports of "
                  f"torch/transformers/numpy/huggingface_hub/git: {heavy_imports(argv)}")


if __name__ == "__main__":
    main()
