"""How runs end when things go wrong (issue 13: 1, 2, 23–28): selectors that select nothing, an unreachable
Hub, unreadable state, two runs on one --dist, Ctrl-C and SIGTERM (children included), a full disk, and a
dry run's summary. Each ends in one line, with the contract's exit status, and no traceback."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli
from release.errors import InputError, WorkError
from release.pipeline import Context, Options, run_build, select
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]


def _release(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=timeout)


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(("error:", "terminated", "interrupted"))]


# ---- 1, 27: selectors ---------------------------------------------------------------------------------

def test_selectors_select_something_or_are_refused(tmp_path: Path) -> None:
    ctx = Context(load_release("demo"), Options(dist_root=tmp_path, quiet=True))
    selected = select(ctx, ["hub"])
    hub = [i for i in selected if ctx.artifacts[i].kind != "quality"]
    assert hub and all(ctx.artifacts[i].destination.kind == "hub" for i in hub)
    assert {ctx.artifacts[i].destination.repo for i in hub} == {a.destination.repo for a in ctx.artifacts
                                                                if a.destination and a.destination.kind == "hub"}
    # With them, the measurement of each (a tier built is a tier measured), published nowhere.
    assert {i for i in selected if i not in hub} == {a.id for a in ctx.artifacts.of_kind("quality")
                                                     if a.recipe.get("measures") in hub}
    assert select(ctx, ["hub:demo/tiny-gemma4-6e-NVFP4A16"]) == ["nvfp4", "card:nvfp4", "quality:nvfp4"]
    for bad in ("gguf:Q9_9", "hub:demo/nope", "ollama:nope"):
        with pytest.raises(InputError, match="selects nothing"):
            select(ctx, [bad])
    proc = _release("build", "demo", "--only", "gguf:Q9_9", "--dist", str(tmp_path))
    assert proc.returncode == 2 and "gguf:Q9_9" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "demo").exists()


# ---- 2: network failures ------------------------------------------------------------------------------

def test_unreachable_hub_is_one_line(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "demo"  # the demo with its base on a Hub that does not answer
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', ""))
    proc = _release("publish", str(folder), "--dry-run", "--dist", str(tmp_path / "dist"),
                    "--hub-endpoint", "http://127.0.0.1:9", env={"HF_TOKEN": "hf_robustness_token"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = _errors(proc.stderr)
    # Access is checked before anything is fetched: the Hub's first answer (who the token is) never comes.
    assert "whoami" in line and "127.0.0.1:9" in line and "refused" in line and "nothing was done" in line
    assert "hf_robustness_token" not in proc.stderr and not (tmp_path / "dist").exists()


# ---- 23: unreadable state ----------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["[]", '{"artifacts": []}', "binary", "folder", "records of junk"])
def test_unreadable_state_is_treated_as_absent(tmp_path: Path, what: str) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    state = folder / "state.json"
    if what == "binary":
        state.write_bytes(os.urandom(64) + b"\xff\xfe")
    elif what == "folder":
        (state / "x").mkdir(parents=True)
    elif what == "records of junk":
        state.write_text(json.dumps({"artifacts": {"bf16": [1, 2]}}))
    else:
        state.write_text(what)
    (folder / "hashes.json").write_text("[]")
    proc = _release("plan", "demo", "--dist", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "state.json" in proc.stderr and "warning" in proc.stderr
    again = _release("plan", "demo", "--dist", str(tmp_path))
    assert again.returncode == 0 and "state.json" not in again.stderr, "the warning comes once, then it is fixed"


# ---- 24: one run per --dist --------------------------------------------------------------------------

def test_second_run_on_a_locked_dist_refuses_naming_the_holder(tmp_path: Path) -> None:
    from release.lock import dist_lock

    with dist_lock(tmp_path / "demo"):
        proc = _release("plan", "demo", "--dist", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = _errors(proc.stderr)
    assert f"pid {os.getpid()}" in line and "in use" in line
    assert _release("plan", "demo", "--dist", str(tmp_path)).returncode == 0, "the lock went with its holder"


# ---- 25: signals ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo up to its imatrix, so a GGUF build goes straight to quantizing."""
    dist = tmp_path_factory.mktemp("signals")
    proc = _release("build", "demo", "--only", "gguf:imatrix", "--dist", str(dist))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dist


