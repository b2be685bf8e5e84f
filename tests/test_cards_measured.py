"""Scores on the artifact that was measured: every card says which artifact and engine produced the
benchmark numbers (scores.json's harness), the Hub's model-index carries them only on the card of that
artifact, per-quant scores appear only on the card of what each was measured on (GGUF tiers on the GGUF
card and, for their tags, the Ollama card), and measured KLD/top-1 figures only beside what they measure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from card_rows import table_row
from huggingface_hub import ModelCard

from release.cards import render_card_texts
from release.manifest import Artifact, FileEntry
from release.plan import plan_artifacts
from release.spec.load import load_release

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}
NVFP4_URL = "https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v4-NVFP4A16"


def _cards(path: str | Path, reg=None) -> dict[str, str]:
    r = load_release(str(path))
    return render_card_texts(r, reg if reg is not None else plan_artifacts(r), provenance=PROVENANCE)


def _section(card: str, heading: str) -> str:
    start = card.index(f"\n{heading}\n")
    end = card.find("\n## ", start + len(heading) + 2)
    return card[start:end if end != -1 else None]


@pytest.fixture(scope="module")
def v4_cards() -> dict[str, str]:
    return _cards("v4")


def test_model_index_only_on_the_measured_artifacts_card(v4_cards):
    """v4's scores were measured on NVFP4A16 in vLLM: the Hub shows them as that repo's results only."""
    results = ModelCard(v4_cards["nvfp4"], ignore_metadata_errors=False).data.eval_results
    assert results is not None and len(results) == 8
    assert {(e.dataset_name, e.metric_value) for e in results} >= {("GSM8K", 86.0), ("GPQA Diamond", 69.19)}
    for kind in ("bf16", "gguf"):
        data = ModelCard(v4_cards[kind], ignore_metadata_errors=False).data
        assert not data.eval_results, kind
        assert "model-index" not in v4_cards[kind].split("\n---\n", 1)[0], kind


def test_each_card_says_which_artifact_and_engine(v4_cards):
    here = _section(v4_cards["nvfp4"], "## Scores")
    assert "Measured on this repo's NVFP4A16 checkpoint with vLLM" in here
    for kind in ("bf16", "gguf", "ollama"):
        text = _section(v4_cards[kind], "## Scores")
        assert f"Measured on [the NVFP4A16 checkpoint]({NVFP4_URL}) with vLLM" in text, kind
        assert "not on " in text.split("|")[0], kind  # said before the table, not after it
    # the comparison with sibling releases says what each row was measured on, this release included
    pick = _section(v4_cards["bf16"], "## Which release to pick")
    assert "98e v4: NVFP4A16 with vLLM" in pick and "98e v3: Q6_K" in pick


def test_gguf_tier_as_the_measured_artifact():
    """v3 measured its Q6_K GGUF: the GGUF card holds the model-index, the BF16 card links there."""
    cards = _cards("v3")
    assert len(ModelCard(cards["gguf"]).data.eval_results) == 1
    assert not ModelCard(cards["bf16"]).data.eval_results
    assert "Measured on this repo's Q6_K GGUF" in _section(cards["gguf"], "## Scores")
    assert ("Measured on [the Q6_K GGUF](https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v3-it-GGUF/blob/main/"
            "gemma-4-A4B-98e-v3-Q6_K.gguf)") in _section(cards["bf16"], "## Scores")


def test_unnamed_artifact_is_said_and_claims_no_repo():
    """v5-coder's scores file names an engine but no artifact: no card claims the results as its own."""
    cards = _cards("v5-coder")
    for kind, card in cards.items():
        if kind != "ollama":
            assert not ModelCard(card).data.eval_results, kind
        assert "does not say which artifact was evaluated (engine: llama.cpp)" in _section(card, "## Scores")


# ---- per-quant scores --------------------------------------------------------------------------------

def test_per_quant_scores_only_where_measured(tmp_path):
    shutil.copytree(PIPELINES / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns("base", "dist"))
    path = tmp_path / "demo" / "scores.json"
    scores = json.loads(path.read_text())
    scores["per_quant"]["scores"]["NVFP4A16"] = {"Toy recall": 59.5}
    path.write_text(json.dumps(scores))
    cards = _cards(tmp_path / "demo")
    gguf = cards["gguf"]
    assert table_row(gguf, "[Q4_K_M](https://huggingface.co/demo/tiny-gemma4-6e-it-GGUF/blob/main/"
                           "tiny-gemma4-6e-Q4_K_M.gguf)")[2] == "58.00"
    assert "59.50" not in gguf  # the NVFP4A16 score is not a GGUF's
    assert "59.50" in cards["nvfp4"] and "58.00" not in cards["nvfp4"]
    assert "Scores per quantization" not in cards["bf16"] and "58.00" not in cards["bf16"]
    # the Ollama card shows each tag's own tier's score
    row = table_row(cards["ollama"], "`127.0.0.1:5000/demo/tiny-gemma4-6e:Q4_K_M` (latest) ★")
    assert "58.00" in row and "Toy recall" in cards["ollama"]
    assert "55.00" in table_row(cards["ollama"], "`127.0.0.1:5000/demo/tiny-gemma4-6e:CD-Q3`")
    # tiers built and not published are GGUF tiers: listed on the GGUF card only
    assert "Tiers that were built and not published" in gguf
    for kind in ("bf16", "nvfp4", "ollama"):
        assert "Tiers that were built and not published" not in cards[kind], kind


# ---- measured quality ----------------------------------------------------------------------------------

def test_measured_kld_only_beside_what_it_measures():
    r = load_release("v4")
    reg = plan_artifacts(r)
    planned = reg["nvfp4"]
    reg.add(Artifact(id="nvfp4", kind="nvfp4", status="built", root="nvfp4",
                     files=[FileEntry("model.safetensors", 13_000_000_000, "0" * 64)], recipe=planned.recipe,
                     destination=planned.destination,
                     facts={"quality": {"kld_mean": 0.012345, "kld_p99": 0.2468, "top1_agreement": 0.9135,
                                        "ppl": 7.41, "ppl_reference": 7.22, "tokens": 4080,
                                        "text_sha256": "1" * 64, "reference": "bf16"}}))
    cards = render_card_texts(r, reg, provenance=PROVENANCE)
    assert "0.01235 nats/token" in cards["nvfp4"] and "91.3%" in cards["nvfp4"]
    for kind in ("bf16", "gguf", "ollama"):
        assert "0.01235" not in cards[kind] and "91.3%" not in cards[kind], kind
