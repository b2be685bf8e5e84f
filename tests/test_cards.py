"""Model cards: golden v4 cards, computed figures (deltas, capacity, parameters, sizes, bpw), Hub
metadata, the link check, atomic writing and template errors.

Regenerate the golden files after a reviewed template change with
    UPDATE_GOLDEN=1 pytest tests/test_cards.py -k golden
and review the diff before committing it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from card_rows import table_row
from huggingface_hub import ModelCard

from release.cards import CardLinkError, build_context, render_card_texts, render_cards, verify_cards
from release.cards.links import check_url, link_index
from release.cards.render import TEMPLATES_DIR
from release.errors import InputError
from release.manifest import Artifact, FileEntry
from release.plan import plan_artifacts
from release.spec.load import load_release

GOLDEN = Path(__file__).parent / "golden"
# Fixed provenance so the golden files do not change with every commit.
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0123456789abcdef0123456789abcdef01234567",
              "pipelines_dirty": False}
KINDS = ("bf16", "gguf", "nvfp4", "ollama")


@pytest.fixture(scope="module")
def v4():
    return load_release("v4")


@pytest.fixture
def v4_artifacts(v4):
    return plan_artifacts(v4)


@pytest.fixture(scope="module")
def v4_cards(v4):
    return render_card_texts(v4, plan_artifacts(v4), provenance=PROVENANCE)


# ---- golden --------------------------------------------------------------------------------------

PLANNED_SIZES = GOLDEN / "v4" / "planned-sizes.json"


@pytest.fixture(scope="module")
def golden_cards(v4):
    """v4 cards with the planned size estimates pinned (tests/golden/v4/planned-sizes.json), so the
    golden files change with the templates and the card logic, not with the estimators; the live
    estimates are checked by test_planned_sizes_are_marked_estimates."""
    reg = plan_artifacts(v4)
    if os.environ.get("UPDATE_GOLDEN"):
        PLANNED_SIZES.parent.mkdir(parents=True, exist_ok=True)
        PLANNED_SIZES.write_text(json.dumps({a.id: a.facts["size"] for a in reg if "size" in a.facts},
                                            indent=1) + "\n")
    for artifact_id, size in json.loads(PLANNED_SIZES.read_text()).items():
        if artifact_id in reg:
            reg[artifact_id].facts["size"] = size
    return render_card_texts(v4, reg, provenance=PROVENANCE)


@pytest.mark.parametrize("kind", KINDS)
def test_golden_v4(golden_cards, kind):
    path = GOLDEN / "v4" / f"{kind}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(golden_cards[kind], encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 and review it"
    assert golden_cards[kind] == path.read_text(encoding="utf-8"), (
        f"card:{kind} differs from {path.relative_to(GOLDEN.parent)}; if the change is intended, "
        "regenerate with UPDATE_GOLDEN=1 and review the diff")


def test_rendering_is_deterministic(v4):
    a = render_card_texts(v4, plan_artifacts(v4), provenance=PROVENANCE)
    b = render_card_texts(v4, plan_artifacts(v4), provenance=PROVENANCE)
    assert a == b


# ---- computed figures ----------------------------------------------------------------------------



def test_deltas_are_computed(v4, v4_artifacts, v4_cards):
    ctx = build_context(v4, v4_artifacts, PROVENANCE)
    deltas = {r.name: r.delta for r in ctx["scores"]["rows"]}
    assert deltas == {"HumanEval (chat)": 0.0, "HumanEval+ (chat)": -0.61, "MATH-500": 0.0, "AIME 2024": 0.0,
                      "IFEval": -2.0, "GSM8K": -5.0, "GPQA Diamond": -4.04, "LiveCodeBench medium v4": -9.09}
    assert ctx["scores"]["at_parity"] == 3 and ctx["scores"]["worse"] == 5
    assert ctx["scores"]["largest_drop"].name == "LiveCodeBench medium v4"
    for kind in ("bf16", "gguf", "nvfp4", "ollama"):
        assert table_row(v4_cards[kind], "HumanEval+ (chat)") == ["HumanEval+ (chat)", "164", "pass@1", "92.07",
                                                                  "91.46", "−0.61"]
        assert table_row(v4_cards[kind], "LiveCodeBench medium v4")[-1] == "−9.09"
        assert table_row(v4_cards[kind], "MATH-500")[-1] == "0.00"


def test_delta_sign_follows_scores_file(tmp_path):
    """A changed scores.json changes the delta: nothing is typed by hand."""
    pipes = _copy_pipelines(tmp_path)
    scores = pipes / "v4" / "scores.json"
    scores.write_text(scores.read_text().replace('"reference": 87.27, "variant": 78.18',
                                                 '"reference": 77.00, "variant": 78.18'))
    r = load_release(str(pipes / "v4"))
    cards = render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)
    assert table_row(cards["gguf"], "LiveCodeBench medium v4")[-1] == "+1.18"


def test_capacity_and_parameters(v4, v4_artifacts, v4_cards):
    me = build_context(v4, v4_artifacts, PROVENANCE)["me"]
    assert (me["experts_before"], me["experts_kept"], me["experts_dropped"]) == (128, 98, 30)
    assert me["capacity_removed_pct"] == pytest.approx(100 * 30 / 128)
    assert me["top_k"] == 8 and me["moe_layers"] == 30
    per_expert = 3 * 704 * 2816  # gate, up, down of moe_intermediate_size × hidden_size
    assert me["params_after"] == 25_800_000_000 - per_expert * 30 * 30
    assert table_row(v4_cards["bf16"], "Share of MoE capacity removed")[-1] == "23.4%"
    assert table_row(v4_cards["bf16"], "Total parameters")[1] == "25.8B"
    assert table_row(v4_cards["bf16"], "Total parameters")[-1] == "≈20.4B"
    assert table_row(v4_cards["bf16"], "Experts per MoE layer")[1:] == ["128", "98", "98", "98"]


def test_planned_sizes_are_marked_estimates(v4_artifacts, v4_cards):
    planned = v4_artifacts["gguf:Q4_K_M"].facts["size"]
    row = table_row(v4_cards["gguf"], "Q4_K_M ★")
    header = table_row(v4_cards["gguf"], "Tier")
    assert row[3] == f"≈{planned / 1e9:.2f} GB" == "≈13.23 GB"
    assert row[4] == "≈5.18"  # bits per weight: size in bits over parameters
    assert row[header.index("Ollama tag")] == "Q4_K_M"  # the Ollama tag built from it
    assert table_row(v4_cards["gguf"], "CD-Q3 ★")[header.index("Ollama tag")] == "CD-Q3_K_M"
    assert row[header.index("KLD")] == row[header.index("Top-1")] == "—"  # not measured: planned
    assert "Values marked ≈ are planned estimates" in v4_cards["gguf"]


FALLBACK = "Q4_K_M: q4_k on blk.0.ffn_down_exps.weight (×30) became q5_0 (row width 704 not a multiple of 256)"


def test_built_sizes_replace_estimates(v4):
    reg = plan_artifacts(v4)
    planned = reg["gguf:Q4_K_M"]
    reg.add(Artifact(id="gguf:Q4_K_M", kind="gguf", status="built", root="gguf",
                     files=[FileEntry(planned.files[0].path, 13_540_000_000, "0" * 64)],
                     recipe={**planned.recipe, "llama_cpp": "llama-cpp-python 0.3.36 (b1234)"},
                     destination=planned.destination,
                     facts={"bpw": 5.297, "note": "default for most setups", "warnings": [FALLBACK]}))
    reg.add(Artifact(id="ollama:Q4_K_M", kind="ollama", status="built", root="ollama",
                     files=[FileEntry("blobs/sha256-aa", 13_540_001_000, "a" * 64)],
                     destination=reg["ollama:Q4_K_M"].destination,
                     facts={"manifest_digest": "sha256:25d1dbb9e4481234", "model_type": "19.9B",
                            "file_type": "Q4_K_M"}))
    cards = render_card_texts(v4, reg, provenance=PROVENANCE)
    row = table_row(cards["gguf"], "Q4_K_M ★")
    assert row[3] == "13.54 GB" and row[4] == "5.30"
    assert "Converted and quantized with llama-cpp-python 0.3.36 (b1234)." in cards["gguf"]
    assert f"stored in another type: {FALLBACK}." in cards["gguf"]  # silent type fallbacks are shown, not hidden
    # a file built before its types were recorded is not described from the recipe instead
    assert "Q4_K_M: built before the release tool recorded each tensor's type" in cards["gguf"]
    assert table_row(cards["ollama"], "[Q4_K_M](https://ollama.com/mannix/gemma4-98e-v4:Q4_K_M) (latest) ★")[2] == \
        "13.54 GB"
    ctx = build_context(v4, reg, PROVENANCE)
    tag = next(t for t in ctx["ollama"]["tags"] if t["tag"] == "Q4_K_M")
    assert tag["digest"] == "25d1dbb9e448" and tag["model_type"] == "19.9B"


def test_formats_table_links_every_repo(v4_cards):
    for kind in KINDS:
        card = v4_cards[kind]
        for repo in ("ManniX-ITA/gemma-4-A4B-98e-v4-it", "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF",
                     "ManniX-ITA/gemma-4-A4B-98e-v4-NVFP4A16"):
            assert f"[{repo}](https://huggingface.co/{repo})" in card
        assert "[mannix/gemma4-98e-v4](https://ollama.com/mannix/gemma4-98e-v4)" in card


def test_quick_start_uses_real_names(v4_cards):
    gguf = v4_cards["gguf"]
    assert "llama-cli -hf ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF:Q4_K_M" in gguf
    assert "ollama run mannix/gemma4-98e-v4:CD-Q3_K_M" in gguf
    assert "vllm serve ManniX-ITA/gemma-4-A4B-98e-v4-NVFP4A16" in gguf
    assert 'model_id = "ManniX-ITA/gemma-4-A4B-98e-v4-it"' in v4_cards["bf16"]
    assert "PARAMETER stop <turn|>" in v4_cards["ollama"]


def test_siblings_compared(v4_cards):
    row = table_row(v4_cards["bf16"], "[98e v5-coder](https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v5-coder-it)")
    assert row[1].startswith("Python, JavaScript and Rust")
    assert row[3].split(" · ")[1] == "93.29"  # its HumanEval+ score, in our benchmark order
    assert table_row(v4_cards["bf16"], "[98e v3](https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v3-it)")[3] \
        .split(" · ")[6] == "75.25"


def test_nvfp4_card_states_how_loadability_was_established(v4_cards):
    card = v4_cards["nvfp4"]
    assert "vLLM could not be run" in card
    assert "compressed-tensors" in card


def test_per_quant_and_removed_tiers_v5_coder():
    r = load_release("v5-coder")
    cards = render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)
    gguf = cards["gguf"]
    row = table_row(gguf, "[CD-Q4_K_M_L](https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v5-coder-it-GGUF/blob/main/"
                     "gemma-4-A4B-98e-v5-coder-CD-Q4_K_M_L.gguf)")
    assert row[2:] == ["93.29", "+1.22"]
    assert table_row(gguf, "`gemma-4-A4B-98e-v5-coder-IQ2_XXS.gguf`")[1:] == ["7.37 GB", "no result",
                                                                          "evaluation crashed (repeated HTTP 500s)"]
    assert table_row(gguf, "`gemma-4-A4B-98e-v5-coder-Q2_K.gguf`")[2] == "6.10"


@pytest.mark.parametrize("name", ["demo", "v3", "v5-coder"])
def test_other_releases_render(name):
    r = load_release(name)
    cards = render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)
    assert set(cards) == {k for k in KINDS if getattr(r.definition, k) is not None}


# ---- Hub metadata --------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "base", "relation"), [
    ("bf16", "google/gemma-4-26B-A4B-it", "finetune"),
    ("gguf", "ManniX-ITA/gemma-4-A4B-98e-v4-it", "quantized"),
    ("nvfp4", "ManniX-ITA/gemma-4-A4B-98e-v4-it", "quantized"),
])
def test_hub_metadata(v4_cards, kind, base, relation):
    card = ModelCard(v4_cards[kind], ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert data["base_model"] == base
    assert data["base_model_relation"] == relation
    assert data["license"] == "apache-2.0"
    # the GGUF files hold the text model only (tests/test_cards_metadata.py)
    assert data["pipeline_tag"] == ("text-generation" if kind == "gguf" else "image-text-to-text")
    assert {"gemma4", "moe", "expert-pruning"} <= set(data["tags"])
    if kind == "nvfp4":  # the artifact the scores were measured on (tests/test_cards_measured.py)
        results = {(e.dataset_name, e.metric_value) for e in card.data.eval_results}
        assert ("HumanEval+ (chat)", 91.46) in results and ("GPQA Diamond", 69.19) in results
        assert len(results) == 8
    else:
        assert card.data.eval_results is None
    if kind == "gguf":
        assert "gguf" in data["tags"]


def test_ollama_readme_has_no_front_matter(v4_cards):
    assert not v4_cards["ollama"].startswith("---")


# ---- link check ----------------------------------------------------------------------------------

def test_every_link_resolves(v4, v4_artifacts, v4_cards):
    idx = link_index(v4, v4_artifacts)
    links = re.findall(r"\]\((https?://[^)]+)\)", "".join(v4_cards.values()))
    assert len(links) > 50
    for url in links:
        assert check_url(idx, url) is None, url


@pytest.mark.parametrize(("url", "reason"), [
    ("https://huggingface.co/someone/else", "not a repo of this release"),
    ("https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF/blob/main/gemma-4-A4B-98e-v4-Q7_K.gguf",
     "has no file"),
    ("https://ollama.com/mannix/gemma4-98e-v4:Q5_K_M", "has no tag"),
    ("https://example.com/x", "external link"),
    ("docs/file.md", "relative link"),
])
def test_dangling_links_are_named(v4, v4_artifacts, url, reason):
    why = check_url(link_index(v4, v4_artifacts), url)
    assert why is not None and reason in why


def test_sibling_and_base_links_allowed(v4, v4_artifacts):
    idx = link_index(v4, v4_artifacts)
    assert check_url(idx, "https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v5-coder-it-GGUF") is None
    assert check_url(idx, "https://huggingface.co/google/gemma-4-26B-A4B-it") is None
    assert check_url(idx, f"https://huggingface.co/google/gemma-4-26B-A4B-it/tree/{v4.definition.base.revision}") \
        is None


def _templates_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    tdir = tmp_path / "cards"
    shutil.copytree(TEMPLATES_DIR, tdir)
    path = tdir / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return tdir


def test_dangling_link_in_template_fails_and_writes_nothing(v4, v4_artifacts, tmp_path):
    tdir = _templates_with(tmp_path, "bf16.md.j2", "# {{ release.title }}\n",
                           "# {{ release.title }}\n\nSee [the old repo](https://huggingface.co/ManniX-ITA/old-repo).\n")
    out = tmp_path / "dist" / "v4" / "cards"
    with pytest.raises(CardLinkError) as exc:
        render_cards(v4, v4_artifacts, out, provenance=PROVENANCE, templates_dir=tdir)
    assert exc.value.exit_code == 2
    assert [(p.file, p.field) for p in exc.value.problems] == [
        ("card:bf16", "https://huggingface.co/ManniX-ITA/old-repo")]
    assert not out.exists()


def test_dangling_command_reference_fails(v4, v4_artifacts, tmp_path):
    tdir = _templates_with(tmp_path, "partials/quick_start.md.j2", "ollama run {{ t.ref }}",
                           "ollama run {{ t.ref }}\nollama run {{ ollama.model }}:Q5_K_M")
    with pytest.raises(CardLinkError) as exc:
        render_card_texts(v4, v4_artifacts, provenance=PROVENANCE, templates_dir=tdir)
    fields = {(p.file, p.field) for p in exc.value.problems}
    assert ("card:gguf", "ollama run mannix/gemma4-98e-v4:Q5_K_M") in fields
    assert all("no tag 'Q5_K_M'" in p.message for p in exc.value.problems)


def test_hf_tier_reference_checked(v4, v4_artifacts, tmp_path):
    tdir = _templates_with(tmp_path, "partials/quick_start.md.j2",
                           "llama-cli -hf {{ gguf.repo }}:{{ gguf.quick_tier }}", "llama-cli -hf {{ gguf.repo }}:Q7_K")
    with pytest.raises(CardLinkError, match="no GGUF tier 'Q7_K'"):
        render_card_texts(v4, v4_artifacts, provenance=PROVENANCE, templates_dir=tdir)


def test_verify_cards_catches_hand_edited_readme(v4, v4_artifacts, tmp_path):
    out = tmp_path / "cards"
    render_cards(v4, v4_artifacts, out, provenance=PROVENANCE)
    verify_cards(v4, v4_artifacts, out)  # passes as rendered
    readme = out / "gguf" / "README.md"
    readme.write_text(readme.read_text() + "\n[mirror](https://huggingface.co/someone/mirror)\n")
    with pytest.raises(CardLinkError) as exc:
        verify_cards(v4, v4_artifacts, out)
    assert exc.value.problems[0].file == "card:gguf"
    assert exc.value.problems[0].field == "https://huggingface.co/someone/mirror"


# ---- writing, artifacts, template errors -----------------------------------------------------------

def test_render_cards_writes_and_returns_artifacts(v4, v4_artifacts, tmp_path):
    out = tmp_path / "dist" / "v4" / "cards"
    expected = render_card_texts(v4, v4_artifacts, provenance=PROVENANCE)
    built = render_cards(v4, v4_artifacts, out, provenance=PROVENANCE)
    assert [a.id for a in built] == ["card:bf16", "card:gguf", "card:nvfp4", "card:ollama"]
    for a in built:
        path = out / a.id.split(":")[1] / "README.md"
        assert path.read_bytes().decode() == expected[a.id.split(":")[1]]
        assert a.files[0].size == path.stat().st_size and a.status == "built"
        assert a.root == f"cards/{a.id.split(':')[1]}"
    assert built[1].destination.repo == "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF"
    assert built[3].destination is None  # the Ollama readme has no push API
    assert v4_artifacts["card:gguf"].status == "built"
    assert not list(out.rglob("*.tmp"))


def test_undefined_variable_is_an_input_error(v4, v4_artifacts, tmp_path):
    tdir = _templates_with(tmp_path, "nvfp4.md.j2", "# {{ release.title }}", "# {{ release.nonexistent }}")
    with pytest.raises(InputError) as exc:
        render_card_texts(v4, v4_artifacts, provenance=PROVENANCE, templates_dir=tdir)
    assert exc.value.problems[0].file == "cards/nvfp4.md.j2"
    assert "nonexistent" in exc.value.problems[0].message


def test_secrets_never_reach_cards(v4, v4_artifacts, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETSECRETSECRET")
    cards = render_card_texts(v4, v4_artifacts, provenance={**PROVENANCE, "token": "hf_SECRETSECRETSECRET"})
    assert all("SECRET" not in c for c in cards.values())


# ---- helpers -------------------------------------------------------------------------------------

def _copy_pipelines(tmp_path: Path) -> Path:
    src = Path(__file__).resolve().parents[1] / "pipelines"
    dst = tmp_path / "pipelines"
    for name in ("v4", "v3", "v5-coder"):
        shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns("base"))
    return dst


def test_broken_metadata_is_refused_before_writing(v4, v4_artifacts, tmp_path):
    """A template edit that breaks the YAML header is caught by huggingface_hub's parser, not by the Hub."""
    tdir = _templates_with(tmp_path, "gguf.md.j2", "{{ card_data }}", "{{ card_data }}\nlicense: [unclosed")
    out = tmp_path / "cards-out"
    with pytest.raises(InputError) as exc:
        render_cards(v4, v4_artifacts, out, provenance=PROVENANCE, templates_dir=tdir)
    assert exc.value.problems[0].file == "card:gguf"
    assert exc.value.problems[0].field.startswith("metadata")
    assert not out.exists()