def _processes_with(mark: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if mark.encode() in (p / "environ").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _default_sigint() -> None:
    # A shell starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT ignored; the
    # run must meet Ctrl-C as a terminal sends it, wherever the suite itself was started from.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _build_until_quantizing(dist: Path, mark: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`release build demo --only gguf` (the imatrix is built: it goes straight to quantizing), read up to
    the line that says the sweep starts."""
    proc = subprocess.Popen([sys.executable, "-m", "release", "build", "demo", "--only", "gguf", "--dist", str(dist)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, mark: "1", "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                            preexec_fn=_default_sigint)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "gguf: quantizing" in line:
            return proc, lines
    proc.wait(timeout=60)
    raise AssertionError("the build ended before quantizing:\n" + "".join(lines)[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signal_ends_the_run_with_one_line_and_no_children(prepared_dist: Path, tmp_path: Path, how: str) -> None:
    import shutil

    dist = tmp_path / "dist"
    shutil.copytree(prepared_dist, dist, copy_function=os.link)
    mark = f"RELEASE_TEST_{uuid.uuid4().hex}"
    proc, lines = _build_until_quantizing(dist, mark)
    time.sleep(1.0)  # the workers are up and quantizing
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    else:
        os.kill(proc.pid, getattr(signal, how))
    assert proc.stderr is not None
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    stderr = "".join(lines) + rest
    assert code == {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -9}[how], stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert len(_errors(rest)) == (0 if how == "SIGKILL" else 1), rest
    deadline = time.monotonic() + 10
    while _processes_with(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(mark), "a worker or the resource tracker outlived the run"
    again = _release("build", "demo", "--only", "gguf", "--dist", str(dist))
    assert again.returncode == 0, again.stderr[-2000:]


# ---- 26: a full disk -------------------------------------------------------------------------------------

def test_not_enough_disk_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 1000, 1000))
    ctx = Context(load_release("demo"), Options(dist_root=tmp_path, quiet=True))
    with pytest.raises(WorkError, match=r"not enough disk for this build: about .* GB to write under .*, 0.00 GB free"):
        run_build(ctx)
    assert not (tmp_path / "demo" / "bf16").exists() and not list(tmp_path.rglob("*.safetensors"))


def test_disk_full_is_said_and_never_retried(monkeypatch, tmp_path: Path) -> None:
    from release.publish.hubanswers import is_transient

    full = OSError(errno.ENOSPC, "No space left on device", "/x/y.gguf")
    assert not is_transient(full)
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = full
    assert not is_transient(wrapped)

    def boom(*_a, **_k):
        raise full

    monkeypatch.setattr("release.engine.load_release", boom)
    result = CliRunner().invoke(cli, ["check", "demo"])
    assert result.exit_code == 1
    assert "no space left on device writing /x/y.gguf" in result.output


def test_stand_in_hub_answers_507_when_its_disk_is_full(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi, constants

    from release.localhub import LocalHub
    from release.localhub.store import Store

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)

    def full(self, tmp, sha256):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "adopt_lfs", full)
    hub = LocalHub(tmp_path / "hub", tokens={"tok": ["ns"]})
    url = hub.start()
    try:
        api = HfApi(endpoint=url, token="tok")
        api.create_repo("ns/r")
        (tmp_path / "w.bin").write_bytes(os.urandom(1 << 20))
        with pytest.raises(Exception) as exc:
            api.create_commit("ns/r", [CommitOperationAdd("w.bin", str(tmp_path / "w.bin"))], commit_message="x")
        from release.errors import describe

        assert "507" in describe(exc.value, depth=5), describe(exc.value, depth=5)
        uploads = [r for r in hub.log.records() if r.route in ("lfs_upload", "lfs_part")]
        assert len(uploads) == 1, "a full disk was retried"
    finally:
        hub.stop()


# ---- 28: a dry run sends nothing and says so -------------------------------------------------------------

def test_dry_run_summary_says_bytes_to_send(capsys) -> None:
    from release.cli.publish import print_summary as _print_summary
    from release.flow import PublishSummary, RepoSummary

    summary = PublishSummary(dry_run=True, repos=[RepoSummary("o/r", "u", sent_files=2, planned_bytes=14_600_000)])
    ctx = Context(load_release("demo"), Options(quiet=True))
    _print_summary(ctx, summary, as_json=False)
    text = capsys.readouterr().err
    assert "bytes to send: 14.6 MB" in text and "bytes sent" not in text
    assert summary.to_json()["bytes_sent"] == 0 and summary.to_json()["bytes_to_send"] == 14_600_000
