"""`release scores import`: lm-evaluation-harness results files (tests/fixtures/lm-eval/, in the format of
lm-eval 0.4.13: results, n-samples, configs, versions, config …) become benchmark rows that `release check`
accepts and the cards render; a bad file is one error naming it and the key, and scores.json is untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from card_rows import table_row

from release.cards import render_card_texts
from release.plan import plan_artifacts
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "lm-eval"
VARIANT = FIXTURES / "results_variant.json"
REFERENCE = FIXTURES / "results_reference.json"


def _release(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    dest = tmp_path / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", dest, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return dest


def _import(demo: Path, results: Path, side: str, *extra: str) -> dict:
    proc = _release("scores", "import", str(demo), "--lm-eval", str(results), "--as", side, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)




def test_import_reference_and_variant_rows_that_check_accepts_and_cards_render(demo: Path) -> None:
    raw = json.loads(VARIANT.read_text())
    ref = _import(demo, REFERENCE, "reference")
    assert [r["benchmark"] for r in ref["rows"]] == ["GSM8K", "IFEval", "ARC-Challenge"]
    assert ref["unmapped"] == ["lambada_openai"]  # no default row for a perplexity task
    # The reference alone makes no row (a row has both sides): its scores wait in its run's record.
    assert ref["pending"] == ["GSM8K", "IFEval", "ARC-Challenge"]
    assert _release("check", str(demo)).returncode == 0
    waiting = json.loads((demo / "scores.json").read_text())
    assert [b["name"] for b in waiting["benchmarks"]] == ["Toy recall", "Toy arithmetic"]
    assert waiting["harness"]["lm_eval"]["reference"][0]["scores"]["GSM8K"] == 91.0
    assert _import(demo, VARIANT, "variant")["pending"] == []
    proc = _release("check", str(demo))
    assert proc.returncode == 0, proc.stderr

    scores = json.loads((demo / "scores.json").read_text())
    gsm8k = next(b for b in scores["benchmarks"] if b["name"] == "GSM8K")
    # Fractions become percentages; n is the effective sample count (--limit 100), not the task's 1319.
    want = round(100 * raw["results"]["gsm8k"]["exact_match,flexible-extract"], 2)
    assert gsm8k == {"name": "GSM8K", "n": raw["n-samples"]["gsm8k"]["effective"], "metric": "flex",
                     "reference": 91.0, "variant": want}
    assert gsm8k["n"] == 100 != raw["n-samples"]["gsm8k"]["original"]
    (run,) = scores["harness"]["lm_eval"]["variant"]
    assert run["version"] == raw["lm_eval_version"] == "0.4.13" and run["model"] == "vllm"
    assert run["model_args"] == raw["config"]["model_args"] and run["limit"] == 100
    assert run["tasks"] == ["arc_challenge", "gsm8k", "ifeval"]
    assert scores["harness"]["lm_eval"]["reference"][0]["model_args"].startswith("pretrained=demo/tiny-gemma4-8e,")
    # The hand-typed rows are kept as they were.
    assert scores["benchmarks"][0]["name"] == "Toy recall"

    release = load_release(str(demo))
    cards = render_card_texts(release, plan_artifacts(release), provenance={})
    for kind in ("bf16", "gguf", "nvfp4", "ollama"):
        assert table_row(cards[kind], "GSM8K") == ["GSM8K", "100", "flex", "91.00", "86.00", "−5.00"]
        assert table_row(cards[kind], "IFEval") == ["IFEval", "100", "prompt_strict", "95.00", "93.00", "−2.00"]
    assert "Imported from lm-evaluation-harness results: 8e (arc_challenge, gsm8k, ifeval) by lm-eval 0.4.13 with " \
           "`vllm`, limit 100 per task; 6e demo (arc_challenge, gsm8k, ifeval) by lm-eval 0.4.13" in cards["gguf"]


def test_per_quant_rows_and_definition_mappings(demo: Path) -> None:
    toml = demo / "release.toml"
    toml.write_text(toml.read_text() + """
[[lm_eval]]
task = "gsm8k"
metric = "exact_match,strict-match"
benchmark = "GSM8K strict"
label = "strict"

