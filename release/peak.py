"""Peak memory of a piece of work, measured in a process of its own (benchmarks and tests; Linux).

`measure(setup, run)` starts `python -m release.peak`, which executes `setup` (imports, a warm-up: fixed
costs belong to the baseline), resets the process's high-water mark, records its resident memory as the
baseline, executes `run` and reports:

    baseline_rss   bytes resident after `setup`
    peak_rss       VmHWM after `run`: the highest resident memory, file-backed pages included (a model a
                   library maps and reads counts in full while it stays in page cache)
    peak_anon      the highest anonymous resident memory (RssAnon, sampled every 10 ms): what the work
                   allocates, which a machine must have; mapped files are page cache the kernel may drop
    seconds        wall time of `run`
    result         what `run` left in the variable `result` (JSON)

ru_maxrss is not used: Linux carries the parent's peak across fork + exec into the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        line = next(s for s in fh if s.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def rss() -> int:
    return _status("VmRSS")


def peak_rss() -> int:
    """VmHWM: this process's own high-water mark."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux ≥ 4.0: VmHWM := current RSS
        return True
    except OSError:
        return False


class AnonSampler:
    """The highest RssAnon seen while it runs (a thread sampling /proc/self/status)."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.peak = every, _status("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _status("RssAnon"))

    def __enter__(self) -> AnonSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def measure(setup: str, run: str, *, timeout: float = 3600) -> dict[str, Any]:
    """Run `setup` then `run` (Python source) in a fresh interpreter; the report described above."""
    done = subprocess.run([sys.executable, "-m", "release.peak", setup, run], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"peak measurement failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(setup: str, run: str) -> None:
    scope: dict[str, Any] = {}
    exec(compile(setup, "<setup>", "exec"), scope)
    reset = reset_peak_rss()
    baseline = rss() if reset else peak_rss()
    started = time.perf_counter()
    with AnonSampler() as anon:
        exec(compile(run, "<run>", "exec"), scope)
    seconds = time.perf_counter() - started
    print(json.dumps({"baseline_rss": baseline, "peak_rss": peak_rss(), "peak_anon": anon.peak,
                      "seconds": seconds, "result": scope.get("result")}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
