"""`check` and `build` warn when the imatrix calibration text is too short for `imatrix_chunks`
(issue 13, item 11), counting tokens with the base model's tokenizer when it is on this machine."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from release.cli import cli
from release.demo import generate_tiny_gemma4
from release.gguf.imatrix import chunk_plan

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "demo"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tiny_gemma4(tmp_path_factory.mktemp("gen") / "base")


def _pipeline(tmp_path: Path, chunks: int) -> Path:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = folder / "release.toml"
    toml.write_text(re.sub(r"(?m)^imatrix_chunks = .*$", f"imatrix_chunks = {chunks}", toml.read_text()))
    return folder


def _check(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", str(folder)])
    return result.exit_code, result.output


def test_bundled_demo_does_not_warn(tmp_path: Path, generated: Path) -> None:
    code, output = _check(DEMO)
    assert code == 0 and "imatrix_chunks" not in output, output
    folder = _pipeline(tmp_path, 2)
    shutil.copytree(generated, folder / "base")
    code, output = _check(folder)
    assert code == 0 and "imatrix_chunks" not in output, output


def test_short_text_warns_with_an_estimate_without_a_tokenizer(tmp_path: Path) -> None:
    code, output = _check(_pipeline(tmp_path, 4))
    assert code == 0, output
    size = (DEMO / "calibration.txt").stat().st_size
    assert (f"warning: demo/release.toml: gguf.imatrix_chunks: calibration.txt has ≈{size // 4} tokens "
            "(estimated at 4 bytes per token: no tokenizer of the base model on this machine), enough for 2 "
            "chunks") in output, output
    assert "not the 4 asked" in output and "or set imatrix_chunks = 2" in output


def test_short_text_warns_with_the_base_tokenizer(tmp_path: Path, generated: Path) -> None:
    folder = _pipeline(tmp_path, 4)
    shutil.copytree(generated, folder / "base")
    text = (folder / "calibration.txt").read_text()
    tokens = len(Tokenizer.from_file(str(generated / "tokenizer.json")).encode(text).ids)
    chunks, size = chunk_plan(tokens, 4)
    assert chunks == 2
    code, output = _check(folder)
    assert code == 0, output
    assert (f"calibration.txt has {tokens} tokens (counted with the base model's tokenizer), enough for 2 chunks "
            f"of {size} tokens, not the 4 asked") in output, output


def test_long_enough_text_does_not_warn(tmp_path: Path, generated: Path) -> None:
    folder = _pipeline(tmp_path, 4)
    shutil.copytree(generated, folder / "base")
    (folder / "calibration.txt").write_text(((DEMO / "calibration.txt").read_text() + "\n") * 40)
    code, output = _check(folder)
    assert code == 0 and "imatrix_chunks" not in output, output


def test_text_too_short_for_one_chunk_is_an_error(tmp_path: Path, generated: Path) -> None:
    folder = _pipeline(tmp_path, 2)
    shutil.copytree(generated, folder / "base")
    (folder / "calibration.txt").write_text("Hi.")
    code, output = _check(folder)
    assert code == 2, output
    assert "error: demo/release.toml: gguf.imatrix: calibration.txt has" in output
    assert "too short for one imatrix chunk" in output


def test_v4_placeholder_text_warns() -> None:
    code, output = _check(ROOT / "pipelines" / "v4")
    assert code == 0
    assert "v4/release.toml: gguf.imatrix_chunks:" in output and "not the 64 asked" in output


def test_build_prints_the_warning(tmp_path: Path) -> None:
    folder = _pipeline(tmp_path, 4)
    result = CliRunner().invoke(cli, ["build", str(folder), "--only", "bf16", "--dist", str(tmp_path / "dist")])
    assert result.exit_code == 0, result.output
    assert "warning: demo/release.toml: gguf.imatrix_chunks:" in result.output, result.output
