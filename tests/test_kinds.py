"""A kind is one home (issue 21): a throw-away kind defined in this file alone — `checksum`, a SHA256SUMS
of the BF16 checkpoint — appended to `release.kinds.FLOW` is planned, built (`build --only checksum`),
verified (a tampered file fails the gate), costed (`plan --matrix` gives it a job with its cost) and listed
(`--only` takes it, completion offers it, the help lines name it), with no other file touched."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from release import kinds
from release.cli import cli
from release.completion import complete_only
from release.context import Context as RunContext
from release.context import digest
from release.costs import Cost
from release.distributed.jobs import plan_jobs
from release.errors import VerifyError
from release.kinds.base import KindBase
from release.manifest import Artifact, ArtifactRegistry, FileEntry
from release.pipeline import Context, Options, parse_only, restore_recorded, run_build
from release.spec.load import Release, load_release
from release.verify import verify_release

ROOT = Path(__file__).resolve().parents[1]
SUMS = "SHA256SUMS"


class ChecksumKind(KindBase):
    """SHA256SUMS of the BF16 checkpoint's files, made from the built BF16 artifact."""

    name = "checksum"
    help = "SHA256SUMS of the BF16 checkpoint"
    serial_s = 7200.0  # what its job pays for it: two hours, so that the job plan shows it
    ram_gb = 12.5

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        if "bf16" not in planned:
            return []
        return [Artifact(id="checksum", kind="checksum", root="checksum", files=[FileEntry(SUMS)],
                         facts={"size": 1000, "estimated": True})]

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        return ["bf16"]

    def input_hash(self, ctx: RunContext, artifact: Artifact) -> str:
        return digest("checksum", ctx.need_files(artifact))

    def build(self, ctx: RunContext, artifacts: list[Artifact]) -> list[Artifact]:
        (planned,) = artifacts
        out = ctx.artifact_dir(planned)
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMS).write_text("".join(f"{f.sha256}  {f.path}\n" for f in ctx.built("bf16").files))
        return [dataclasses.replace(planned, status="built", files=ctx.file_entries(out, [SUMS]))]

    def verify(self, ctx: RunContext, artifact: Artifact) -> list[str]:
        expected = {f.path: f.sha256 for f in ctx.built("bf16").files}
        listed = dict(reversed(line.split("  ", 1))
                      for line in (ctx.artifact_dir(artifact) / SUMS).read_text().splitlines())
        return [f"{path}: listed {listed.get(path)}, the file is {sha}" for path, sha in expected.items()
                if listed.get(path) != sha]

    def cost(self, ctx: RunContext, artifact: Artifact, job: object) -> Cost:
        return Cost(serial_s=self.serial_s, ram_gb=self.ram_gb)


@pytest.fixture(scope="module")
def checksum() -> Iterator[ChecksumKind]:
    kind = ChecksumKind()
    kinds.register(kind)
    try:
        yield kind
    finally:
        kinds.unregister(kind.name)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kinds") / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder)
    return folder


