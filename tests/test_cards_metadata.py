"""The Hub metadata of every card against the Hub's model card spec (hub-docs modelcard.md, huggingface_hub
ModelCardData / EvalResult): `quantized_by` on the quantized repos, a model-tree relation the Hub knows,
a pipeline tag that fits what the repo's files can do, and model-index results whose task, dataset and
metric fields are the ones the spec defines (a Hub dataset id when scores.json gives one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import ModelCard

from release.cards import render_card_texts
from release.errors import InputError
from release.plan import plan_artifacts
from release.spec.load import load_release

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}

# hub-docs modelcard.md: the model-index keys, required (`type`, `name` of a dataset; `type`, `value` of a
# metric; a task's `type`) and optional.
TASK_KEYS, TASK_REQUIRED = {"type", "name"}, {"type"}
DATASET_KEYS, DATASET_REQUIRED = {"type", "name", "config", "split", "revision", "args"}, {"type", "name"}
METRIC_KEYS, METRIC_REQUIRED = {"type", "value", "name", "config", "args", "verified"}, {"type", "value"}
RELATIONS = {"adapter", "merge", "quantized", "finetune"}


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(PIPELINES / name, tmp_path / name, ignore=shutil.ignore_patterns("base", "dist"))
    return tmp_path


def _cards(path: str | Path) -> dict[str, str]:
    r = load_release(str(path))
    return render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)


def _header(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def v4_cards() -> dict[str, str]:
    return _cards("v4")


def test_quantized_by_on_the_quantized_repos(v4_cards, tmp_path):
    assert _header(v4_cards["gguf"])["quantized_by"] == "ManniX-ITA"  # [release] owner by default
    assert _header(v4_cards["nvfp4"])["quantized_by"] == "ManniX-ITA"
    assert "quantized_by" not in _header(v4_cards["bf16"])
    pipes = _copy(tmp_path, "v4", "v3", "v5-coder")
    _edit(pipes / "v4" / "release.toml", 'owner = "ManniX-ITA"\n', 'owner = "ManniX-ITA"\nquantized_by = "Mannix"\n')
    cards = _cards(pipes / "v4")
    assert _header(cards["gguf"])["quantized_by"] == _header(cards["nvfp4"])["quantized_by"] == "Mannix"


@pytest.mark.parametrize("value", ['""', '"two\\nlines"', '"  "', '"' + "x" * 97 + '"'])
def test_bad_quantized_by_is_refused(tmp_path, value):
    pipes = _copy(tmp_path, "v4", "v3", "v5-coder")
    _edit(pipes / "v4" / "release.toml", 'owner = "ManniX-ITA"\n', f'owner = "ManniX-ITA"\nquantized_by = {value}\n')
    with pytest.raises(InputError) as exc:
        load_release(str(pipes / "v4"))
    assert ("v4/release.toml", "release.quantized_by") in [(p.file, p.field) for p in exc.value.problems]

    from release.cli import cli

    result = CliRunner().invoke(cli, ["check", str(pipes / "v4")])
    assert result.exit_code == 2 and "release.quantized_by" in result.output


@pytest.mark.parametrize("name", ["v4", "v3", "demo"])
def test_metadata_follows_the_hub_spec(name):
    release = load_release(name)
    cards = _cards(name)
    d = release.definition
    for kind, card in cards.items():
        if kind == "ollama":
            continue
        header = _header(card)
        repo = getattr(d, kind).repo
        assert header["base_model_relation"] in RELATIONS
        assert header["base_model"] == (d.base.repo if kind == "bf16" else d.bf16.repo)
        ModelCard(card, ignore_metadata_errors=False)  # huggingface_hub parses it strictly
        for entry in header.get("model-index", []):
            assert entry["name"] == repo  # {model_id} in the spec
            for result in entry["results"]:
                assert set(result) <= {"task", "dataset", "metrics", "source"}
                assert TASK_REQUIRED <= set(result["task"]) <= TASK_KEYS
                # the benchmarks are text tasks whatever the model's own pipeline tag is
                assert result["task"]["type"] == "text-generation"
                assert DATASET_REQUIRED <= set(result["dataset"]) <= DATASET_KEYS
                assert all(isinstance(result["dataset"][k], str) and result["dataset"][k] for k in DATASET_REQUIRED)
                for metric in result["metrics"]:
                    assert METRIC_REQUIRED <= set(metric) <= METRIC_KEYS
                    assert isinstance(metric["value"], int | float)


def test_pipeline_tag_fits_what_the_files_can_do(v4_cards):
    """Gemma 4 takes images; its GGUF files hold the text model only (no vision projector is shipped), so
    the GGUF repo is a text-generation model while the BF16 and NVFP4 checkpoints keep the vision tower."""
    assert _header(v4_cards["bf16"])["pipeline_tag"] == "image-text-to-text"
    assert _header(v4_cards["nvfp4"])["pipeline_tag"] == "image-text-to-text"
    assert _header(v4_cards["gguf"])["pipeline_tag"] == "text-generation"


def test_dataset_id_from_the_scores_file(tmp_path):
    pipes = _copy(tmp_path, "v4", "v3", "v5-coder")
    path = pipes / "v4" / "scores.json"
    scores = json.loads(path.read_text())
    gsm8k = next(b for b in scores["benchmarks"] if b["name"] == "GSM8K")
    gsm8k["dataset"] = {"id": "openai/gsm8k", "config": "main", "split": "test"}
    path.write_text(json.dumps(scores))
    header = _header(_cards(pipes / "v4")["nvfp4"])
    result = next(r for r in header["model-index"][0]["results"] if r["dataset"]["name"] == "GSM8K")
    assert result["dataset"] == {"name": "GSM8K", "type": "openai/gsm8k", "config": "main", "split": "test"}

    gsm8k["dataset"] = {"id": "not a dataset id"}
    path.write_text(json.dumps(scores))
    with pytest.raises(InputError) as exc:
        load_release(str(pipes / "v4"))
    index = scores["benchmarks"].index(gsm8k)
    assert ("v4/scores.json", f"benchmarks[{index}].dataset.id") in [(p.file, p.field) for p in exc.value.problems]
