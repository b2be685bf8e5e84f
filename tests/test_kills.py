"""A GGUF sweep killed early (issue 19.16): kill -9 half a second into `gguf: quantizing` — while the spawn
workers are still starting — leaves no worker and no resource tracker behind; SIGTERM and Ctrl-C leave no
`gguf/.partial` and end in one line."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest
from test_robustness import _build_until_quantizing, _errors, _processes_with, prepared_dist  # noqa: F401  (a fixture)


def _gone_within(mark: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _processes_with(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _processes_with(mark)


def _wait_for_a_worker(parent: int, timeout: float = 30) -> None:
    """Until `parent` has started a spawn worker: from then until the worker's initializer has run (tens of
    milliseconds at least: an interpreter starts and imports), it is the window."""
    deadline = time.monotonic() + timeout
    tasks = Path(f"/proc/{parent}/task")
    while time.monotonic() < deadline:
        try:
            children = [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]
        except OSError:
            children = []
        for pid in children:
            try:
                if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return
            except OSError:
                continue
        time.sleep(0.0005)
    raise AssertionError("no spawn worker started")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["as the first worker starts", "0.5 s in"])
def test_kill_9_while_the_workers_start_leaves_no_process(prepared_dist: Path, tmp_path: Path,  # noqa: F811
                                                          when: str) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(prepared_dist, dist, copy_function=os.link)
    mark = f"RELEASE_TEST_{uuid.uuid4().hex}"
    proc, _ = _build_until_quantizing(dist, mark)
    if when == "0.5 s in":
        time.sleep(0.5)
    else:  # 25 ms on: its parent has handed it its work (a worker killed before that ends at once), and its
        _wait_for_a_worker(proc.pid)  # interpreter is still starting (its initializer has not run)
        time.sleep(0.025)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -9
    left = _gone_within(mark, 5)
    assert not left, f"still running 5 s after kill -9 of the parent: {_describe(left)}"


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            out.append(f"{pid}: {cmdline[:200]}")
        except OSError:
            out.append(f"{pid}: (gone)")
    return "; ".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_leave_no_partial_folder(prepared_dist: Path, tmp_path: Path,  # noqa: F811
                                                    how: str) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(prepared_dist, dist, copy_function=os.link)
    mark = f"RELEASE_TEST_{uuid.uuid4().hex}"
    proc, lines = _build_until_quantizing(dist, mark)
    time.sleep(0.5)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
    else:
        os.kill(proc.pid, signal.SIGTERM)
    assert proc.stderr is not None
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code == {"SIGTERM": 143, "SIGINT": 130}[how], ("".join(lines) + rest)[-3000:]
    assert "Traceback" not in rest and len(_errors(rest)) == 1, rest
    assert not (dist / "demo" / "gguf" / ".partial").exists(), "the sweep's staging folder was left behind"
    assert not list((dist / "demo" / "gguf").glob("**/.*.partial")), "a partial tier file was left behind"
    assert not _gone_within(mark, 10)
