"""`release status NAME` and the file lists of `publish --dry-run`, against the stand-in Hub and a real
docker-registry on 127.0.0.1, on the demo with one GGUF tier and its Ollama tag built:

- before anything is published: no repo, no tag, and the next publish's files;
- `publish --dry-run --only …`: every file of every destination with its size and action, blobs and
  manifests of every tag, in a table and in --json;
- after `publish --only …`: the GGUF repo's head and files, what it lacks of what is built here (the F16 and
  the imatrix were built, not selected), the tags' digests equal to the built ones, a staging branch a job
  left, and what a publish would send next. Status writes nothing, locally or remotely."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import NEEDS_REGISTRY, ROOT, TOKEN, Targets, release

pytestmark = pytest.mark.skipif(**NEEDS_REGISTRY)
GGUF_REPO = "demo/tiny-gemma4-6e-it-GGUF"
ONLY = ("--only", "gguf:Q4_K_M,ollama:Q4_K_M")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("status") / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    dist = folder.parent / "dist"
    release("build", str(folder), "--dist", str(dist), *ONLY)
    return folder, dist


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def status(demo: tuple[Path, Path], targets: Targets) -> dict:
    folder, dist = demo
    writes = len(targets.hub.log.writes())
    state = (dist / "demo" / "state.json").read_bytes()
    report = json.loads(release("status", str(folder), "--dist", str(dist), *targets.args(), "--json").stdout)
    assert len(targets.hub.log.writes()) == writes, "status wrote to the Hub"
    assert (dist / "demo" / "state.json").read_bytes() == state
    return report


def test_status_and_dry_run_file_lists(demo: tuple[Path, Path], targets: Targets) -> None:
    folder, dist = demo
    before = status(demo, targets)
    assert not any(r["exists"] for r in before["repos"]) and not before["in_sync"]
    assert all(t["digest"] is None for t in before["tags"])
    assert {"nvfp4", "gguf:Q8_0", "ollama:CD-Q3"} <= set(before["to_build"])
    assert "tiny-gemma4-6e-Q4_K_M.gguf" in {f["path"] for d in before["next"] if d["destination"] == GGUF_REPO
                                             for f in d["files"]}

    dry = json.loads(release("publish", str(folder), "--dist", str(dist), *targets.args(), *ONLY, "--dry-run",
                             "--json").stdout)
    gguf = next(r for r in dry["repos"] if r["repo"] == GGUF_REPO)
    files = {f["path"]: f for f in gguf["files"]}
    q4 = dist / "demo" / "gguf" / "tiny-gemma4-6e-Q4_K_M.gguf"
    assert files["tiny-gemma4-6e-Q4_K_M.gguf"] == {"path": "tiny-gemma4-6e-Q4_K_M.gguf", "size": q4.stat().st_size,
                                                   "action": "upload"}
    assert files["README.md"]["action"] == "upload"
    tag = next(t for t in dry["tags"] if t["ref"] == "demo/tiny-gemma4-6e:Q4_K_M")
    paths = {f["path"]: f["action"] for f in tag["files"]}
    assert paths["manifests/Q4_K_M"] == "upload" and sum(p.startswith("blobs/sha256-") for p in paths) >= 3
    table = release("publish", str(folder), "--dist", str(dist), *targets.args(), *ONLY, "--dry-run").stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    assert [GGUF_REPO, "tiny-gemma4-6e-Q4_K_M.gguf", f"{q4.stat().st_size / 1e6:.1f} MB", "upload"] in rows, table
    assert not targets.hub.log.writes(), "a dry run wrote to the Hub"

    release("publish", str(folder), "--dist", str(dist), *targets.args(), *ONLY, "--no-git-tag")
    from huggingface_hub import HfApi

    HfApi(endpoint=targets.hub_url, token=TOKEN).create_branch(GGUF_REPO, branch="release-demo-gguf-q8_0")
    after = status(demo, targets)
    repo = next(r for r in after["repos"] if r["repo"] == GGUF_REPO)
    assert repo["exists"] and len(repo["head"]) == 40 and repo["files"] >= 3 and repo["matches"] is False
    assert sorted(repo["differing"]) == ["tiny-gemma4-6e-F16.gguf", "tiny-gemma4-6e-imatrix.gguf"]
    assert repo["staging"] == {"release-demo-gguf-q8_0": repo["head"]}
    tags = {t["ref"]: t for t in after["tags"]}
    for ref in ("demo/tiny-gemma4-6e:Q4_K_M", "demo/tiny-gemma4-6e:latest"):
        assert tags[ref]["digest"] == tags[ref]["built"] and tags[ref]["matches"] is True, ref
    assert tags["demo/tiny-gemma4-6e:Q8_0"] == {"ref": "demo/tiny-gemma4-6e:Q8_0", "digest": None, "built": None,
                                                "matches": None}
    nxt = {d["destination"]: {f["path"] for f in d["files"]} for d in after["next"]}
    assert nxt[GGUF_REPO] == {"tiny-gemma4-6e-F16.gguf", "tiny-gemma4-6e-imatrix.gguf"}
    assert "demo/tiny-gemma4-6e:Q4_K_M" not in nxt
    shown = release("status", str(folder), "--dist", str(dist), *targets.args()).stdout
    assert "release-demo-gguf-q8_0" in shown and "no: 2 to send" in shown and repo["head"][:12] in shown