[[lm_eval]]
task = "lambada_openai"
metric = "perplexity,none"
benchmark = "LAMBADA perplexity"
percent = false
""")
    _import(demo, REFERENCE, "reference")
    _import(demo, VARIANT, "variant")
    quant = _import(demo, VARIANT, "variant", "--quant", "Q4_K_M")
    assert {r["benchmark"] for r in quant["rows"]} == {"GSM8K strict", "LAMBADA perplexity", "IFEval",
                                                       "ARC-Challenge"}
    assert _release("check", str(demo)).returncode == 0
    scores = json.loads((demo / "scores.json").read_text())
    names = [b["name"] for b in scores["benchmarks"]]
    assert "GSM8K" not in names and "GSM8K strict" in names  # the definition's row replaces the default
    ppl = next(b for b in scores["benchmarks"] if b["name"] == "LAMBADA perplexity")
    assert ppl["percent"] is False and ppl["higher_is_better"] is False and ppl["variant"] == 3.7412
    assert scores["per_quant"]["scores"]["Q4_K_M"]["GSM8K strict"] == 79.0
    assert scores["harness"]["lm_eval"]["Q4_K_M"][0]["file_sha256"]
    release = load_release(str(demo))
    card = render_card_texts(release, plan_artifacts(release), provenance={})["gguf"]
    assert "| GSM8K strict | Δ vs 8e |" in card.split("### Scores per quantization")[1]


def _broken(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads(VARIANT.read_text())
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("edit", "key"), [
    (lambda d: d.pop("n-samples"), "n-samples"),
    (lambda d: d.pop("configs"), "configs"),
    (lambda d: d.__setitem__("results", []), "results"),
    (lambda d: d["results"]["gsm8k"].pop("exact_match,flexible-extract"), "results.gsm8k.exact_match,flexible-extract"),
    (lambda d: d["results"]["gsm8k"].__setitem__("exact_match,flexible-extract", "N/A"),
     "results.gsm8k.exact_match,flexible-extract"),
    (lambda d: d["results"]["gsm8k"].__setitem__("exact_match,flexible-extract", 86.0),
     "results.gsm8k.exact_match,flexible-extract"),
    (lambda d: d["n-samples"].pop("ifeval"), "n-samples.ifeval"),
    (lambda d: d["versions"].pop("arc_challenge"), "versions.arc_challenge"),
])
def test_a_bad_results_file_is_one_error_naming_the_file_and_the_key(demo: Path, tmp_path: Path, edit, key) -> None:  # type: ignore[no-untyped-def]
    before = (demo / "scores.json").read_bytes()
    path = _broken(tmp_path, edit)
    proc = _release("scores", "import", str(demo), "--lm-eval", str(path), "--as", "variant")
    assert proc.returncode == 2, proc.stderr
    assert f"error: {path}: {key}: " in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (demo / "scores.json").read_bytes() == before


def test_not_json_or_not_a_results_file(demo: Path, tmp_path: Path) -> None:
    for content, what in (("{not json", "not valid JSON"), ("[1, 2]", "not an lm-evaluation-harness results")):
        path = tmp_path / "results.json"
        path.write_text(content)
        proc = _release("scores", "import", str(demo), "--lm-eval", str(path), "--as", "variant")
        assert proc.returncode == 2 and f"{path}: " in proc.stderr and what in proc.stderr, proc.stderr
    proc = _release("scores", "import", str(demo), "--lm-eval", str(tmp_path / "missing.json"), "--as", "variant")
    assert proc.returncode == 2 and "missing.json" in proc.stderr


def test_runs_that_do_not_compare_are_refused_and_nothing_is_written(demo: Path, tmp_path: Path) -> None:
    _import(demo, REFERENCE, "reference")
    before = (demo / "scores.json").read_bytes()
    # The variant scored on another number of items than the reference.
    path = _broken(tmp_path, lambda d: d["n-samples"]["gsm8k"].__setitem__("effective", 1319))
    proc = _release("scores", "import", str(demo), "--lm-eval", str(path), "--as", "variant")
    assert proc.returncode == 2 and f"{path}: n-samples.gsm8k.effective" in proc.stderr, proc.stderr
    assert (demo / "scores.json").read_bytes() == before
    # Per-quant scores are the variant's; a tier the release does not have is refused.
    proc = _release("scores", "import", str(demo), "--lm-eval", str(VARIANT), "--as", "reference", "--quant", "Q4_K_M")
    assert proc.returncode == 2 and "--quant" in proc.stderr
    proc = _release("scores", "import", str(demo), "--lm-eval", str(VARIANT), "--as", "variant", "--quant", "Q9_9")
    assert proc.returncode == 2 and "not a tier" in proc.stderr
    assert (demo / "scores.json").read_bytes() == before


def test_groups_sum_their_subtasks_and_secrets_stay_out(demo: Path, tmp_path: Path) -> None:
    def edit(d: dict) -> None:
        d["results"]["mmlu"] = {"alias": "mmlu", "acc,none": 0.7012, "acc_stderr,none": 0.0036}
        d["results"]["mmlu_abstract_algebra"] = {"alias": " - abstract_algebra", "acc,none": 0.41}
        d["results"]["mmlu_anatomy"] = {"alias": " - anatomy", "acc,none": 0.72}
        d["group_subtasks"]["mmlu"] = ["mmlu_abstract_algebra", "mmlu_anatomy"]
        d["n-samples"]["mmlu_abstract_algebra"] = {"original": 100, "effective": 100}
        d["n-samples"]["mmlu_anatomy"] = {"original": 135, "effective": 135}
        d["versions"]["mmlu"] = 2
        d["config"]["model_args"] += ",token=hf_abcdefghijklmnopqrstuvwxyz0123"

    result = _import(demo, _broken(tmp_path, edit), "variant")
    mmlu = next(r for r in result["rows"] if r["benchmark"] == "MMLU")
    assert mmlu["n"] == 235 and mmlu["value"] == 70.12
    assert "mmlu_anatomy" not in result["unmapped"]  # part of the group that was imported
    text = (demo / "scores.json").read_text()
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in text and "token=***" in text


# ---- several runs per side, at once, of the right model (issue 19.5, 19.20) ------------------------------------

def _subset(source: Path, tasks: list[str], out: Path, **config: object) -> Path:
    """A results file of `source` with only `tasks` (as a run of those tasks alone would write it)."""
    data = json.loads(source.read_text())
    for key in ("results", "n-samples", "configs", "versions", "group_subtasks", "higher_is_better", "n-shot"):
        if isinstance(data.get(key), dict):
            data[key] = {t: v for t, v in data[key].items() if t in tasks}
    data["config"].update(config)
    out.write_text(json.dumps(data))
    return out


def _rows(demo: Path) -> dict[str, dict]:
    return {b["name"]: b for b in json.loads((demo / "scores.json").read_text())["benchmarks"]}


@pytest.mark.parametrize("first", ["reference", "variant"])
def test_two_files_on_one_side_before_the_other_both_make_their_rows(demo: Path, tmp_path: Path, first: str) -> None:
    """Each run's waiting scores are kept: the first file's row appears when the other side comes, not only
    the last file's."""
    source = {"reference": REFERENCE, "variant": VARIANT}
    second = "variant" if first == "reference" else "reference"
    a = _subset(source[first], ["gsm8k"], tmp_path / "a.json")
    b = _subset(source[first], ["ifeval", "arc_challenge"], tmp_path / "b.json")
    assert _import(demo, a, first)["pending"] == ["GSM8K"]
    assert _import(demo, b, first)["pending"] == ["IFEval", "ARC-Challenge"]
    assert _import(demo, source[second], second)["pending"] == []
    rows = _rows(demo)
    assert {name: (rows[name]["reference"], rows[name]["variant"]) for name in ("GSM8K", "IFEval", "ARC-Challenge")} \
        == {"GSM8K": (91.0, 86.0), "IFEval": (95.0, 93.0), "ARC-Challenge": (66.0, 64.0)}
    runs = json.loads((demo / "scores.json").read_text())["harness"]["lm_eval"]
    assert [r["tasks"] for r in runs[first]] == [["gsm8k"], ["arc_challenge", "ifeval"]]
    # The card names every run, not only the last one per side.
    release = load_release(str(demo))
    card = render_card_texts(release, plan_artifacts(release), provenance={})["bf16"]
    line = next(ln for ln in card.splitlines() if ln.startswith("Imported from lm-evaluation-harness results"))
    label = {"reference": "8e", "variant": "6e demo"}
    assert f"{label[first]} (gsm8k) by lm-eval" in line and f"{label[first]} (arc_challenge, ifeval) by" in line, line
    assert f"{label[second]} (arc_challenge, gsm8k, ifeval) by" in line, line
    # Importing the same file again replaces its record: no second copy of the run.
    _import(demo, a, first)
    again = json.loads((demo / "scores.json").read_text())["harness"]["lm_eval"][first]
    assert sorted(r["tasks"] for r in again) == [["arc_challenge", "ifeval"], ["gsm8k"]]


