"""The runner-fit check of the release workflow's plan job (`release plan NAME --matrix --check-runners`):
a job that needs more than the runner it will get fails the plan in one line naming the job, what it needs
and the variable to set, before any runner is set up."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from click.testing import CliRunner, Result

from release.cli import cli
from release.distributed.jobs import DISK_GB, RAM_GB, RUNNER_VARIABLES, plan_jobs, runner_fit
from release.pipeline import Context, Options
from release.spec.load import load_release

NO_RUNNERS = {v: "" for v in RUNNER_VARIABLES.values()}


@pytest.fixture(scope="module")
def big_release(tmp_path_factory: pytest.TempPathFactory) -> str:
    """v4 with fan-out budgets beyond a standard runner (six tiers a job, 250 GB of disk): its packed GGUF jobs
    are planned for the large runner. (v4 as bundled fits a standard runner in every job.)"""
    import shutil

    root = tmp_path_factory.mktemp("big")
    for name in ("v4", "v3", "v5-coder"):
        shutil.copytree(load_release(name).dir, root / name, ignore=shutil.ignore_patterns("base"))
    toml = (root / "v4" / "release.toml").read_text()
    (root / "v4" / "release.toml").write_text(toml.split("\n[jobs]\n")[0]
                                              + "\n[jobs]\ntiers_per_job = 6\nmax_disk_gb = 250\nmax_hours = 6\n")
    return str(root / "v4")


@pytest.fixture(scope="module")
def v4_plan(big_release: str):  # type: ignore[no-untyped-def]
    return plan_jobs(Context(load_release(big_release), Options(quiet=True)))


def test_v4_as_bundled_fits_standard_runners() -> None:
    assert runner_fit(plan_jobs(Context(load_release("v4"), Options(quiet=True))), NO_RUNNERS) == []


def _too_big(plan) -> set[str]:  # type: ignore[no-untyped-def]
    return {j.id for j in plan.jobs if j.ram_gb > RAM_GB["standard"] or j.disk_gb > DISK_GB["standard"]}


def test_v4_without_a_large_runner_names_each_job_and_the_variable(v4_plan) -> None:  # type: ignore[no-untyped-def]
    problems = runner_fit(v4_plan, NO_RUNNERS)
    large = [j for j in v4_plan.jobs if j.runner == "large"]
    assert large, "the budgets plan no job for the large runner: this test no longer shows anything"
    assert {p.file for p in problems} == {f"job {j.id}" for j in large} == {f"job {i}" for i in _too_big(v4_plan)}
    for job in large:
        line = str(next(p for p in problems if p.file == f"job {job.id}"))
        assert "\n" not in line
        assert f"needs {job.ram_gb:.1f} GB of RAM and {job.disk_gb:.1f} GB of disk" in line
        assert f"has {RAM_GB['standard']:g} GB / {DISK_GB['standard']:g} GB" in line
        assert (f"set RELEASE_LARGE_RUNNER to a runner with at least {math.ceil(job.ram_gb)} GB of RAM and "
                f"{math.ceil(job.disk_gb)} GB of disk") in line


def test_v4_fits_once_a_large_runner_is_set(v4_plan) -> None:  # type: ignore[no-untyped-def]
    assert runner_fit(v4_plan, {**NO_RUNNERS, "RELEASE_LARGE_RUNNER": "big-runner"}) == []
    # A blank label is no runner (an unset repository variable reads as "").
    assert runner_fit(v4_plan, {**NO_RUNNERS, "RELEASE_LARGE_RUNNER": "  "}) != []


def test_the_demo_fits_a_standard_runner() -> None:
    plan = plan_jobs(Context(load_release("demo"), Options(quiet=True)))
    assert runner_fit(plan, NO_RUNNERS) == []


def test_a_gpu_job_without_a_gpu_runner_must_fit_a_standard_one(v4_plan) -> None:  # type: ignore[no-untyped-def]
    """Without RELEASE_GPU_RUNNER a `gpu` job runs (slowly, on the CPU) on a standard runner: that is allowed,
    but only when its disk and RAM fit one. The large runner does not take it."""
    fits = dataclasses.replace(v4_plan.job("prepare"), id="dropmap", stage="dropmap", runner="gpu", ram_gb=4.0,
                               disk_gb=55.0)
    too_big = dataclasses.replace(fits, ram_gb=RAM_GB["standard"] + 8)
    for job, expected in ((fits, []), (too_big, ["job dropmap"])):
        plan = dataclasses.replace(v4_plan, jobs=[job])
        problems = runner_fit(plan, {**NO_RUNNERS, "RELEASE_LARGE_RUNNER": "big"})
        assert [p.file for p in problems] == expected
        if problems:
            assert "set RELEASE_GPU_RUNNER to a runner with at least 24 GB of RAM" in str(problems[0])
        assert runner_fit(plan, {**NO_RUNNERS, "RELEASE_GPU_RUNNER": "gpu-box"}) == []


def _plan(monkeypatch: pytest.MonkeyPatch, *args: str, **variables: str) -> Result:
    for name in RUNNER_VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    for name, label in variables.items():
        monkeypatch.setenv(name, label)
    return CliRunner().invoke(cli, ["plan", *args])


def test_the_plan_command_fails_fast_with_exit_2(v4_plan, big_release: str,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = _plan(monkeypatch, big_release, "--matrix", "--check-runners", "--json")
    assert run.exit_code == 2
    error = json.loads(run.stdout)["error"]  # a --json command answers its errors in JSON too
    assert error["exit_code"] == 2
    assert {p["file"] for p in error["problems"]} == {f"job {i}" for i in _too_big(v4_plan)}
    lines = run.stderr.strip().splitlines()
    assert len(lines) == len(_too_big(v4_plan)) and all(line.startswith("error: job ") for line in lines)
    assert all("needs" in line and "RELEASE_LARGE_RUNNER" in line for line in lines)
    ok = _plan(monkeypatch, "demo", "--matrix", "--check-runners", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["stages"]["prepare"]["include"]
    usage = _plan(monkeypatch, "demo", "--check-runners")
    assert usage.exit_code == 2 and "--check-runners: checks the job plan: use it with --matrix" in usage.stderr
