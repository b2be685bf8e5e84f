"""Fixtures for tests against the stand-in Hub: a running LocalHub and a small but real release folder.

Import the fixtures into a test module: `from hubfixtures import local_hub, hub_env, fake_release  # noqa: F401`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import disable_progress_bars
from safetensors.numpy import save_file

from release.localhub import LocalHub
from release.manifest import Artifact, Destination, FileEntry
from release.publish.retry import Backoff

TOKEN = "hf_localhubTESTtoken_7c41e9a0d2"  # distinctive, so a leak is easy to grep for
NAMESPACE = "moe-test"
BF16_REPO = f"{NAMESPACE}/Tiny-MoE-98e"
GGUF_REPO = f"{NAMESPACE}/Tiny-MoE-98e-GGUF"
FAST = Backoff(attempts=5, base=0.05, max_wait=0.2)  # our own retries; the client's own still wait ~1 s

LFS_BASIC_SIZE = 2 << 20  # LFS through .gitattributes (*.gguf), single PUT
LFS_MULTI_SIZE = 11 << 20  # > 10 MB: LFS by size; > multipart threshold: 3 parts of 4 MiB
HUB_OPTIONS = {"multipart_threshold": 8 << 20, "chunk_size": 4 << 20}


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Client settings for the stand-in: LFS not Xet, no token or endpoint from the environment."""
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    disable_progress_bars()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


@pytest.fixture
def local_hub(tmp_path: Path, hub_env: None) -> Iterator[LocalHub]:
    hub = LocalHub(tmp_path / "hub", {TOKEN: [NAMESPACE]}, **HUB_OPTIONS)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@dataclass
class FakeRelease:
    dir: Path
    artifacts: list[Artifact]

    def path(self, artifact_id: str, file: str) -> Path:
        a = next(a for a in self.artifacts if a.id == artifact_id)
        return self.dir / a.root / file

    def fresh_artifacts(self) -> list[Artifact]:
        """The artifacts as a later run's builders hand them over: no remote diff, hashes left to plan."""
        out = [Artifact.from_json(json.loads(json.dumps(a.to_json()))) for a in self.artifacts]
        for a in out:
            a.remote, a.status = None, "built"
            for f in a.files:
                f.size = f.sha256 = None
        return out


def _random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def build_release(root: Path, *, seed: int = 0) -> FakeRelease:
    """BF16 repo: 2 safetensors shards, config, tokenizer, card. GGUF repo: a 2 MB and an 11 MB file, card."""
    rng = np.random.default_rng(seed)
    bf16 = root / "bf16"
    bf16.mkdir(parents=True)
    save_file({"model.embed_tokens.weight": rng.standard_normal((64, 32)).astype(np.float16)},
              str(bf16 / "model-00001-of-00002.safetensors"))
    save_file({"model.layers.0.mlp.experts.gate_up_proj": rng.standard_normal((6, 32, 16)).astype(np.float16)},
              str(bf16 / "model-00002-of-00002.safetensors"))
    (bf16 / "config.json").write_text(json.dumps({"model_type": "gemma4", "num_experts": 6}, indent=2))
    (bf16 / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    gguf = root / "gguf"
    gguf.mkdir()
    (gguf / "Tiny-MoE-98e-Q4_K_M.gguf").write_bytes(b"GGUF" + _random_bytes(LFS_BASIC_SIZE - 4, seed + 1))
    (gguf / "Tiny-MoE-98e-Q8_0.gguf").write_bytes(b"GGUF" + _random_bytes(LFS_MULTI_SIZE - 4, seed + 2))
    for name, repo in (("bf16", BF16_REPO), ("gguf", GGUF_REPO)):
        card = root / "cards" / name
        card.mkdir(parents=True)
        (card / "README.md").write_text(f"---\nlicense: apache-2.0\ntags: [moe]\n---\n# {repo}\n")

    def hub(repo: str) -> Destination:
        return Destination(kind="hub", repo=repo)

    artifacts = [
        Artifact(id="bf16", kind="bf16", root="bf16", destination=hub(BF16_REPO), files=[
            FileEntry(p.name) for p in sorted(bf16.iterdir())]),
        Artifact(id="gguf:Q4_K_M", kind="gguf", root="gguf", destination=hub(GGUF_REPO),
                 files=[FileEntry("Tiny-MoE-98e-Q4_K_M.gguf")]),
        Artifact(id="gguf:Q8_0", kind="gguf", root="gguf", destination=hub(GGUF_REPO),
                 files=[FileEntry("Tiny-MoE-98e-Q8_0.gguf")]),
        Artifact(id="card:bf16", kind="card", root="cards/bf16", destination=hub(BF16_REPO),
                 files=[FileEntry("README.md")]),
        Artifact(id="card:gguf", kind="card", root="cards/gguf", destination=hub(GGUF_REPO),
                 files=[FileEntry("README.md")]),
    ]
    return FakeRelease(root, artifacts)


@pytest.fixture
def fake_release(tmp_path: Path) -> FakeRelease:
    return build_release(tmp_path / "dist" / "tiny")


def touch_content(path: Path, data: bytes) -> None:
    """Rewrite a file and make sure its mtime moves (the hash cache keys on it)."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