_AT_ONCE = """
import os, sys, time
from pathlib import Path
from release.spec.lmeval import import_lm_eval
from release.spec.load import load_release

demo, results, side, ready, go = sys.argv[1:]
release = load_release(demo)
Path(ready).write_text("")
while not os.path.exists(go):
    time.sleep(0.0005)
import_lm_eval(release, Path(results), side=side)
"""


def test_imports_at_the_same_time_lose_nothing(demo: Path, tmp_path: Path) -> None:
    """Six real processes, released together, each fold a run into scores.json: every run and every row is
    there afterwards (the read-modify-write takes turns under a lock file beside scores.json)."""
    tasks = [["gsm8k"], ["ifeval"], ["arc_challenge"]]
    jobs = [(_subset({"reference": REFERENCE, "variant": VARIANT}[side], t, tmp_path / f"{side}-{t[0]}.json"), side)
            for side in ("reference", "variant") for t in tasks]
    go = tmp_path / "go"
    procs = []
    for i, (results, side) in enumerate(jobs):
        procs.append(subprocess.Popen([sys.executable, "-c", _AT_ONCE, str(demo), str(results), side,
                                       str(tmp_path / f"ready-{i}"), str(go)], cwd=ROOT, stderr=subprocess.PIPE,
                                      text=True))
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready-{i}").exists() for i in range(len(jobs))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.stderr.read() for p in procs if p.poll() is not None]  # type: ignore[union-attr]
        time.sleep(0.05)
    go.write_text("")
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()  # type: ignore[union-attr]
    scores = json.loads((demo / "scores.json").read_text())
    runs = scores["harness"]["lm_eval"]
    assert sorted(r["tasks"][0] for r in runs["reference"]) == sorted(r["tasks"][0] for r in runs["variant"]) \
        == ["arc_challenge", "gsm8k", "ifeval"]
    rows = _rows(demo)
    assert all({"reference", "variant"} <= set(rows[b]) for b in ("GSM8K", "IFEval", "ARC-Challenge")), rows
    assert _release("check", str(demo)).returncode == 0


