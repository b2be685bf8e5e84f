"""The demo released across machines: every job of `release plan demo --matrix` runs as a process of its
own, with its own --dist and its own Hugging Face cache, sharing only the stand-in Hub and a real
docker-registry on 127.0.0.1; then `--finish` promotes. The base comes from the stand-in Hub at a pinned
commit, as a real release's does.

Shown: the base is downloaded once, the F16 converted once and the imatrix computed once (the tier jobs
fetch them); main of every repo is untouched until finish; a job killed in the middle of its upload,
rerun, rebuilds nothing and sends no object twice; a staged job rerun does nothing; the promoted trees
and tags equal those of a single-machine publish, file for file; a second finish makes no commit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HUB_REPOS, NEEDS_REGISTRY, ROOT, TOKEN, Targets, env, git, publish, release, remote_state

pytestmark = pytest.mark.skipif(**NEEDS_REGISTRY)

BASE_REPO = "demo/tiny-gemma4-8e"


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Targets]:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def _pipeline(targets: Targets, root: Path) -> Path:
    """The demo definition with its base on the stand-in Hub at a pinned commit (no local copy)."""
    from huggingface_hub import HfApi

    from release.demo import generate_tiny_gemma4

    base = root / "base-upload"
    generate_tiny_gemma4(base)
    api = HfApi(endpoint=targets.hub_url, token=TOKEN)
    api.create_repo(BASE_REPO, exist_ok=True)
    info = api.upload_folder(repo_id=BASE_REPO, folder_path=str(base), commit_message="base")
    repo = root / "pipelines-repo"
    folder = repo / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    toml = re.sub(r'revision = "0+"', f'revision = "{info.oid}"', toml)
    toml = toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', "")
    assert "generator" not in toml
    (folder / "release.toml").write_text(toml)
    git(root, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "demo")
    return folder


def _cmd(pipeline: Path, targets: Targets, machine: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "release", "publish", str(pipeline), "--dist", str(machine / "dist"),
            *targets.args(), "--json", "--no-git-tag", *args]


def _env(machine: Path) -> dict[str, str]:
    return {**env(), "HF_HOME": str(machine / "hf-home")}  # each machine has a cache of its own


def _run(pipeline: Path, targets: Targets, machine: Path, *args: str) -> dict:
    proc = subprocess.run(_cmd(pipeline, targets, machine, *args), capture_output=True, text=True,
                          env=_env(machine), timeout=900)
    assert TOKEN not in proc.stdout + proc.stderr, "the token leaked into the output"
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def _mains(targets: Targets) -> dict[str, dict[str, str]]:
    """main of every release repo: path → sha256 or blob id (empty while the repo does not exist)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=targets.hub_url, token=TOKEN)
    out = {}
    for repo in HUB_REPOS:
        try:
            out[repo] = {f.path: f.lfs.sha256 if f.lfs else f.blob_id
                         for f in api.list_repo_tree(repo, recursive=True) if hasattr(f, "blob_id")}
        except RepositoryNotFoundError:
            out[repo] = {}
    return out


def _untouched(targets: Targets) -> bool:
    """A job may create a missing repo (main then holds only .gitattributes), never fill main."""
    return all(set(files) <= {".gitattributes"} for files in _mains(targets).values())


def _base_downloads(targets: Targets) -> int:
    """Downloads of the base's weights (the client follows the resolve redirect to the LFS storage)."""
    from huggingface_hub import HfApi

    oids = {f.lfs.sha256 for f in HfApi(endpoint=targets.hub_url, token=TOKEN).list_repo_tree(BASE_REPO)
            if getattr(f, "lfs", None) and f.path.endswith(".safetensors")}
    return sum(1 for r in targets.hub.log.records(method="GET") if r.path.rsplit("/", 1)[-1] in oids)


def _kill_mid_upload(pipeline: Path, targets: Targets, machine: Path, job: str) -> None:
    """Run `job` until its second LFS object is being completed, then SIGKILL it (the first one is
    stored by then)."""
    fault = targets.hub.faults.add("POST", r"^/complete/", "stall", skip=1, timeout=120)
    proc = subprocess.Popen(_cmd(pipeline, targets, machine, "--job", job), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(machine))
    try:
        assert fault.hit.wait(600), "the job never reached its second upload"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        targets.hub.faults.release()
        targets.hub.faults.clear()


