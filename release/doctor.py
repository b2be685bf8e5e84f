"""`release doctor`: what the external tools look like on this machine, and installing them."""

from __future__ import annotations

import importlib.metadata
import shutil

Row = tuple[str, bool, str]

PINNED = {"torch": "2.13.0", "transformers": "5.23.0", "huggingface_hub": "2.4.0", "safetensors": "0.8.0"}


def _packages() -> list[Row]:
    rows: list[Row] = []
    for name, want in PINNED.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, False, f"not installed (want {want})"))
            continue
        rows.append((name, have.split("+")[0] == want, have))
    return rows


def _binaries() -> list[Row]:
    rows: list[Row] = []
    for binary, why in (("docker-registry", "local OCI registry for Ollama tags"),
                        ("chromium", "preview test"), ("ollama", "optional: --via-ollama-cli")):
        path = shutil.which(binary)
        rows.append((binary, bool(path) or binary == "ollama", path or f"missing ({why})"))
    return rows


def run_doctor(*, install: bool = False) -> list[Row]:
    rows = _packages()
    try:
        from . import toolchain  # llama.cpp converter + quantizer (GGUF builder)
    except ImportError:
        rows.append(("llama.cpp", False, "toolchain support not available in this version"))
    else:
        if install:
            toolchain.install()
        rows += [(c, ok, d) for c, ok, d in toolchain.doctor()]
    rows += _binaries()
    return rows
