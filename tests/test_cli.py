"""The command-line contract: exit statuses, `--json` outputs machines read, the plan of v4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli
from release.manifest import SCHEMA


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["demo", "v4", "v3", "v5-coder"])
def test_bundled_releases_check(name: str) -> None:
    code, out = _run("check", name, "--json")
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["ok"] is True


def test_plan_v4_lists_every_artifact_of_the_release(tmp_path: Path) -> None:
    code, out = _run("plan", "v4", "--dist", str(tmp_path), "--json")
    assert code == 0, out
    manifest = json.loads(out[out.index("{"):])
    assert manifest["schema"] == SCHEMA and manifest["release"] == "v4"
    assert set(manifest["pipelines_git"]) >= {"commit", "dirty"}
    assert {"release.toml", "dropmap.json", "scores.json", "base.revision", "cards/templates"} <= set(
        manifest["inputs"])
    ids = {a["id"] for a in manifest["artifacts"]}
    tiers = ["Q8_0", "Q6_K_L", "Q6_K", "Q5_K_L", "Q5_K_M", "Q5_K_S", "Q4_K_L", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
             "IQ4_NL", "IQ4_XS", "Q3_K_XL", "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_XS", "IQ3_XXS", "IQ2_M",
             "IQ2_S", "IQ2_XS", "Q2_K", "CD-Q6", "CD-Q5", "CD-Q4", "CD-Q3", "CD-IQ3"]
    assert ids == {"bf16", "nvfp4", "gguf:F16", "gguf:imatrix", "gguf:ollama-files", *(f"gguf:{t}" for t in tiers),
                   "ollama:Q4_K_M", "ollama:Q6_K", "ollama:CD-Q3_K_M",
                   "quality:reference", "quality:nvfp4", *(f"quality:{t}" for t in tiers),
                   "card:bf16", "card:gguf", "card:nvfp4", "card:ollama"}
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    assert by_id["gguf:CD-Q3"]["recipe"]["ftype"] == "Q3_K_M"
    assert by_id["gguf:CD-Q3"]["destination"]["repo"] == "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF"
    assert by_id["ollama:Q4_K_M"]["recipe"]["aliases"] == ["latest"]
    assert by_id["ollama:CD-Q3_K_M"]["recipe"]["gguf"] == "gguf:CD-Q3"
    assert (tmp_path / "v4" / "manifest.json").is_file()


def test_plan_matrix_is_the_job_plan_as_json() -> None:
    code, out = _run("plan", "v4", "--matrix", "--json")
    assert code == 0
    plan = json.loads(out)
    for job in plan["jobs"]:
        assert {"id", "stage", "artifacts", "needs", "inputs", "disk_gb", "ram_gb", "hours", "runner"} <= set(job)
    assert set(plan["stages"]) == {"dropmap", "prepare", "build", "finish"}
    ids = [j["id"] for j in plan["jobs"]]
    assert [i["job"] for s in plan["stages"].values() for i in s["include"]] == ids


@pytest.mark.parametrize("args", [
    ("build", "demo", "--only", "weights"),
    ("publish", "demo", "--prune-remote", "--only", "gguf"),
    ("plan", "no-such-release"),
    ("check",),
])
def test_usage_errors_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    code, _ = _run(*args, *(() if args[0] == "check" else ("--dist", str(tmp_path))) if args[0] != "check" else ())
    assert code == 2
    assert not any(tmp_path.iterdir())


def test_doctor_json() -> None:
    code, out = _run("doctor", "--json")
    rows = json.loads(out[out.index("["):])
    assert {"torch", "huggingface_hub", "llama-cpp-python"} <= {r["component"] for r in rows}
    assert code == (0 if all(r["ok"] for r in rows) else 1)
