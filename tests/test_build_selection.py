"""What `--only` and `--force` do to a built release, driven as a user drives them: the real CLI in a
subprocess, its output through a pipe (as in a CI log), on the demo release built once (its BF16, F16,
imatrix, quality reference, and the Q8_0 and Q4_K_M tiers with their measurements).

- `--force` makes again what `--only` selects and what is made from it, never what it needs (issue 19.1);
  stopped, it names the command that resumes, without --force, and that command finishes the work;
- a build restricted by `--only` leaves every other built artifact built in the manifest (19.2);
- `plan --only` refuses a selector that selects nothing, and shows only the selection (19.3);
- without a terminal: timestamped lines per step with units and durations, tables never cut (19.4).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = {"bf16", "gguf:F16", "gguf:imatrix", "quality:reference"}
BUILT = NEEDED | {"gguf:Q8_0", "gguf:Q4_K_M", "quality:Q8_0", "quality:Q4_K_M"}
STAMP = r"\d\d:\d\d:\d\d "


def piped_env() -> dict[str, str]:
    """The environment of a CI job: no terminal, no COLUMNS, no token needed."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "HF_ENDPOINT")}
    return {**env, "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_XET": "1"}


def release(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=piped_env(),
                          cwd=ROOT, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"release {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("selection") / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return folder


@pytest.fixture(scope="module")
def built(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("built") / "dist"
    release("build", str(demo), "--dist", str(dist), "--only", "gguf:Q8_0,gguf:Q4_K_M")
    return dist


@pytest.fixture
def dist(built: Path, tmp_path: Path) -> Path:
    """A copy of the built dist (hard links: builders replace files, they never write into them)."""
    copy = tmp_path / "dist"
    shutil.copytree(built, copy, copy_function=os.link)
    (copy / "demo" / "hashes.json").unlink(missing_ok=True)  # keyed by absolute path
    return copy


def statuses(dist: Path) -> dict[str, str]:
    return {a["id"]: a["status"] for a in json.loads((dist / "demo" / "manifest.json").read_text())["artifacts"]}


def file_ids(dist: Path, artifact_ids: set[str]) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file of these artifacts, from the state record: a file made again differs."""
    state = json.loads((dist / "demo" / "state.json").read_text())["artifacts"]
    out = {}
    for aid in artifact_ids:
        a = state[aid]["artifact"]
        for f in a["files"]:
            st = (dist / "demo" / a["root"] / f["path"]).stat()
            out[f"{aid}/{f['path']}"] = (st.st_ino, st.st_mtime_ns)
    return out


def test_the_fixture_built_what_it_selected(built: Path) -> None:
    assert {i for i, s in statuses(built).items() if s == "built"} == BUILT


def test_force_makes_the_selection_again_not_what_it_needs(demo: Path, dist: Path) -> None:
    needed = file_ids(dist, NEEDED | {"gguf:Q8_0"})
    tier = file_ids(dist, {"gguf:Q4_K_M"})
    proc = release("build", str(demo), "--dist", str(dist), "--only", "gguf:Q4_K_M", "--force")
    assert "built: gguf:Q4_K_M, quality:Q4_K_M\n" in proc.stderr
    assert file_ids(dist, NEEDED | {"gguf:Q8_0"}) == needed, "--force made an input of the selection again"
    assert file_ids(dist, {"gguf:Q4_K_M"}) != tier
    # Piped, the run reads as a CI log: a timestamped line when each step starts and ends, with its unit.
    lines = proc.stderr.splitlines()
    assert any(re.fullmatch(STAMP + r"gguf: making gguf:Q4_K_M", x) for x in lines), proc.stderr
    assert any(re.fullmatch(STAMP + r"gguf: quantize 1 tiers: started \(1 tiers\)", x) for x in lines), proc.stderr
    assert any(re.fullmatch(STAMP + r"gguf: quantize 1 tiers: done in .+, 1 tiers \(.+\)", x) for x in lines)
    assert any(re.fullmatch(STAMP + r"quality: gguf:Q4_K_M: done in .+ \d+ windows .*", x) for x in lines)
    assert any(re.fullmatch(STAMP + r"quality: made quality:Q4_K_M in .+", x) for x in lines), proc.stderr
    assert not any(re.match(STAMP, x) and ("bytes" in x or "%|" in x) for x in lines), "items as bytes, or a bar"
    # and the manifest still says everything else is built
    assert {i for i, s in statuses(dist).items() if s == "built"} == BUILT


def test_a_stopped_force_resumes_without_force(demo: Path, dist: Path) -> None:
    needed = file_ids(dist, NEEDED)
    proc = subprocess.Popen([sys.executable, "-m", "release", "build", str(demo), "--dist", str(dist), "--only",
                             "gguf:Q4_K_M", "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=piped_env(), cwd=ROOT)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "gguf: making gguf:Q4_K_M" in line:
            proc.send_signal(signal.SIGTERM)
            break
    _, rest = proc.communicate(timeout=300)
    said = "".join(seen) + rest
    assert proc.returncode == 143, said
    hint = re.search(r"run `(release [^`]+)` to resume", said)
    assert hint is not None, said
    command = shlex.split(hint.group(1))
    assert "--force" not in command and command[command.index("--only") + 1] == "gguf:Q4_K_M"
    resumed = release(*command[1:], "--json")
    made = json.loads(resumed.stdout)["built"]
    assert "quality:Q4_K_M" in made and set(made) <= {"gguf:Q4_K_M", "quality:Q4_K_M"}, made
    assert file_ids(dist, NEEDED) == needed
    again = release(*command[1:], "--json")
    assert json.loads(again.stdout)["built"] == [], "a second resume made something again"


def test_build_only_keeps_what_is_built_in_the_manifest(demo: Path, dist: Path) -> None:
    before = statuses(dist)
    proc = release("build", str(demo), "--dist", str(dist), "--only", "gguf:Q8_0")
    assert "built: nothing (everything up to date)" in proc.stderr
    assert statuses(dist) == before
    assert {i for i, s in before.items() if s == "built"} == BUILT


def test_plan_only_validates_and_filters(demo: Path, dist: Path) -> None:
    manifest = dist / "demo" / "manifest.json"
    written = manifest.stat().st_mtime_ns
    bad = release("plan", str(demo), "--dist", str(dist), "--only", "gguf:Q9_9", check=False)
    assert bad.returncode == 2 and "'gguf:Q9_9' selects nothing" in bad.stderr
    assert manifest.stat().st_mtime_ns == written, "bad input wrote the manifest"
    shown = json.loads(release("plan", str(demo), "--dist", str(dist), "--only", "gguf:q4_k_m", "--json").stdout)
    assert {a["id"]: a["status"] for a in shown["artifacts"]} == {
        i: "built" for i in NEEDED | {"gguf:Q4_K_M", "quality:Q4_K_M"}}
    # plan rewrites the whole manifest, and what is built stays built there
    assert {i for i, s in statuses(dist).items() if s == "built"} == BUILT and len(statuses(dist)) == 28
    table = release("plan", str(demo), "--dist", str(dist), "--only", "gguf:Q4_K_M").stdout
    rows = [r for r in table.splitlines() if r.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["bf16", "gguf:F16", "gguf:imatrix", "quality:reference",
                                                       "gguf:Q4_K_M", "quality:Q4_K_M", "total"]
    assert "6 built" in rows[-1] and "demo/tiny-gemma4-6e-it-GGUF" in table


def test_piped_tables_are_never_cut(tmp_path: Path) -> None:
    jobs = json.loads(release("plan", "v4", "--matrix", "--json").stdout)["jobs"]
    table = release("plan", "v4", "--matrix").stdout
    assert "…" not in table
    for job in jobs:
        assert re.search(rf"│ {re.escape(job['id'])} +│", table), job["id"]
    assert re.search(r"│ total +│", table) and "machine-hours; wall-clock ≈" in table
    plan = release("plan", "v4", "--dist", str(tmp_path)).stdout
    assert "…" not in plan and "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF" in plan
    total = next(r for r in plan.splitlines() if r.startswith("│ total"))
    assert re.search(r"≈[\d.]+ GB to publish", total) and "planned" in total
