"""A release that derives its own drop map ([dropmap] derive = true): the map is an artifact made before
anything is pruned — on one machine by `release build`, across machines by a `dropmap` job of its own
(runner "gpu") that prepare then fetches from the Hub like any other input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import NEEDS_REGISTRY, ROOT, TOKEN, Targets, env
from test_dropmap import CODE, DIGITS, PROSE, write_calibration

from release.distributed.jobs import plan_jobs
from release.errors import InputError
from release.pipeline import Context, Options
from release.spec.load import load_release


@pytest.fixture(scope="module")
def deriving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pipelines/demo, with its drop map derived from calibration text instead of given."""
    folder = tmp_path_factory.mktemp("derive") / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    (folder / "dropmap.json").unlink()
    write_calibration(folder / "calibration", {"prose": PROSE, "code": CODE, "digits": DIGITS})
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(toml + '\n[dropmap]\nrecipe = "max-class"\nderive = true\n')
    return folder


def test_check_and_plan_with_a_derived_map(deriving: Path) -> None:
    release = load_release(str(deriving))
    assert release.drop_map.pending and release.drop_map.kept_count == 6
    ctx = Context(release, Options(quiet=True))
    assert ctx.artifacts["bf16"].needs == ["base", "dropmap"]
    plan = plan_jobs(ctx)
    first = plan.jobs[0]
    assert (first.id, first.stage, first.runner, first.artifacts) == ("dropmap", "dropmap", "gpu", ["dropmap"])
    assert "dropmap" in plan.job("prepare").needs
    assert [i.id for i in plan.job("prepare").inputs] == ["base", "dropmap"]
    assert plan.to_json()["stages"]["dropmap"]["include"] == [{"job": "dropmap", "runner": "gpu"}]
    # A given map and derive = true at once is ambiguous.
    (deriving / "dropmap.json").write_text((ROOT / "pipelines" / "demo" / "dropmap.json").read_text())
    try:
        with pytest.raises(InputError, match=r"dropmap\.derive"):
            load_release(str(deriving))
    finally:
        (deriving / "dropmap.json").unlink()


def test_build_derives_the_map_then_prunes_with_it(deriving: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "release", "build", str(deriving), "--only", "bf16",
                           "--dist", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    derived = json.loads((tmp_path / "demo" / "dropmap" / "dropmap.json").read_text())
    assert derived["format"] == "moe-drop-map/1" and "max-class" in derived["source"]
    sidecar = next((tmp_path / "demo" / "bf16").glob("*prune*.json"), None) or \
        next(p for p in (tmp_path / "demo" / "bf16").glob("*.json") if "kept" in p.read_text())
    kept = json.loads(sidecar.read_text())["kept"]
    dropped = {layer: sorted(set(range(derived["num_experts"])) - set(k)) for layer, k in kept.items()}
    assert dropped == {k: sorted(v) for k, v in derived["drop"].items()}, "the pruner used another map"
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["id"] == "dropmap")
    assert art["status"] == "built" and art["destination"]["path_in_repo"] == "pruning"
    assert set(art["facts"]["selection"]["kept_share"]) == set(derived["drop"])


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Targets]:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


@pytest.mark.skipif(**NEEDS_REGISTRY)
def test_the_dropmap_job_feeds_prepare_through_the_hub(deriving: Path, remote: Targets, tmp_path: Path) -> None:
    def job(jid: str) -> dict:
        machine = tmp_path / jid
        proc = subprocess.run([sys.executable, "-m", "release", "publish", str(deriving), "--dist", str(machine),
                               *remote.args(), "--json", "--job", jid], capture_output=True, text=True,
                              cwd=ROOT, env={**env(), "HF_HOME": str(machine / "hf")}, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert TOKEN not in proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    assert job("dropmap")["built"] == ["dropmap"]
    prepare = job("prepare")
    assert prepare["built"] == ["bf16", "gguf:F16", "gguf:imatrix", "quality:reference"]
    assert prepare["fetched_files"] == 2
    fetched = json.loads((tmp_path / "prepare" / "demo" / "dropmap" / "dropmap.json").read_text())
    made = json.loads((tmp_path / "dropmap" / "demo" / "dropmap" / "dropmap.json").read_text())
    assert fetched == made


def _selection_card(dist: Path) -> tuple[str, str]:
    card = (dist / "demo" / "cards" / "bf16" / "README.md").read_text()
    chart = (dist / "demo" / "cards" / "bf16" / "expert-selection.svg").read_text()
    return card, chart


def _lowest(shares: dict[str, float]) -> list[int]:
    return [int(k) for k, _ in sorted(shares.items(), key=lambda kv: (kv[1], int(kv[0])))[:3]]


def test_bf16_card_says_how_the_derived_map_chose(deriving: Path, tmp_path: Path) -> None:
    """The method section is generated from the recorded recipe and classes, names the least covered
    layers, and embeds a chart the BF16 repo ships (issue 15.5)."""
    import xml.etree.ElementTree as ET

    proc = subprocess.run([sys.executable, "-m", "release", "build", str(deriving), "--only", "bf16", "--only",
                           "cards", "--dist", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card, chart = _selection_card(tmp_path)
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    selection = next(a for a in manifest["artifacts"] if a["id"] == "dropmap")["facts"]["selection"]
    assert "REAP" in card and "Recipe: `max-class`" in card
    assert all(f"{c}: {n:,}" in card for c, n in selection["classes"].items())
    named = card.split("least covered layers are ", 1)[1].split(".\n", 1)[0]
    assert [int(part.split(" (")[0]) for part in named.split(", ")] == _lowest(selection["kept_share"])
    assert "resolve/main/expert-selection.svg" in card
    assert ET.fromstring(chart).tag.endswith("svg") and chart.count("<rect") == 1 + len(selection["kept_share"])
    card_art = next(a for a in manifest["artifacts"] if a["id"] == "card:bf16")
    assert {f["path"] for f in card_art["files"]} == {"README.md", "expert-selection.svg"}


def test_bf16_card_reads_the_scores_beside_a_given_map(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE, "code": CODE})
    (folder / "dropmap.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "release", "dropmap", str(folder), "--calibration", str(cal),
                           "--recipe", "pooled", "--out", str(folder / "dropmap.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(toml + '\n[dropmap]\nrecipe = "pooled"\ncalibration = "cal"\n')
    shutil.copytree(cal, folder / "cal")
    proc = subprocess.run([sys.executable, "-m", "release", "cards", str(folder), "--dist", str(tmp_path / "dist")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card, chart = _selection_card(tmp_path / "dist")
    assert "Recipe: `pooled` — one score pooled over all calibration tokens" in card and "<svg" in chart
