"""The job plan is cut from the flow's graph (release/steps.py): nothing made twice, the base read once,
every input produced by a job the consumer needs, fan-out jobs within the definition's budgets."""

from __future__ import annotations

import dataclasses

import pytest

from release.distributed.jobs import plan_jobs
from release.distributed.run import check_resources
from release.errors import InputError, WorkError
from release.pipeline import Context, Options
from release.spec.load import load_release
from release.steps import BASE, closure


@pytest.fixture(scope="module")
def v4_ctx() -> Context:
    return Context(load_release("v4"), Options(quiet=True))


def test_every_artifact_is_made_by_exactly_one_job(v4_ctx: Context) -> None:
    plan = plan_jobs(v4_ctx)
    made = [a for j in plan.jobs for a in j.artifacts]
    assert sorted(made) == sorted(a.id for a in v4_ctx.artifacts)
    assert len(made) == len(set(made))


def test_only_prepare_reads_the_base_and_inputs_come_from_needed_jobs(v4_ctx: Context) -> None:
    plan = plan_jobs(v4_ctx)
    owner = {a: j.id for j in plan.jobs for a in j.artifacts}
    readers = [j.id for j in plan.jobs if any(BASE in v4_ctx.artifacts[a].needs for a in j.artifacts)]
    assert readers == ["prepare"]
    assert plan.job("prepare").artifacts == ["bf16", "gguf:F16", "gguf:imatrix"]
    for j in plan.jobs:
        for i in j.inputs:
            if i.id != BASE:
                assert i.job in j.needs and owner[i.id] == i.job, (j.id, i)
        for a in j.artifacts:  # everything an artifact needs is made in its job or fetched
            assert all(n == BASE or owner[n] == j.id or n in {i.id for i in j.inputs}
                       for n in v4_ctx.artifacts[a].needs) or j.stage == "finish"
    finish = plan.job("finish")
    assert set(finish.needs) == {j.id for j in plan.jobs} - {"finish"}
    assert {v4_ctx.artifacts[a].kind for a in finish.artifacts} == {"card", "ollama", "gguf"}  # + side files


def test_fanout_jobs_fit_the_budgets_and_a_hosted_runner(v4_ctx: Context) -> None:
    plan = plan_jobs(v4_ctx)
    budget = v4_ctx.release.definition.jobs
    fanout = plan.stage("build")
    assert len(fanout) >= 10 and all(j.runner == "standard" for j in fanout)
    for j in fanout:
        assert j.disk_gb <= budget.max_disk_gb and j.ram_gb <= budget.max_ram_gb, j
        assert 0 < j.hours <= budget.max_hours and len(j.artifacts) <= budget.tiers_per_job
    tiers = [a for j in fanout for a in j.artifacts if a.startswith("gguf:")]
    assert len(tiers) == len(v4_ctx.release.definition.gguf.tiers)
    # The ids are stable and usable as branch names.
    assert all(j.id.replace("-", "").replace("_", "").isalnum() and j.id.islower() for j in plan.jobs)
    assert [j.id for j in plan_jobs(v4_ctx).jobs] == [j.id for j in plan.jobs]


def test_one_tier_per_job_when_the_definition_asks(v4_ctx: Context) -> None:
    d = v4_ctx.release.definition.model_copy(update={"jobs": v4_ctx.release.definition.jobs.model_copy(
        update={"tiers_per_job": 1})})
    ctx = Context(dataclasses.replace(v4_ctx.release, definition=d), Options(quiet=True))
    plan = plan_jobs(ctx)
    assert sum(1 for j in plan.stage("build") if j.id.startswith("gguf-")) == len(d.gguf.tiers)


def test_only_plans_what_the_selection_needs(v4_ctx: Context) -> None:
    ctx = Context(v4_ctx.release, Options(only=["gguf:Q4_K_M"], quiet=True))
    plan = plan_jobs(ctx)
    assert [j.id for j in plan.jobs] == ["prepare", "gguf-q4_k_m", "finish"]
    assert sorted(a for j in plan.jobs for a in j.artifacts) == sorted(closure(ctx.artifacts, ["gguf:Q4_K_M"]))
    with pytest.raises(InputError, match="selects nothing"):
        plan_jobs(Context(v4_ctx.release, Options(only=["gguf:Q9_9"], quiet=True)))


def test_a_job_refuses_a_machine_too_small(tmp_path) -> None:
    ctx = Context(load_release("demo"), Options(dist_root=tmp_path, quiet=True))
    job = plan_jobs(ctx).job("prepare")
    check_resources(ctx, job)  # the demo fits anywhere
    with pytest.raises(WorkError, match=r"job prepare needs .* GB of free disk under .* \(there are"):
        check_resources(ctx, dataclasses.replace(job, disk_gb=1e9))
    with pytest.raises(WorkError, match=r"GB of available memory \(there are"):
        check_resources(ctx, dataclasses.replace(job, ram_gb=1e9))
    assert not (tmp_path / "demo").exists(), "a refused job wrote something"