def test_a_run_of_another_model_is_refused_naming_both(demo: Path, tmp_path: Path) -> None:
    before = (demo / "scores.json").read_bytes()
    llama = _subset(VARIANT, ["gsm8k"], tmp_path / "llama.json",
                    model_args="pretrained=meta-llama/Llama-3.1-8B-Instruct,dtype=auto")
    proc = _release("scores", "import", str(demo), "--lm-eval", str(llama), "--as", "variant")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {llama}: config.model_args.pretrained: ") and \
        "'meta-llama/Llama-3.1-8B-Instruct'" in line and "demo/tiny-gemma4-6e-it" in line, line
    assert "--allow-other-model" in line
    assert (demo / "scores.json").read_bytes() == before
    # The variant's repo is not the reference: --as reference must be the base.
    wrong_side = _subset(VARIANT, ["gsm8k"], tmp_path / "wrong-side.json")
    proc = _release("scores", "import", str(demo), "--lm-eval", str(wrong_side), "--as", "reference")
    assert proc.returncode == 2 and "'demo/tiny-gemma4-6e-it'" in proc.stderr and "demo/tiny-gemma4-8e" in proc.stderr
    assert "config.model_args.pretrained" in proc.stderr
    # A path outside the release and its outputs.
    elsewhere = _subset(VARIANT, ["gsm8k"], tmp_path / "elsewhere.json", model_args=f"pretrained={tmp_path}/model")
    proc = _release("scores", "import", str(demo), "--lm-eval", str(elsewhere), "--as", "variant")
    assert proc.returncode == 2 and f"'{tmp_path}/model'" in proc.stderr, proc.stderr
    assert (demo / "scores.json").read_bytes() == before
    # What the user says is that model under another name is imported.
    assert _import(demo, llama, "variant", "--allow-other-model")["pending"] == ["GSM8K"]