def test_wrong_relation_in_metadata_is_refused(v4, v4_artifacts, tmp_path):
    tdir = _templates_with(tmp_path, "nvfp4.md.j2", "{{ card_data }}",
                           "{{ card_data | replace('base_model_relation: quantized', 'base_model_relation: pruned') }}")
    with pytest.raises(InputError) as exc:
        render_card_texts(v4, v4_artifacts, provenance=PROVENANCE, templates_dir=tdir)
    fields = {p.field for p in exc.value.problems if p.file == "card:nvfp4"}
    assert "metadata.base_model_relation" in fields


def test_removed_tier_without_scores_still_listed(tmp_path):
    pipes = _copy_pipelines(tmp_path)
    toml = pipes / "v3" / "release.toml"
    text = toml.read_text().replace('recommended = ["Q4_K_M"]', 'recommended = ["Q4_K_M"]\nremoved = ["Q2_K"]')
    toml.write_text(text)
    r = load_release(str(pipes / "v3"))
    gguf = render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)["gguf"]
    assert table_row(gguf, "`gemma-4-A4B-98e-v3-Q2_K.gguf`") == ["`gemma-4-A4B-98e-v3-Q2_K.gguf`", "—", "—"]


def test_nvfp4_parallel_sizes_from_config(v4, v4_artifacts, v4_cards):
    nv = build_context(v4, v4_artifacts, PROVENANCE)["nvfp4"]
    # widths 704 (experts) and 2112 (dense MLP): 704/8 = 88 is not a multiple of 16
    assert nv["tp_sizes"] == [1, 2, 4]
    assert nv["ep_sizes"] == [2, 7, 14]  # divisors of the 98 kept experts
    assert "- Tensor parallelism: 1, 2, 4 GPUs (8 does not fit" in v4_cards["nvfp4"]