def test_matrix_released_across_machines_equals_one_machine(remote: Targets, tmp_path: Path) -> None:
    pipeline = _pipeline(remote, tmp_path)
    snapshot = tmp_path / "hub-with-base"
    shutil.copytree(remote.hub.store.root, snapshot)  # for the single-machine comparison below

    plan = json.loads(release("plan", str(pipeline), "--matrix", "--json").stdout)
    jobs = {j["id"]: j for j in plan["jobs"]}
    assert plan["jobs"][0]["id"] == "prepare" and plan["jobs"][-1]["id"] == "finish"
    fanout = [j["job"] for j in plan["stages"]["build"]["include"]]
    tier_jobs = [j for j in fanout if j.startswith("gguf-")]
    assert "nvfp4" in fanout and len(tier_jobs) >= 2
    assert all(i["id"] != "base" for j in fanout for i in jobs[j]["inputs"]), "only prepare reads the base"
    n_base = sum(1 for f in (tmp_path / "base-upload").iterdir() if f.suffix == ".safetensors")

    remote.hub.log.clear()
    prepare = _run(pipeline, remote, tmp_path / "m-prepare", "--job", "prepare")
    assert prepare["built"] == ["bf16", "gguf:F16", "gguf:imatrix", "quality:reference"]
    assert _base_downloads(remote) == n_base
    assert _untouched(remote), "a job changed main"

    # One tier job is killed while its second object is on the wire; its rerun rebuilds nothing and
    # sends no object twice.
    killed = next(j for j in tier_jobs if sum(a.startswith("gguf:") for a in jobs[j]["artifacts"]) >= 2)
    _kill_mid_upload(pipeline, remote, tmp_path / f"m-{killed}", killed)
    stored_before = remote.hub.log.lfs_stored_by_oid()
    summaries = {killed: _run(pipeline, remote, tmp_path / f"m-{killed}", "--job", killed)}
    assert summaries[killed]["built"] == [], "the rerun rebuilt what the killed run had built"
    stored = remote.hub.log.lfs_stored_by_oid()
    assert max(stored.values()) == 1 and set(stored_before) < set(stored), (stored_before, stored)

    remote.hub.log.clear()
    dry = _run(pipeline, remote, tmp_path / "m-nvfp4-dry", "--job", "nvfp4", "--dry-run")
    assert dry["dry_run"] and dry["uploaded_files"] > 0 and dry["commits"] == 0
    assert not remote.hub.log.writes(), "a dry run wrote to the Hub"
    for jid in fanout:
        if jid != killed:
            summaries[jid] = _run(pipeline, remote, tmp_path / f"m-{jid}", "--job", jid)
            assert summaries[jid]["built"] == jobs[jid]["artifacts"], "a fan-out job made more than its own"
    shared = sum(len(prepare_files(tmp_path / "m-prepare", a)) for a in ("gguf:F16", "gguf:imatrix",
                                                                         "quality:reference"))
    assert shared == 4  # the conversion, the imatrix, the reference log-probabilities and their tokens
    for jid in tier_jobs:
        # Its outputs and its record in one commit on its branch of the GGUF repo (the only repo it stages to).
        assert summaries[jid]["commits"] == 1, summaries[jid]
        # Each tier job fetched the conversion, the imatrix and the quality reference (the killed one's
        # rerun found them fetched already): none was made twice.
        assert summaries[jid]["fetched_files"] == (0 if jid == killed else shared), summaries[jid]
        assert all(f"quality:{a.split(':')[1]}" in summaries[jid]["built"] or jid == killed
                   for a in jobs[jid]["artifacts"] if a.startswith("gguf:")), "a tier was not measured in its job"
    assert summaries["nvfp4"]["fetched_files"] == dry["fetched_files"] == len(
        prepare_files(tmp_path / "m-prepare", "bf16"))
    assert _base_downloads(remote) == 0, "a fan-out job downloaded the base (the log was cleared after prepare)"
    assert _untouched(remote), "a job changed main"
    again = _run(pipeline, remote, tmp_path / f"m-{tier_jobs[0]}-again", "--job", tier_jobs[0])
    assert again["skipped"] and again["fetched_bytes"] == 0, "a staged job was redone"

    finish = _run(pipeline, remote, tmp_path / "m-finish", "--finish")
    assert finish["commits"] == len(HUB_REPOS), "one commit per repo on main"
    distributed = remote_state(remote)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=remote.hub_url, token=TOKEN)
    for repo in HUB_REPOS:
        assert not [p for p in distributed[repo] if p.startswith(".release/")], "a job record reached main"
        assert not [p for p in distributed[repo] if p.startswith("quality-") and not p.endswith(".svg")], \
            "a quality measurement (staged for the tier jobs) reached main"
        assert [b.name for b in api.list_repo_refs(repo).branches] == ["main"], f"staging left in {repo}"
    assert "quality-kld-vs-size.svg" in distributed["demo/tiny-gemma4-6e-it-GGUF"]
    second = _run(pipeline, remote, tmp_path / "m-finish-2", "--finish")
    assert second["commits"] == 0 and second["bytes_sent"] == 0

    single = Targets(tmp_path / "single", hub_state=snapshot)
    try:
        publish(pipeline, tmp_path / "single-dist", single, "--no-git-tag")
        assert remote_state(single) == distributed
    finally:
        single.close()


def prepare_files(machine: Path, artifact: str) -> list[dict]:
    state = json.loads((machine / "dist" / "demo" / "state.json").read_text())
    return state["artifacts"][artifact]["artifact"]["files"]
