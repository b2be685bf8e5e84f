"""Bad scores files are refused at load time with the file and the field named (exit 2), before any
card is rendered or written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release.errors import InputError
from release.spec.load import load_release

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def _load_with(tmp_path: Path, mutate: Callable[[dict[str, Any]], None], raw: str | None = None):
    for name in ("v4", "v3", "v5-coder"):  # v4's siblings are loaded with it
        shutil.copytree(PIPELINES / name, tmp_path / name, ignore=shutil.ignore_patterns("base"))
    path = tmp_path / "v4" / "scores.json"
    if raw is None:
        data = json.loads(path.read_text())
        mutate(data)
        raw = json.dumps(data)
    path.write_text(raw)
    return load_release(str(tmp_path / "v4"))


def _per_quant(bench: str, tier: str = "Q4_K_M", listed: str = "GSM8K", value: Any = 80.0):
    def mutate(s: dict[str, Any]) -> None:
        s["per_quant"] = {"benchmarks": [listed], "scores": {tier: {bench: value}}}
    return mutate


CASES = [
    ("missing reference", lambda s: s["benchmarks"][0].pop("reference"), "benchmarks[0].reference", "missing"),
    ("missing variant", lambda s: s["benchmarks"][2].pop("variant"), "benchmarks[2].variant", "missing"),
    ("string score", lambda s: s["benchmarks"][1].update(variant="91.46"), "benchmarks[1].variant",
     "valid number"),
    ("boolean score", lambda s: s["benchmarks"][1].update(reference=True), "benchmarks[1].reference",
     "valid number"),
    ("null score", lambda s: s["benchmarks"][1].update(variant=None), "benchmarks[1].variant", "valid number"),
    ("unknown benchmark in per-quant scores", _per_quant("GSM9K"), "per_quant.scores.Q4_K_M.GSM9K",
     "unknown benchmark 'GSM9K'"),
    ("unknown per-quant benchmark list", _per_quant("GSM9K", listed="GSM9K"), "per_quant.benchmarks[0]",
     "unknown benchmark 'GSM9K'"),
    ("non-numeric per-quant score", _per_quant("GSM8K", value="high"), "per_quant.scores.Q4_K_M.GSM8K",
     "valid number"),
    ("unknown tier in per-quant scores", _per_quant("GSM8K", tier="Q7_K"), "per_quant.scores.Q7_K",
     "unknown tier 'Q7_K'"),
    ("unknown benchmark in removed tiers",
     lambda s: s.update(removed_tiers=[{"tier": "Q2_K", "size_gb": 8.4, "scores": {"GSM9K": 1.0}, "reason": "x"}]),
     "removed_tiers[0].scores.GSM9K", "unknown benchmark"),
    ("duplicate benchmark", lambda s: s["benchmarks"].append(dict(s["benchmarks"][0])), "benchmarks[8].name",
     "duplicate"),
]


@pytest.mark.parametrize(("mutate", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_scores_name_file_and_field(tmp_path, mutate, field, message):
    with pytest.raises(InputError) as exc:
        _load_with(tmp_path, mutate)
    assert exc.value.exit_code == 2
    problems = [(p.file, p.field) for p in exc.value.problems]
    assert ("v4/scores.json", field) in problems, exc.value
    assert any(message in p.message for p in exc.value.problems if p.field == field)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores_refused(tmp_path, token):
    raw = (PIPELINES / "v4" / "scores.json").read_text().replace('"variant": 69.19', f'"variant": {token}')
    with pytest.raises(InputError) as exc:
        _load_with(tmp_path, lambda s: None, raw=raw)
    assert [(p.file, p.field) for p in exc.value.problems] == [("v4/scores.json", "benchmarks[6].variant")]
    assert "finite" in exc.value.problems[0].message


def test_not_json(tmp_path):
    with pytest.raises(InputError) as exc:
        _load_with(tmp_path, lambda s: None, raw="{\"format\": ")
    assert exc.value.problems[0].file == "v4/scores.json"
    assert "not valid JSON" in exc.value.problems[0].message


def test_bad_scores_write_no_cards(tmp_path):
    """The CLI loads the release before rendering, so a bad scores file leaves dist/ untouched."""
    from click.testing import CliRunner

    from release.cli import cli

    with pytest.raises(InputError):
        _load_with(tmp_path, lambda s: s["benchmarks"][0].pop("reference"))
    dist = tmp_path / "dist"
    result = CliRunner().invoke(cli, ["cards", str(tmp_path / "v4"), "--dist", str(dist)])
    assert result.exit_code == 2, result.output
    assert "scores.json" in result.output and "benchmarks[0].reference" in result.output
    assert not dist.exists()
