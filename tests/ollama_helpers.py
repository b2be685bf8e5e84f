"""Small real GGUF files and an [ollama] section for the Ollama tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def make_gguf(path: Path, *, file_type: int = 15, arch: str = "gemma4", n_params: int = 40,
              context_length: int = 8192, seed: int = 0, extra_bytes: int = 0) -> Path:
    """A tiny, valid GGUF: `n_params` F32 elements spread over two tensors (+ optional padding tensor)."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_file_type(file_type)
    w.add_context_length(context_length)
    w.add_block_count(2)
    w.add_embedding_length(8)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(4)
    w.add_value_length(4)
    rng = np.random.default_rng(seed)
    a = n_params // 2
    w.add_tensor("token_embd.weight", rng.standard_normal(a).astype(np.float32))
    w.add_tensor("output_norm.weight", rng.standard_normal(n_params - a).astype(np.float32))
    if extra_bytes:
        # Bulk so the model blob spans several upload chunks; counted in the parameter total.
        w.add_tensor("blk.0.pad.weight", rng.integers(0, 255, extra_bytes, dtype=np.uint8).view(np.int8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@dataclass
class Section:
    """Duck-typed stand-in for release.spec.definition.OllamaSection (same field names)."""

    model: str = "mannix/gemma4-98e-v4"
    registry: str = "https://registry.ollama.ai"
    insecure: bool = False
    tags: dict[str, str] = field(default_factory=lambda: {"Q4_K_M": "Q4_K_M", "Q6_K": "Q6_K",
                                                          "CD-Q3_K_M": "CD-Q3"})
    latest: str = "Q4_K_M"
    template: str = ""
    system: str = ""
    license: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)
    vram_gb: dict[str, float] = field(default_factory=dict)


V4_PARAMS = {"temperature": 0.6, "top_p": 0.95, "repeat_penalty": 1.15, "repeat_last_n": 256,
             "num_ctx": 256000, "stop": ["<turn|>", "<|tool_response>"]}


def make_release(tmp: Path, *, extra_bytes: int = 0, **section: Any) -> tuple[Section, dict[str, Path], Path]:
    """Three tiers of GGUF (ftype 15, 18, 12), a template and license file, and a section."""
    pipeline = tmp / "pipeline"
    pipeline.mkdir(parents=True, exist_ok=True)
    (pipeline / "template.gotmpl").write_text("{{- if .System }}<|turn>system\n{{ .System }}<turn|>\n"
                                              "{{ end }}<|turn>user\n{{ .Prompt }}<turn|>\n<|turn>model\n")
    (pipeline / "LICENSE").write_text("Apache License 2.0 — test copy & <tags>\n")
    gdir = tmp / "dist" / "demo" / "gguf"
    ggufs = {
        "Q4_K_M": make_gguf(gdir / "demo-Q4_K_M.gguf", file_type=15, seed=1, extra_bytes=extra_bytes),
        "Q6_K": make_gguf(gdir / "demo-Q6_K.gguf", file_type=18, seed=2),
        "CD-Q3": make_gguf(gdir / "demo-CD-Q3.gguf", file_type=12, seed=3),
    }
    defaults: dict[str, Any] = {"template": "template.gotmpl", "license": "LICENSE", "parameters": dict(V4_PARAMS)}
    defaults.update(section)
    return Section(**defaults), ggufs, pipeline
