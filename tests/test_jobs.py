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
    assert plan.job("prepare").artifacts == ["bf16", "gguf:F16", "gguf:imatrix", "quality:reference"]
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
    fanout = [j for j in plan.stage("build") if j.id.startswith("gguf-")]
    assert len(fanout) >= 10 and all(j.runner == "standard" for j in fanout)
    for j in fanout:
        assert j.disk_gb <= budget.max_disk_gb and j.ram_gb <= budget.max_ram_gb, j
        tiers = [a for a in j.artifacts if a.startswith("gguf:")]
        assert 0 < j.hours <= budget.max_hours and len(tiers) <= budget.tiers_per_job
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
    # The tier and its measurement (a measurement follows what it measures), and what they need.
    assert sorted(a for j in plan.jobs for a in j.artifacts) == sorted(
        closure(ctx.artifacts, ["gguf:Q4_K_M", "quality:Q4_K_M"]))
    assert "quality:reference" in plan.job("gguf-q4_k_m").artifacts  # one consumer: made where it is used
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


def test_each_measurement_travels_with_what_it_measures(v4_ctx: Context) -> None:
    """The reference is made once (prepare) and fetched by every tier job; a tier's measurement is made in
    the tier's own job; NVFP4's in NVFP4's, which streams the BF16 model layer by layer and so fits a standard
    runner."""
    from release.quality.estimate import planned_tokens

    plan = plan_jobs(v4_ctx)
    owner = {a: j.id for j in plan.jobs for a in j.artifacts}
    tiers = v4_ctx.release.definition.gguf.tiers
    for tier in tiers:
        job = plan.job(owner[f"gguf:{tier}"])
        assert owner[f"quality:{tier}"] == job.id and job.id.startswith("gguf-")
        assert "quality:reference" in {i.id for i in job.inputs} and "prepare" in job.needs
    reference = plan.job("prepare")
    decoded, scored = planned_tokens(v4_ctx.release)
    assert scored > 0 and v4_ctx.artifacts["quality:reference"].facts["size"] >= scored * 262144 * 2
    nvfp4 = plan.job("nvfp4")
    assert nvfp4.artifacts == ["nvfp4", "quality:nvfp4"]
    bf16_gb = v4_ctx.artifacts["bf16"].facts["size"] / 1e9
    assert nvfp4.ram_gb < bf16_gb / 5 and nvfp4.runner == "standard"
    assert not any(n.startswith("nvfp4 needs") for n in plan.notes)
    assert reference.hours > 0 and decoded > 0


