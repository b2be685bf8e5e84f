"""Card statements that must follow from the release's own files: vLLM's context from config.json, the
Ollama num_ctx advice from the actual num_ctx, what the imatrix file records, when_to_use without
siblings, links a browser can open for a plain OCI registry, and license text that agrees with the
license metadata.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from release.cards import build_context, render_card_texts
from release.cards.links import check_url, link_index
from release.manifest import Artifact, FileEntry
from release.plan import plan_artifacts
from release.spec.load import load_release

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(PIPELINES / name, tmp_path / name, ignore=shutil.ignore_patterns("base", ".base.*.json"))
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _cards(path: str | Path, artifacts=None) -> dict[str, str]:
    r = load_release(str(path))
    return render_card_texts(r, artifacts if artifacts is not None else plan_artifacts(r), provenance=PROVENANCE)


@pytest.fixture(scope="module")
def demo_cards() -> dict[str, str]:
    return _cards("demo")


@pytest.fixture(scope="module")
def v4_cards() -> dict[str, str]:
    return _cards("v4")


# ---- 9. vLLM's --max-model-len is the model's context ------------------------------------------------

def test_vllm_max_model_len_from_config(demo_cards, v4_cards, tmp_path):
    for card in demo_cards.values():
        lens = re.findall(r"--max-model-len (\d+)", card)
        assert lens and set(lens) == {"4096"}  # text_config.max_position_embeddings of the demo
    assert set(re.findall(r"--max-model-len (\d+)", v4_cards["nvfp4"])) == {"262144"}

    pipes = _copy(tmp_path, "demo")
    cfg_path = pipes / "demo" / "base-config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["text_config"]["max_position_embeddings"] = 2048
    cfg_path.write_text(json.dumps(cfg))
    assert set(re.findall(r"--max-model-len (\d+)", _cards(pipes / "demo")["bf16"])) == {"2048"}


# ---- 10. the num_ctx advice follows num_ctx ----------------------------------------------------------

def _num_ctx_sentence(card: str) -> str:
    return next(line for line in card.splitlines() if line.startswith("`num_ctx "))


def test_no_lowering_advice_when_num_ctx_is_already_the_smallest(demo_cards):
    text = _num_ctx_sentence(demo_cards["ollama"])
    assert text.startswith("`num_ctx 4096` replaces the context Ollama would choose")
    assert "/set parameter" not in text and "lower it" not in text and "raise it" not in text


def test_lowering_advice_below_num_ctx(v4_cards):
    text = _num_ctx_sentence(v4_cards["ollama"])
    assert "`/set parameter num_ctx 32768`" in text and '"options": {"num_ctx": 32768}' in text
    assert "8192" not in text
    assert "`OLLAMA_CONTEXT_LENGTH` does not override it" in text  # a baked num_ctx wins over the server default


@pytest.mark.parametrize(("num_ctx", "lower", "raise_to"), [(8192, 4096, None), (40000, 32768, None),
                                                             (2048, None, 262144)])
def test_num_ctx_advice_computed(tmp_path, num_ctx, lower, raise_to):
    pipes = _copy(tmp_path, "v4", "v3", "v5-coder")
    _edit(pipes / "v4" / "release.toml", "num_ctx = 256000", f"num_ctx = {num_ctx}")
    text = _num_ctx_sentence(_cards(pipes / "v4")["ollama"])
    sets = re.findall(r"/set parameter num_ctx (\d+)", text)
    if lower:
        assert sets == [str(lower)] and "lower it" in text
    else:
        assert sets == [str(raise_to)] and "raise it up to the model's context of 262144 tokens" in text


# ---- 11. the imatrix: what the file records, never the requested count --------------------------------

def test_planned_imatrix_states_no_chunk_count(v4_cards):
    line = next(ln for ln in v4_cards["gguf"].splitlines() if "importance matrix" in ln)
    assert "64" not in line and "chunk" not in line  # 64 is what the definition asks for


def test_built_imatrix_states_its_own_chunks():
    r = load_release("demo")
    reg = plan_artifacts(r)
    planned = reg["gguf:imatrix"]
    asked = planned.recipe["chunks"]
    recorded = asked + 3  # whatever the file says, not what the definition asked for
    reg.add(Artifact(id="gguf:imatrix", kind="gguf", status="built", root="gguf",
                     files=[FileEntry(planned.files[0].path, 88_000, "5" * 64)], recipe=planned.recipe,
                     destination=planned.destination,
                     facts={"chunks": recorded, "chunk_size": 57, "datasets": ["calibration.txt"],
                            "tokens": 57 * recorded}))
    line = next(ln for ln in _cards("demo", reg)["gguf"].splitlines() if "importance matrix" in ln)
    assert f"the file records {recorded} chunks of 57 tokens from `calibration.txt`" in line
    assert f"{asked} chunks" not in line


# ---- 12. when_to_use without siblings; links a browser can open ---------------------------------------

def test_when_to_use_shown_without_siblings(demo_cards):
    r = load_release("demo")
    assert not r.siblings and r.definition.cards.when_to_use
    for kind in ("bf16", "gguf", "nvfp4", "ollama"):
        assert f"Pick 6e demo for {r.definition.cards.when_to_use}." in demo_cards[kind], kind


def test_plain_registry_gets_no_api_links(demo_cards):
    for kind, card in demo_cards.items():
        assert "/v2/" not in card, kind
    assert "| `127.0.0.1:5000/demo/tiny-gemma4-6e:Q4_K_M` (latest) ★ | Q4_K_M |" in demo_cards["ollama"]
    assert "| Ollama | `127.0.0.1:5000/demo/tiny-gemma4-6e` | Ollama |" in demo_cards["gguf"]
    r = load_release("demo")
    why = check_url(link_index(r, plan_artifacts(r)), "http://127.0.0.1:5000/v2/demo/tiny-gemma4-6e/manifests/Q4_K_M")
    assert why and "registry API" in why


def test_ollama_com_links_open_model_and_tag_pages(v4_cards):
    assert "[Q4_K_M](https://ollama.com/mannix/gemma4-98e-v4:Q4_K_M)" in v4_cards["ollama"]
    assert "[mannix/gemma4-98e-v4](https://ollama.com/mannix/gemma4-98e-v4)" in v4_cards["gguf"]


# ---- 13. license text agrees with the license metadata ------------------------------------------------

@pytest.mark.parametrize(("fields", "sentence", "url"), [
    ('license = "apache-2.0"', "[Apache License 2.0](https://www.apache.org/licenses/LICENSE-2.0) (`apache-2.0`)",
     "https://www.apache.org/licenses/LICENSE-2.0"),
    ('license = "gemma"\nlicense_link = "https://ai.google.dev/gemma/terms"',
     "[Gemma Terms of Use](https://ai.google.dev/gemma/terms) (`gemma`)", "https://ai.google.dev/gemma/terms"),
    ('license = "gemma"', "[Gemma Terms of Use](https://ai.google.dev/gemma/terms) (`gemma`)",
     "https://ai.google.dev/gemma/terms"),
    ('license = "other"\nlicense_name = "acme-model-terms"\nlicense_link = "https://acme.example/terms"',
     "[acme-model-terms](https://acme.example/terms).", "https://acme.example/terms"),
    ('license = "cc-by-nc-4.0"', "the base model: cc-by-nc-4.0. Using", ""),
])
def test_license_text_follows_metadata(tmp_path, fields, sentence, url):
    pipes = _copy(tmp_path, "v3", "v4", "v5-coder")
    _edit(pipes / "v3" / "release.toml", 'license = "apache-2.0"', fields)
    r = load_release(str(pipes / "v3"))
    cards = render_card_texts(r, plan_artifacts(r), provenance=PROVENANCE)  # links checked: url is allowed
    assert build_context(r, plan_artifacts(r), PROVENANCE)["license"].url == url
    for kind, card in cards.items():
        section = card.split("## License\n", 1)[1].split("\n## ", 1)[0]
        assert sentence in section, (kind, section)
        assert "`other`" not in section
        if kind != "ollama":
            meta = ModelCard(card).data
            assert meta.license == r.definition.release.license
            assert (meta.license_link or "") == r.definition.release.license_link
