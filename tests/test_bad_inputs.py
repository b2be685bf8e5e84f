"""Every malformed definition, drop map or score file: exit 2, one message naming file and field,
and nothing written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "demo"
V4 = ROOT / "pipelines" / "v4"


def _edit_text(rel: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        p = folder / rel
        text = p.read_text()
        assert old in text, f"fixture drift: {old!r} not in {rel}"
        p.write_text(text.replace(old, new, count))

    return edit


def _append(rel: str, text: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        with open(folder / rel, "a") as fh:
            fh.write(text)

    return edit


def _edit_json(rel: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        p = folder / rel
        data = json.loads(p.read_text())
        fn(data)
        p.write_text(json.dumps(data))

    return edit


def _write(rel: str, text: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / rel).write_text(text)

    return edit


def _delete(rel: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / rel).unlink()

    return edit


def _symlink(rel: str, target: str) -> Callable[[Path], None]:
    """Replace `rel` by a symlink to `target` (relative to the folder unless absolute)."""
    def edit(folder: Path) -> None:
        p = folder / rel
        p.unlink(missing_ok=True)
        p.symlink_to(target)

    return edit


def _outside(name: str, text: str) -> Callable[[Path], None]:
    """A file beside the release folder (it exists, so only the path rule can refuse it)."""
    def edit(folder: Path) -> None:
        (folder.parent / name).write_text(text)

    return edit


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _chain(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for e in edits:
            e(folder)

    return edit


def _set(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


R, D, S, C = "release.toml", "dropmap.json", "scores.json", "base-config.json"

# (id, mutation, expected file, expected field or message fragment)
CASES: list[tuple[str, Callable[[Path], None], str, str]] = [
    # release.toml — syntax, schema, types
    ("toml-syntax", _append(R, "\n[broken\n"), R, "invalid TOML"),
    ("unknown-top-key", _append(R, "\n[extras]\nx = 1\n"), R, "extras: unknown key"),
    ("unknown-gguf-key", _edit_text(R, 'baseline = "F16"', 'baseline = "F16"\ntier = ["Q4_K_M"]'), R,
     "gguf.tier: unknown key"),
    ("wrong-type-experts-kept", _edit_text(R, "experts_kept = 6", 'experts_kept = "6"'), R,
     "prune.experts_kept"),
    ("missing-title", _edit_text(R, 'title = "Tiny Gemma 4 MoE 6-Expert demo"\n', ""), R,
     "release.title: required field missing"),
    ("bad-baseline", _edit_text(R, 'baseline = "F16"', 'baseline = "F8"'), R, "gguf.baseline"),
    # names the Hub or Ollama would refuse
    ("repo-space", _edit_text(R, 'repo = "demo/tiny-gemma4-6e-it"', 'repo = "demo/tiny gemma"'), R, "bf16.repo"),
    ("repo-double-dash", _edit_text(R, 'repo = "demo/tiny-gemma4-6e-it"', 'repo = "demo/tiny--gemma"'), R,
     "bf16.repo"),
    ("repo-no-namespace", _edit_text(R, 'repo = "demo/tiny-gemma4-6e-NVFP4A16"', 'repo = "tiny-nvfp4"'), R,
     "nvfp4.repo"),
    ("repo-shared", _edit_text(R, 'repo = "demo/tiny-gemma4-6e-NVFP4A16"', 'repo = "demo/tiny-gemma4-6e-it"'),
     R, "nvfp4.repo"),
    ("revision-not-sha", _edit_text(R, 'revision = "0000000000000000000000000000000000000000"',
                                    'revision = "main"'), R, "base.revision"),
    ("release-name", _edit_text(R, 'name = "demo"', 'name = "Demo Release"'), R, "release.name"),
    ("ollama-namespace-dot", _edit_text(R, 'model = "demo/tiny-gemma4-6e"', 'model = "de.mo/tiny"'), R,
     "ollama.model"),
    ("ollama-uppercase-oci", _edit_text(R, 'model = "demo/tiny-gemma4-6e"', 'model = "demo/Tiny"'), R,
     "ollama.model"),
    ("ollama-bad-tag", _edit_text(R, 'Q8_0 = "Q8_0"', '"Q8 0" = "Q8_0"'), R, "ollama.tags.Q8 0"),
    ("ollama-tag-unknown-tier", _edit_text(R, 'Q8_0 = "Q8_0"', 'Q8_0 = "Q5_K_S"'), R, "ollama.tags.Q8_0"),
    ("ollama-latest-missing", _edit_text(R, 'latest = "Q4_K_M"', 'latest = "Q2_K"'), R, "ollama.latest"),
    ("ollama-unknown-param", _edit_text(R, "num_ctx = 4096", "num_ctxx = 4096"), R,
     "ollama.parameters.num_ctxx"),
    ("ollama-param-type", _edit_text(R, "temperature = 0.6", 'temperature = "hot"'), R,
     "ollama.parameters.temperature"),
    ("ollama-http-remote", _edit_text(R, 'registry = "http://127.0.0.1:5000"',
                                      'registry = "http://registry.example.com"'), R, "ollama.registry"),
    ("ollama-template-missing", _edit_text(R, 'template = "ollama/template.gotmpl"',
                                           'template = "ollama/missing.gotmpl"'), R, "ollama.template"),
    # GGUF tiers
    ("gguf-unknown-tier", _edit_text(R, '"IQ4_XS", "CD-Q5"', '"IQ4_XS", "Q4_K_X", "CD-Q5"'), R, "gguf.tiers[5]"),
    ("gguf-duplicate-tier", _edit_text(R, '"Q8_0", "Q6_K_L"', '"Q8_0", "Q8_0", "Q6_K_L"'), R, "gguf.tiers[1]"),
    ("gguf-confusable", _edit_text(R, "CD-Q5", "CD-Q5_K_M", 2), R, "gguf.recipes.CD-Q5_K_M"),
    ("gguf-unknown-type", _edit_text(R, '"q6_k"], [', '"q9_k"], ['), R, "gguf.recipes.CD-Q5.overrides[0]"),
    ("gguf-bad-regex", _edit_text(R, "['attn_(q|k|v|output)\\.weight', \"q3_k\"]", "['attn_(q', \"q3_k\"]"), R,
     "gguf.recipes.CD-Q3.overrides[2]"),
    ("gguf-needs-imatrix", _chain(_edit_text(R, '"IQ4_XS", "CD-Q5"', '"IQ4_XS", "IQ2_M", "CD-Q5"'),
                                  _edit_text(R, 'imatrix = "calibration.txt"', "")),
     R, "IQ2_M needs an importance matrix"),
    ("gguf-imatrix-missing", _edit_text(R, 'imatrix = "calibration.txt"', 'imatrix = "nope.txt"'), R,
     "gguf.imatrix"),
    ("gguf-unknown-recipe-base", _edit_text(R, 'base = "Q5_K_M"', 'base = "Q5_K_Z"'), R,
     "gguf.recipes.CD-Q5.base"),
    ("gguf-recommended-unknown", _edit_text(R, 'recommended = ["Q4_K_M"]', 'recommended = ["Q2_K"]'), R,
     "gguf.recommended[0]"),
    ("experts-kept-mismatch", _edit_text(R, "experts_kept = 6", "experts_kept = 5"), R, "prune.experts_kept"),
    ("sibling-missing", _edit_text(R, 'license = "apache-2.0"', 'license = "apache-2.0"\nsiblings = ["v99"]'),
     R, "release.siblings"),
    ("scores-file-missing", _delete(S), S, "file not found"),
    # drop map
    ("dropmap-json", _write(D, '{"format": "moe-drop-map/1", '), D, "not valid JSON"),
    ("dropmap-out-of-range", _edit_json(D, lambda d: d["drop"]["2"].__setitem__(0, 131)), D,
     "drop.2: index 131 out of range 0..7"),
    ("dropmap-duplicate", _edit_json(D, lambda d: _set(d, "drop.1", [d["drop"]["1"][0]] * 2)), D,
     "drop.1: duplicate index"),
    ("dropmap-missing-layer", _edit_json(D, lambda d: d["drop"].pop("3")), D, "drop.3: MoE layer 3 missing"),
    ("dropmap-extra-layer", _edit_json(D, lambda d: _set(d, "drop.9", [0, 1])), D, "drop.9"),
    ("dropmap-unequal", _edit_json(D, lambda d: _set(d, "drop.0", [0, 1, 2])), D, "drop.0: keeps 5 experts"),
    ("dropmap-below-topk", _edit_json(D, lambda d: [_set(d, f"drop.{i}", list(range(7))) for i in range(4)]),
     D, "fewer than top-k = 2"),
    ("dropmap-drop-and-keep", _edit_json(D, lambda d: _set(d, "keep", {"0": [0]})), D, "never both"),
    ("dropmap-num-experts", _edit_json(D, lambda d: _set(d, "num_experts", 16)), D,
     "num_experts: 16 disagrees with the base config"),
    ("dropmap-non-integer", _edit_json(D, lambda d: d["drop"]["0"].__setitem__(0, "3")), D, "drop.0[0]"),
    ("dropmap-layer-key", _edit_json(D, lambda d: _set(d, "drop.x", [0, 1])), D, "drop.x"),
    ("dropmap-format", _edit_json(D, lambda d: _set(d, "format", "drop-map/0")), D, "format"),
    ("dropmap-unknown-key", _edit_json(D, lambda d: _set(d, "layers", {})), D, "layers: unknown key"),
    ("dropmap-other-model", _edit_json(D, lambda d: _set(d, "base", "Qwen/Qwen3-30B-A3B")), D,
     "base: drop map is for 'Qwen/Qwen3-30B-A3B'"),
    # scores
    ("scores-json", _write(S, "{not json"), S, "not valid JSON"),
    ("scores-missing-reference", _edit_json(S, lambda d: d["benchmarks"][0].pop("reference")), S,
     "benchmarks[0].reference: required field missing"),
    ("scores-non-numeric", _edit_json(S, lambda d: _set(d["benchmarks"][1], "variant", "high")), S,
     "benchmarks[1].variant"),
    ("scores-unknown-perquant-benchmark", _edit_json(S, lambda d: d["per_quant"]["benchmarks"].append("MMLU")),
     S, "per_quant.benchmarks[1]: unknown benchmark 'MMLU'"),
    ("scores-unknown-perquant-tier", _edit_json(S, lambda d: _set(d, "per_quant.scores.Q3_K_S",
                                                                  {"Toy recall": 1.0})),
     S, "per_quant.scores.Q3_K_S"),
    ("scores-removed-unknown-benchmark", _edit_json(S, lambda d: _set(d["removed_tiers"][0], "scores",
                                                                      {"MMLU": 1.0})),
     S, "removed_tiers[0].scores.MMLU"),
    ("scores-unknown-key", _edit_json(S, lambda d: _set(d, "deltas", [])), S, "deltas: unknown key"),
    ("scores-format", _edit_json(S, lambda d: _set(d, "format", "scores/2")), S, "format"),
    # base config
    ("config-unknown-architecture", _edit_json(C, lambda d: _set(d, "model_type", "llama")), C,
     "model_type: unsupported MoE architecture 'llama'"),
    ("config-missing", _delete(C), R, "base.config"),
    # input files that crashed the loader (issue 13.4): nesting, huge or non-integer counts, folders, loops
    ("dropmap-nested-100000", _write(D, _deep_json(100_000)), D, "nested deeper than 32 levels"),
    ("dropmap-nested-40", _edit_json(D, lambda d: _set(d, "notes", json.loads(_deep_json(40)))), D,
     "nested deeper than 32 levels"),
    ("scores-nested-100000", _write(S, _deep_json(100_000)), S, "nested deeper than 32 levels"),
    ("config-nested-100000", _write(C, _deep_json(100_000)), C, "nested deeper than 32 levels"),
    ("toml-nested-5000", _append(R, "\ndeep = " + "[" * 5000 + "]" * 5000 + "\n"), R, "nested deeper than"),
    ("toml-nested-40", _append(R, "\ndeep = " + "[" * 40 + "]" * 40 + "\n"), R, "nested deeper than 32"),
    ("config-layers-infinity", _edit_json(C, lambda d: _set(d, "text_config.num_hidden_layers", float("inf"))),
     C, "text_config.num_hidden_layers: must be an integer 0..1024, got inf"),
    ("config-layers-float", _edit_json(C, lambda d: _set(d, "text_config.num_hidden_layers", 4.7)), C,
     "text_config.num_hidden_layers: must be an integer 0..1024, got 4.7"),
    ("config-layers-billion", _edit_json(C, lambda d: _set(d, "text_config.num_hidden_layers", 10**9)), C,
     "text_config.num_hidden_layers: 1000000000 is out of range 0..1024"),
    ("config-experts-huge", _edit_json(C, lambda d: _set(d, "text_config.num_experts", 10**12)), C,
     "text_config.num_experts: 1000000000000 is out of range 0..65536"),
    ("config-huge-integer-literal", _write(C, '{"model_type": ' + "1" * 5000 + "}"), C, "not usable JSON"),
    ("dropmap-experts-huge", _edit_json(D, lambda d: _set(d, "num_experts", 10**12)), D,
     "num_experts: 1000000000000 is out of range 1..65536"),
    ("dropmap-layer-key-huge", _edit_json(D, lambda d: _set(d, "drop." + "9" * 5000, [0, 1])), D,
     "layer key must be a decimal layer index"),
    ("scores-is-directory", _edit_text(R, 'scores = "scores.json"', 'scores = "ollama"'), R,
     "cards.scores: demo/ollama is a directory, expected a file"),
    ("template-is-directory", _edit_text(R, 'template = "ollama/template.gotmpl"', 'template = "ollama"'), R,
     "ollama.template: demo/ollama is a directory"),
    ("scores-symlink-loop", _symlink(S, S), R, "cards.scores: 'scores.json': symlink loop"),
    ("dropmap-symlink-loop", _chain(_symlink(D, "loop-b.json"), _symlink("loop-b.json", D)), R,
     "prune.drop_map: 'dropmap.json': symlink loop"),
    # numbers (issue 13.7): bounds stated in the error
    ("imatrix-chunks-huge", _edit_text(R, "imatrix_chunks = 2", "imatrix_chunks = " + str(10**30)), R,
     "gguf.imatrix_chunks: Input should be less than or equal to 10000"),
    ("split-size-inf", _edit_text(R, 'imatrix = "calibration.txt"', 'imatrix = "calibration.txt"\nsplit_size_gb = inf'),
     R, "gguf.split_size_gb: Input should be a finite number"),
    ("split-size-1e308", _edit_text(R, 'imatrix = "calibration.txt"',
                                    'imatrix = "calibration.txt"\nsplit_size_gb = 1e308'),
     R, "gguf.split_size_gb: Input should be less than or equal to 50"),
    ("vram-nan", _append(R, "\n[ollama.vram_gb]\nQ4_K_M = nan\n"), R,
     "ollama.vram_gb.Q4_K_M: Input should be a finite"),
    ("ollama-param-nan", _edit_text(R, "temperature = 0.6", "temperature = nan"), R,
     "ollama.parameters.temperature: must be a finite number"),
    ("experts-kept-huge", _edit_text(R, "experts_kept = 6", "experts_kept = " + str(10**12)), R,
     "prune.experts_kept: Input should be less than or equal to 65536"),
    ("scores-n-negative", _edit_json(S, lambda d: _set(d["benchmarks"][0], "n", -5)), S,
     "benchmarks[0].n: Input should be greater than or equal to 1"),
    ("scores-n-zero", _edit_json(S, lambda d: _set(d["benchmarks"][0], "n", 0)), S,
     "benchmarks[0].n: Input should be greater than or equal to 1"),
    ("scores-percent-250", _edit_json(S, lambda d: _set(d["benchmarks"][1], "variant", 250)), S,
     "benchmarks[1].variant: 250 is not a percentage (0–100)"),
    ("scores-perquant-percent", _edit_json(S, lambda d: _set(d, "per_quant.scores.Q8_0", {"Toy recall": -1.0})), S,
     "per_quant.scores.Q8_0.Toy recall: -1.0 is not a percentage"),
    ("dropmap-duplicate-key", _edit_text(D, '"drop": {', '"drop": {\n  "3": [0, 4],'), D,
     "drop.3: key given more than once"),
    ("scores-duplicate-key", _edit_text(S, '"format": "moe-release-scores/1",',
                                        '"format": "moe-release-scores/1", "format": "moe-release-scores/1",'), S,
     "format: key given more than once"),
    ("config-duplicate-key", _edit_text(C, '"num_experts": 8,', '"num_experts": 8, "num_experts": 6,'), C,
     "text_config.num_experts: key given more than once"),
    # paths that leave the release folder (issue 13.5)
    ("template-absolute", _edit_text(R, 'template = "ollama/template.gotmpl"', 'template = "/etc/passwd"'), R,
     "ollama.template: '/etc/passwd' is absolute"),
    ("license-symlink-out", _symlink("ollama/LICENSE", "/etc/passwd"), R,
     "ollama.license: 'ollama/LICENSE' is a symlink to /etc/passwd, outside the release folder"),
    ("scores-dotdot", _chain(_outside("outside.json", "{}"),
                             _edit_text(R, 'scores = "scores.json"', 'scores = "../outside.json"')),
     R, "cards.scores: '../outside.json' contains '..'"),
    ("imatrix-dir-symlink-out", _chain(_outside("calib.txt", "text " * 4000), _symlink("cal", ".."),
                                       _edit_text(R, 'imatrix = "calibration.txt"', 'imatrix = "cal/calib.txt"')),
     R, "gguf.imatrix: 'cal/calib.txt' is a symlink to"),
    ("base-path-absolute", _edit_text(R, 'path = "base"', 'path = "/etc"'), R,
     "base.path: '/etc' is absolute; paths are relative to the release folder (a base checkpoint kept "
     "elsewhere needs [base] path_outside = true)"),
    ("base-outside-generated", _edit_text(R, 'path = "base"', 'path = "/tmp"\npath_outside = true'), R,
     "base.path_outside: a generated base lives in the release folder"),
    ("sibling-path", _edit_text(R, 'license = "apache-2.0"', 'license = "apache-2.0"\nsiblings = ["../v4"]'),
     R, "release.siblings[0]"),
    # imatrix tiers (issue 13.6) and licenses (issue 13.13)
    ("iq4-xs-without-imatrix", _edit_text(R, 'imatrix = "calibration.txt"', ""), R,
     "gguf.tiers[4]: IQ4_XS needs an importance matrix (IQ4_XS is an i-quant"),
    ("recipe-iq4-without-imatrix", _chain(_edit_text(R, '"Q4_K_M", "IQ4_XS", "CD-Q5"', '"Q4_K_M", "CD-Q5"'),
                                          _edit_text(R, '"q6_k"], [', '"iq4_xs"], ['),
                                          _edit_text(R, 'imatrix = "calibration.txt"', "")),
     R, "gguf.recipes.CD-Q5: CD-Q5 needs an importance matrix"),
    ("license-link-mismatch", _edit_text(R, 'license = "apache-2.0"',
                                         'license = "apache-2.0"\nlicense_link = "https://ai.google.dev/gemma/terms"'),
     R, "release.license_link: links to the Gemma Terms of Use ('gemma'), but release.license is 'apache-2.0'"),
    ("license-llama-link", _edit_text(R, 'license = "apache-2.0"',
                                      'license = "apache-2.0"\nlicense_link = "https://www.llama.com/llama3_1/license/"'),
     R, "release.license_link: links to a Llama community license"),
]


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("base"))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_case_ids_are_distinct() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(("case", "mutate", "file", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_file_and_field(
    case: str, mutate: Callable[[Path], None], file: str, fragment: str, pipeline: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mutate(pipeline)
    before = _snapshot(pipeline)
    dist = tmp_path / "dist"
    monkeypatch.chdir(tmp_path)
    for args in (["check", str(pipeline)], ["plan", str(pipeline), "--dist", str(dist), "--json"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (case, result.output)
        message = result.output
        assert f"demo/{file}" in message, message
        assert fragment in message, message
        assert re.search(r"error: demo/\S+", message), message
    assert not dist.exists(), "bad input must write nothing"
    assert _snapshot(pipeline) == before


def test_all_errors_of_a_file_reported_at_once(pipeline: Path) -> None:
    data = json.loads((pipeline / D).read_text())
    data["drop"]["0"][0] = 99
    data["drop"]["1"] = [data["drop"]["1"][0]] * 2
    data["drop"]["2"] = ["x"]
    (pipeline / D).write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["check", str(pipeline)])
    assert result.exit_code == 2
    assert "drop.0: index 99 out of range" in result.output
    assert "drop.1: duplicate index" in result.output
    assert "drop.2[0]: expert index must be an integer" in result.output


def test_real_process_exit_status_is_2(pipeline: Path) -> None:
    (pipeline / D).write_text("[]")
    proc = subprocess.run([sys.executable, "-m", "release", "check", str(pipeline)],
                          capture_output=True, text=True, cwd=pipeline.parent)
    assert proc.returncode == 2
    assert "demo/dropmap.json: top level must be a JSON object" in proc.stderr


def test_unknown_release_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["check", "no-such-release"])
    assert result.exit_code == 2
    assert "no release 'no-such-release'" in result.output


def test_v4_check_passes_without_base_weights() -> None:
    assert not (V4 / "base").exists()
    result = CliRunner().invoke(cli, ["check", "v4"])
    assert result.exit_code == 0, result.output