def test_measurement_estimates_follow_the_text(tmp_path) -> None:
    """More held-out text (up to max_tokens) → a bigger reference and longer tier jobs."""
    import shutil

    from release.costs import measure_cost as _measure_cost

    folder = tmp_path / "v4"
    shutil.copytree(load_release("v4").dir, folder, ignore=shutil.ignore_patterns("base"))
    for sib in ("v3", "v5-coder"):
        shutil.copytree(load_release(sib).dir, tmp_path / sib, ignore=shutil.ignore_patterns("base"))
    short = Context(load_release(str(folder)), Options(quiet=True))
    short_cost = _measure_cost(short, "quality:Q4_K_M")
    (folder / "heldout.txt").write_text("A line of held-out text that is long enough.\n" * 2000)
    long = Context(load_release(str(folder)), Options(quiet=True))
    assert long.artifacts["quality:reference"].facts["size"] > short.artifacts["quality:reference"].facts["size"]
    assert _measure_cost(long, "quality:Q4_K_M") > short_cost > 0
    q = long.release.quality
    windows = q.max_tokens // q.context  # 90 KB of text is more than max_tokens: capped
    assert long.artifacts["quality:reference"].facts["size"] == \
        windows * (q.context - 1 - q.context // 2) * 262144 * 2 + windows * q.context * 10


def test_every_v4_job_fits_a_standard_runner_within_six_hours(v4_ctx: Context) -> None:
    """prepare (BF16 → F16 → layer-streamed imatrix → reference, the base freed once BF16 is verified) and the
    NVFP4 job (layer-streamed measurement) fit a hosted ubuntu-24.04 runner: 16 GB of RAM, 100 GB of disk
    after the free-disk step, 6 hours."""
    from release.distributed.jobs import DISK_GB, RAM_GB

    plan = plan_jobs(v4_ctx)
    assert {j.runner for j in plan.jobs} == {"standard"} and not plan.notes
    for j in plan.jobs:
        assert j.ram_gb <= RAM_GB["standard"] and j.disk_gb <= DISK_GB["standard"] <= 100 and j.hours <= 6, j
    prepare = plan.job("prepare")
    bf16_gb = v4_ctx.artifacts["bf16"].facts["size"] / 1e9
    # The imatrix no longer keeps the F16 in page cache: its peak is a few layers, well under the model.
    assert prepare.ram_gb < bf16_gb / 5
def _v4_copy(tmp_path, text: str | None = None, jobs: str = ""):
    """v4 (and its siblings) copied, with another held-out text and/or a [jobs] table."""
    import shutil

    folder = tmp_path / "v4"
    if not folder.exists():
        for name in ("v4", "v3", "v5-coder"):
            shutil.copytree(load_release(name).dir, tmp_path / name, ignore=shutil.ignore_patterns("base"))
    if text is not None:
        (folder / "heldout.txt").write_text(text)
    if jobs:
        toml = (folder / "release.toml").read_text()
        (folder / "release.toml").write_text(toml.split("\n[jobs]\n")[0] + f"\n[jobs]\n{jobs}\n")
    return Context(load_release(str(folder)), Options(quiet=True))


def test_units_and_branches_do_not_move_with_the_text_or_the_budgets(tmp_path) -> None:
    """A unit (what is staged and recorded) is named by its leaf artifact; only jobs (packs of units) are
    renamed by repacking. So an edit of the held-out text, an estimate or a budget orphans no branch."""
    from release.distributed.records import staging_branch

    placeholder = plan_jobs(_v4_copy(tmp_path / "a"))
    long_text = plan_jobs(_v4_copy(tmp_path / "b", text="A held-out line, long enough to be a line.\n" * 3000))
    one_per_job = plan_jobs(_v4_copy(tmp_path / "c", jobs="tiers_per_job = 1"))
    short_jobs = plan_jobs(_v4_copy(tmp_path / "d", jobs="tiers_per_job = 8\nmax_hours = 0.2\nmax_disk_gb = 60"))
    plans = (placeholder, long_text, one_per_job, short_jobs)
    branches = [[staging_branch("v4", u.id) for u in p.units] for p in plans]
    assert all(b == branches[0] for b in branches)
    assert branches[0][:3] == ["release-v4-prepare", "release-v4-nvfp4", "release-v4-gguf-q8_0"]
    assert [u.artifacts for u in placeholder.units] == [u.artifacts for u in long_text.units]
    # The packing did change: the job ids (named by their first unit) differ between budgets.
    ids = [[j.id for j in p.jobs] for p in plans]
    assert len({tuple(i) for i in ids}) >= 3, ids
    for plan in plans:
        # Every unit is run by exactly one job, which holds exactly its units' artifacts.
        packed = [u for j in plan.jobs for u in j.units]
        assert sorted(packed) == sorted(u.id for u in plan.units) and len(packed) == len(set(packed))
        for j in plan.jobs:
            assert j.id == (j.units[0] if j.units else "finish")
            if j.stage != "finish":
                assert sorted(j.artifacts) == sorted(a for u in j.units for a in plan.unit(u).artifacts)
            assert plan.job(j.id) is j  # --job takes every id of the plan
            assert all(i.unit in ("", *(u.id for u in plan.units)) for i in j.inputs)
        assert all(plan.job_of_unit(i.unit).id == i.job for j in plan.jobs for i in j.inputs if i.unit)
    as_json = one_per_job.to_json()
    assert [u["id"] for u in as_json["units"]] == [u.id for u in one_per_job.units]
    assert {j["id"]: j["units"] for j in as_json["jobs"]}["prepare"] == ["prepare"]


def test_unit_keys_hold_no_job_and_no_packing(tmp_path) -> None:
    """The key a unit is staged under is the same whichever job packs it; the definition's key moves with
    any input of the definition."""
    from release.distributed.keys import definition_key

    packed = _v4_copy(tmp_path / "a")
    alone = _v4_copy(tmp_path / "b", jobs="tiers_per_job = 1")
    p1, p2 = plan_jobs(packed), plan_jobs(alone)
    assert p1.job_of_unit("gguf-q4_k_m").id != p2.job_of_unit("gguf-q4_k_m").id
    assert definition_key(packed, p1) == definition_key(alone, p2)
    scores = packed.release.dir / "scores.json"
    scores.write_text(scores.read_text().replace('"n":', '"n" :', 1))
    edited = Context(load_release(str(packed.release.dir)), Options(quiet=True))
    assert definition_key(edited, plan_jobs(edited)) != definition_key(packed, p1)
