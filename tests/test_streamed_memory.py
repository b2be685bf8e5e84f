"""The two passes that used to hold a whole model run in bounded memory: on a generated Gemma 4 MoE of 2.7 GB
(16 layers), the importance matrix and the NVFP4 measurement each peak at a fraction of the model — two
layers, the activations and the process — and within 10 % of what the job plan counts for them
(release.quality.estimate). Each runs in a process of its own (release.peak) so its peak is its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_helpers import FEW_GB, generate_gemma4

from release.peak import measure
from release.quality.estimate import checkpoint_pass

ROOT = Path(__file__).resolve().parents[1]
CHUNKS, WINDOW, MAX_TOKENS = 4, 512, 1024


@pytest.fixture(scope="module")
def few_gb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from release.gguf.convert import convert
    from release.nvfp4 import quantize_checkpoint
    from release.toolchain import ensure_toolchain

    root = tmp_path_factory.mktemp("few-gb")
    base = generate_gemma4(root / "bf16", FEW_GB, seed=9, max_shard_size="400MB")
    convert(ensure_toolchain(), base, root / "F16.gguf", outtype="F16", model_name="few-gb")
    quantize_checkpoint(base, root / "nvfp4")
    return {"bf16": base, "f16": root / "F16.gguf", "nvfp4": root / "nvfp4", "root": root}


def _model_bytes(checkpoint: Path) -> int:
    return sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))


@pytest.mark.slow
def test_imatrix_peak_is_two_layers_not_the_model(few_gb: dict[str, Path]) -> None:
    model = _model_bytes(few_gb["bf16"])
    assert 2.0e9 < model < 3.5e9
    got = measure("from pathlib import Path\nimport torch, transformers\n"
                  "from release.gguf.imatrix_stream import stream_imatrix\n",
                  f"r = stream_imatrix(Path({str(few_gb['bf16'])!r}), Path({str(few_gb['f16'])!r}), "
                  f"Path({str(ROOT / 'README.md')!r}), Path({str(few_gb['root'] / 'imatrix.gguf')!r}), "
                  f"chunks={CHUNKS})\nresult = [r.chunks, r.chunk_size, r.entries]")
    assert got["result"][:2] == [CHUNKS, WINDOW] and got["result"][2] > 16 * 6
    planned = checkpoint_pass(few_gb["bf16"], tokens=CHUNKS * WINDOW, compute_bytes=4)
    assert planned.layer * 2 * 16 > 0.9 * model  # 16 layers make the model; two are an eighth of it
    assert got["peak_rss"] < model / 2, got
    assert got["peak_rss"] == pytest.approx(planned.peak_bytes(), rel=0.10), got


@pytest.mark.slow
def test_nvfp4_measurement_peak_is_two_layers_not_the_model(few_gb: dict[str, Path]) -> None:
    model = _model_bytes(few_gb["bf16"])
    got = measure("from pathlib import Path\nimport torch, transformers\n"
                  "from release.quality.nvfp4 import measure_nvfp4\nfrom release.spec.load import load_release\n"
                  f"q = load_release('demo').quality.model_copy(update={{'max_tokens': {MAX_TOKENS}}})\n"
                  f"text = Path({str(ROOT / 'pipelines' / 'demo' / 'heldout.txt')!r}).read_text()\n",
                  f"f = measure_nvfp4(Path({str(few_gb['bf16'])!r}), Path({str(few_gb['nvfp4'])!r}), text, q, "
                  f"shown='heldout.txt', work=Path({str(few_gb['root'] / 'work')!r}))\n"
                  "result = [f.tokens, f.kld_mean]")
    tokens, kld = got["result"]
    assert tokens == (MAX_TOKENS // WINDOW) * (WINDOW - 1 - WINDOW // 2) and kld > 0
    planned = checkpoint_pass(few_gb["bf16"], tokens=MAX_TOKENS, compute_bytes=2, head_context=WINDOW)
    assert got["peak_rss"] < model / 2, got
    assert got["peak_rss"] == pytest.approx(planned.peak_bytes(), rel=0.10), got