@pytest.fixture(scope="module")
def built(checksum: ChecksumKind, demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    result = CliRunner().invoke(cli, ["build", str(demo), "--dist", str(dist), "--only", "checksum", "--json"])
    assert result.exit_code == 0, result.output
    return dist


def test_planned(checksum: ChecksumKind, demo: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(demo), "--dist", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    planned = {a["id"]: a for a in json.loads(result.output)["artifacts"]}
    assert planned["checksum"]["kind"] == "checksum" and planned["checksum"]["needs"] == ["bf16"]
    assert planned["checksum"]["status"] == "planned"


def test_built_with_what_it_needs(built: Path) -> None:
    manifest = json.loads((built / "demo" / "manifest.json").read_text())
    status = {a["id"]: a["status"] for a in manifest["artifacts"]}
    assert status["checksum"] == "built" and status["bf16"] == "built"
    assert status["gguf:F16"] == "planned"  # nothing else was made
    bf16 = next(a for a in manifest["artifacts"] if a["id"] == "bf16")
    sums = (built / "demo" / "checksum" / SUMS).read_text()
    assert sums == "".join(f"{f['sha256']}  {f['path']}\n" for f in bf16["files"])


def test_verified_and_a_tampered_file_fails_the_gate(built: Path, demo: Path) -> None:
    ctx = Context(load_release(str(demo)), Options(dist_root=built, quiet=True))
    restore_recorded(ctx)
    artifact = ctx.artifacts["checksum"]
    assert artifact.status == "built"
    path = built / "demo" / "checksum" / SUMS
    good = path.read_text()
    first_path = ctx.built("bf16").files[0].path
    path.write_text(good.replace(good.split("  ", 1)[0], "0" * 64, 1))
    try:
        with pytest.raises(VerifyError, match=rf"checksum: {first_path}: listed 0{{64}}"):
            verify_release(ctx, [artifact])
    finally:
        path.write_text(good)
    verify_release(ctx, [artifact])  # the intact file passes


def test_costed_in_a_job_of_its_own(checksum: ChecksumKind, demo: Path) -> None:
    plan = plan_jobs(Context(load_release(str(demo)), Options(quiet=True)))
    job = plan.of_artifact("checksum")
    assert job.stage == "build" and job.artifacts == ["checksum"]
    assert [i.id for i in job.inputs] == ["bf16"]  # fetched from the job that makes it
    assert job.ram_gb == checksum.ram_gb
    assert job.hours >= checksum.serial_s / 3600
    checksum.serial_s = 0.0
    try:
        cheaper = plan_jobs(Context(load_release(str(demo)), Options(quiet=True))).of_artifact("checksum")
    finally:
        checksum.serial_s = ChecksumKind.serial_s
    assert job.hours - cheaper.hours == pytest.approx(2.0)


def test_listed(checksum: ChecksumKind, demo: Path, tmp_path: Path) -> None:
    assert parse_only(["checksum"]) == ["checksum"]
    result = CliRunner().invoke(cli, ["plan", str(demo), "--dist", str(tmp_path), "--only", "checksum", "--json"])
    assert result.exit_code == 0, result.output
    assert [a["id"] for a in json.loads(result.output)["artifacts"]
            if a["status"] == "planned" and a["id"] in ("bf16", "checksum")] == ["bf16", "checksum"]
    command = cli.commands["build"]
    ctx = click.Context(command, info_name="build")
    ctx.params["name"] = str(demo)
    assert [c.value for c in complete_only(ctx, command.params[0], "chec")] == ["checksum"]
    assert "checksum" in kinds.only_help() and "checksum: SHA256SUMS of the BF16 checkpoint" in kinds.kind_lines()
    assert "checksum" in kinds.from_choices()
    for command in ("build", "publish"):  # --only's help and --from's choices, as the command line shows them
        shown = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
        only = next(line for line in shown.splitlines() if "--only" in line)
        assert "checksum" in only and "|checksum]" in shown, shown


def test_verify_reuses_the_base_the_build_fetched(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate compares the BF16 checkpoint with the base the same run fetched for pruning, instead of
    asking for it again; and a context given a plan does not plan again."""
    import release.fetch
    import release.pipeline

    ctx = Context(load_release(str(demo)), Options(dist_root=tmp_path, only=["bf16"], quiet=True))
    run_build(ctx)
    assert ctx.base_dir is not None and ctx.base_dir.is_dir()

    def fetched_again(*args: object, **kwargs: object) -> Path:
        raise AssertionError("the base was fetched again")

    monkeypatch.setattr(release.fetch, "ensure_base", fetched_again)
    verify_release(ctx, [ctx.artifacts["bf16"]])
    assert ctx.state.data["verified"]["verify:bf16"]

    def planned_again(*args: object, **kwargs: object) -> ArtifactRegistry:
        raise AssertionError("planned again")

    monkeypatch.setattr(release.pipeline, "plan_artifacts", planned_again)
    again = Context(ctx.release, Options(dist_root=tmp_path, quiet=True), artifacts=ctx.artifacts)
    assert again.artifacts is ctx.artifacts