@pytest.mark.parametrize(("side", "model_args", "extra"), [
    ("reference", "pretrained={demo}/base,dtype=auto", ()),  # the base's local copy
    ("reference", "pretrained=/hf/hub/models--demo--tiny-gemma4-8e/snapshots/0123abcd", ()),  # its HF cache
    ("variant", "pretrained={dist}/demo/bf16", ("--dist", "{dist}")),  # what `release build` made
    ("variant", "pretrained=demo/tiny-gemma4-6e-NVFP4A16,quantization=compressed-tensors", ()),
    ("variant", "model=hf.co/demo/tiny-gemma4-6e-it-GGUF:Q4_K_M,base_url=http://127.0.0.1:11434/v1", ()),
    ("variant", "model=demo/tiny-gemma4-6e:Q4_K_M", ()),  # the Ollama tag
    ("variant", {"pretrained": "demo/tiny-gemma4-6e-it", "dtype": "bfloat16"}, ()),
])
def test_the_release_s_own_models_are_imported(demo: Path, tmp_path: Path, side: str, model_args: object,
                                               extra: tuple[str, ...]) -> None:
    dist = tmp_path / "dist"
    if isinstance(model_args, str):
        model_args = model_args.format(demo=demo, dist=dist)
    results = _subset({"reference": REFERENCE, "variant": VARIANT}[side], ["gsm8k"], tmp_path / "r.json",
                      model_args=model_args)
    _import(demo, results, side, *(e.format(dist=dist) for e in extra))


@pytest.mark.parametrize(("model_args", "secrets", "kept"), [
    ("pretrained=demo/tiny-gemma4-6e-it,use_auth_token=True,openai_api_key=abc123,HF_TOKEN=letmein,dtype=auto",
     ["use_auth_token=True", "abc123", "letmein"], ["use_auth_token=***", "openai_api_key=***", "dtype=auto"]),
    ("pretrained=demo/tiny-gemma4-6e-it,max_tokens=512,tokenizer=demo/tok,add_bos_token=True,password=hunter2",
     ["hunter2"], ["max_tokens=512", "tokenizer=demo/tok", "add_bos_token=True", "password=***"]),
    ("model=demo/tiny-gemma4-6e:Q4_K_M,base_url=http://127.0.0.1/v1?k=sk-proj-abcdefghijklmnopqrstuv",
     ["sk-proj-abcdefghijklmnopqrstuv"], ["base_url=http://127.0.0.1/v1?k=***"]),
    ({"pretrained": "demo/tiny-gemma4-6e-it", "apiKey": "plain", "headers": {"Authorization": "Basic dXNlcjpwdw=="},
      "note": "hf_abcdefghijklmnopqrstuvwxyz0123"},
     ["plain", "dXNlcjpwdw==", "hf_abcdefghijklmnopqrstuvwxyz0123"], ['"apiKey": "***"', '"Authorization": "***"']),
])
def test_credentials_in_model_args_are_redacted_whatever_they_look_like(demo: Path, tmp_path: Path, model_args: object,
                                                                        secrets: list[str], kept: list[str]) -> None:
    results = _subset(VARIANT, ["gsm8k"], tmp_path / "r.json", model_args=model_args)
    _import(demo, results, "variant")
    (run,) = json.loads((demo / "scores.json").read_text())["harness"]["lm_eval"]["variant"]
    text = (demo / "scores.json").read_text()
    for secret in secrets:
        assert secret not in text, secret
    for k in kept:
        assert k in run["model_args"], run["model_args"]