def test_split_tier_links_folder_and_downloads_it(v4):
    reg = plan_artifacts(v4)
    planned = reg["gguf:Q4_K_M"]
    shards = [f"gemma-4-A4B-98e-v4-Q4_K_M/gemma-4-A4B-98e-v4-Q4_K_M-0000{i}-of-00002.gguf" for i in (1, 2)]
    reg.add(Artifact(id="gguf:Q4_K_M", kind="gguf", status="built", root="gguf",
                     files=[FileEntry(p, 7_000_000_000, "2" * 64) for p in shards],
                     recipe=planned.recipe, destination=planned.destination, facts={"bpw": 5.3}))
    gguf = render_card_texts(v4, reg, provenance=PROVENANCE)["gguf"]  # link check passes: folder is known
    url = "https://huggingface.co/ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF/tree/main/gemma-4-A4B-98e-v4-Q4_K_M"
    assert table_row(gguf, "Q4_K_M ★")[1] == f"[gemma-4-A4B-98e-v4-Q4_K_M]({url})"
    assert table_row(gguf, "Q4_K_M ★")[3] == "14.00 GB"
    assert '--include "gemma-4-A4B-98e-v4-Q4_K_M/*"' in gguf


def test_measured_parameters_replace_estimates(v4):
    reg = plan_artifacts(v4)
    planned = reg["bf16"]
    reg.add(Artifact(id="bf16", kind="bf16", status="built", root="bf16",
                     files=[FileEntry("model-00001-of-00001.safetensors", 41_600_000_000, "4" * 64)],
                     recipe=planned.recipe, destination=planned.destination,
                     facts={"parameters_before": 26_220_000_000, "parameters": 20_820_000_000}))
    cards = render_card_texts(v4, reg, provenance=PROVENANCE)
    assert table_row(cards["bf16"], "Total parameters")[1] == "26.2B"
    assert table_row(cards["bf16"], "Total parameters")[-1] == "20.8B"  # counted, so no "≈"
    assert "Parameter counts are those of the checkpoint's tensors" in cards["bf16"]
    assert cards["ollama"].splitlines()[2].startswith("20.8B parameters · 98 experts per MoE layer")
    assert table_row(cards["gguf"], "BF16")[-1] == "41.60 GB"


def test_license_other_needs_name_and_link(tmp_path):
    pipes = _copy_pipelines(tmp_path)
    toml = pipes / "v3" / "release.toml"
    toml.write_text(toml.read_text().replace('license = "apache-2.0"', 'license = "other"'))
    r = load_release(str(pipes / "v3"))
    with pytest.raises(InputError) as exc:
        render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)
    assert {(p.file, p.field) for p in exc.value.problems} == {
        ("card:bf16", "metadata.license"), ("card:gguf", "metadata.license")}
