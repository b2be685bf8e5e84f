"""A [quality] threshold that withholds a tier the release still uses (issue 19.18): the quick start's tier or
an Ollama tag's. `check` (with the figures built in DIST), `release cards` and a publish each refuse it with
one line per use naming the threshold, the tier, its measurement and what to change — not a card-link error —
and `check` with nothing built has nothing to say."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _release(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(pipeline, dist, figures of Q4_K_M): the demo's quick-start tier built and measured."""
    root = tmp_path_factory.mktemp("withheld")
    pipeline = root / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", pipeline, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    proc = _release("build", str(pipeline), "--only", "gguf:Q4_K_M", "--dist", str(root / "dist"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((root / "dist" / "demo" / "manifest.json").read_text())
    figures = next(a for a in manifest["artifacts"] if a["id"] == "gguf:Q4_K_M")["facts"]["quality"]
    return pipeline, root / "dist", figures


def _with(tmp_path: Path, built: tuple[Path, Path, dict], setting: str) -> tuple[Path, Path]:
    """A copy of the built demo (pipeline, dist) whose [quality] has `setting`."""
    pipeline, dist, _ = built
    copy = tmp_path / "demo"
    shutil.copytree(pipeline, copy)
    toml = copy / "release.toml"
    toml.write_text(toml.read_text().replace("# max_kld = 0.5", setting, 1))
    dist_copy = tmp_path / "dist"
    shutil.copytree(dist, dist_copy, copy_function=os.link)  # outputs are replaced by rename, never rewritten
    (dist_copy / "demo" / "hashes.json").unlink(missing_ok=True)
    return copy, dist_copy


def _refusals(stderr: str) -> dict[str, str]:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    return {ln.split(": ")[2]: ln for ln in errors}


def _assert_names_tier_threshold_and_fix(stderr: str, setting: str, measured: str, remedy: str) -> None:
    assert "Traceback" not in stderr and "hf download" not in stderr, stderr[-3000:]
    refusals = _refusals(stderr)
    assert set(refusals) == {"cards.quick_start.gguf_tier", "ollama.tags.Q4_K_M"}, stderr[-3000:]
    verb = "withhold" if " and " in setting else "withholds"
    for field, line in refusals.items():
        assert line.startswith(f"error: demo/release.toml: {field}: [quality] {setting} {verb} gguf:Q4_K_M "
                               f"({measured}), which "), line
        assert line.endswith(f"uses: {remedy}, or pick another tier"), line
    assert "[cards] quick_start uses" in refusals["cards.quick_start.gguf_tier"]
    assert "Ollama tag Q4_K_M ([ollama] tags.Q4_K_M) uses" in refusals["ollama.tags.Q4_K_M"]


def test_check_cards_and_publish_name_the_tier_the_threshold_and_the_fix(built: tuple[Path, Path, dict],
                                                                         tmp_path: Path) -> None:
    kld = built[2]["kld_mean"]
    limit = float(f"{kld * 0.9:.3g}")
    pipeline, dist = _with(tmp_path, built, f"max_kld = {limit}")
    measured = f"KLD {kld:.4g} > {limit:g}"
    for args in (("check", str(pipeline), "--dist", str(dist)), ("cards", str(pipeline), "--dist", str(dist)),
                 ("publish", str(pipeline), "--local", "--only", "gguf:Q4_K_M", "--dist", str(dist))):
        proc = _release(*args)
        assert proc.returncode == 2, (args, proc.stderr[-3000:])
        _assert_names_tier_threshold_and_fix(proc.stderr, f"max_kld = {limit:g}", measured, "raise max_kld")
    assert not (dist / "demo" / "local" / "hub" / "demo").exists() or not any(
        (dist / "demo" / "local" / "hub").rglob("*.gguf")), "a refused publish sent files"
    # With nothing built there is no figure to cross: check has nothing to say.
    proc = _release("check", str(pipeline), "--dist", str(tmp_path / "empty"))
    assert proc.returncode == 0 and "withholds" not in proc.stderr, proc.stderr


def test_min_top1_and_both_thresholds(built: tuple[Path, Path, dict], tmp_path: Path) -> None:
    fig = built[2]
    top1, kld = fig["top1_agreement"], fig["kld_mean"]
    limit = round(min(1.0, top1 + 0.05), 3)
    max_kld = float(f"{kld / 2:.3g}")
    pipeline, dist = _with(tmp_path, built, f"min_top1 = {limit}\nmax_kld = {max_kld}")
    proc = _release("check", str(pipeline), "--dist", str(dist))
    assert proc.returncode == 2, proc.stderr
    _assert_names_tier_threshold_and_fix(
        proc.stderr, f"max_kld = {max_kld:g} and min_top1 = {limit:g}",
        f"KLD {kld:.4g} > {max_kld:g}; top-1 {100 * top1:.1f}% < {100 * limit:g}%", "raise max_kld or lower min_top1")


def test_a_withheld_tier_nothing_uses_is_only_listed_as_removed(built: tuple[Path, Path, dict],
                                                                tmp_path: Path) -> None:
    kld = built[2]["kld_mean"]
    pipeline, dist = _with(tmp_path, built, f"max_kld = {kld * 0.9:.3g}")
    toml = pipeline / "release.toml"
    text = toml.read_text().replace('gguf_tier = "Q4_K_M"', 'gguf_tier = "Q8_0"')
    text = text.replace('ollama_tags = ["Q4_K_M", "CD-Q3"]', 'ollama_tags = ["Q8_0"]')
    text = text.replace('latest = "Q4_K_M"', 'latest = "Q8_0"').replace('Q4_K_M = "Q4_K_M"\n', "", 1)
    toml.write_text(text)
    assert _release("check", str(pipeline), "--dist", str(dist)).returncode == 0
    proc = _release("cards", str(pipeline), "--dist", str(dist))
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = (dist / "demo" / "cards" / "gguf" / "README.md").read_text()
    assert "is above max_kld" in card
