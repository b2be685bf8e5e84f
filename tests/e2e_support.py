"""What the end-to-end tests share: the release CLI run as a subprocess, the remote targets (stand-in
Hub and a real docker-registry behind a fault proxy, on 127.0.0.1), and readers of the remote state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from registry_proxy import fault_proxy

from release.local import registry_binary, start_registry
from release.localhub import LocalHub

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_e2e_demo_token_0123456789"
NAMESPACE = "demo"
HUB_REPOS = ("demo/tiny-gemma4-6e-it", "demo/tiny-gemma4-6e-it-GGUF", "demo/tiny-gemma4-6e-NVFP4A16")
TAGS = ("Q4_K_M", "Q8_0", "CD-Q3", "latest")

# Without docker-registry the end-to-end tests skip, except in CI, which installs it.
NEEDS_REGISTRY = dict(condition=registry_binary() is None and not os.environ.get("CI"),
                      reason="docker-registry not installed (CI installs it)")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def copy_dist(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, copy_function=os.link)
    (dest / "demo" / "hashes.json").unlink(missing_ok=True)  # keyed by absolute path
    return dest


def env() -> dict[str, str]:
    env = dict(os.environ, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    env.pop("HF_ENDPOINT", None)
    return env


def release(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=env(),
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"release {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


class Targets:
    def __init__(self, root: Path, *, hub_state: Path | None = None) -> None:
        if hub_state is not None:  # start from another Hub's state (same repos, same commit shas)
            shutil.copytree(hub_state, root / "hub")
        self.hub = LocalHub(root / "hub", tokens={TOKEN: [NAMESPACE]}, chunk_size=1 << 20,
                            multipart_threshold=2 << 20)
        self.hub_url = self.hub.start()
        self.registry = start_registry(root / "registry")
        self._proxy = fault_proxy(self.registry.url)
        self.registry_url, self.proxy = self._proxy.__enter__()

    def args(self) -> list[str]:
        return ["--hub-endpoint", self.hub_url, "--ollama-registry", self.registry_url]

    def close(self) -> None:
        self._proxy.__exit__(None, None, None)
        self.registry.stop()
        self.hub.stop()


def publish(pipeline: Path, dist: Path, targets: Targets, *extra: str) -> dict:
    proc = release("publish", str(pipeline), "--dist", str(dist), *targets.args(), "--json", *extra)
    assert TOKEN not in proc.stdout + proc.stderr, "the token leaked into the output"
    return json.loads(proc.stdout)


def remote_state(targets: Targets) -> dict[str, dict[str, str]]:
    """Every repo's files (path → sha256 or git blob id) and every tag's manifest digest."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=targets.hub_url, token=TOKEN)
    state: dict[str, dict[str, str]] = {}
    for repo in HUB_REPOS:
        files = {}
        for item in api.list_repo_tree(repo, recursive=True):
            if getattr(item, "lfs", None) is not None:
                files[item.path] = item.lfs.sha256
            elif hasattr(item, "blob_id"):
                files[item.path] = item.blob_id
        state[repo] = files
    from release.ollama.registry import RegistryClient

    client = RegistryClient(targets.registry_url)
    try:
        state["ollama"] = {}
        for tag in TAGS:
            got = client.get_manifest("demo/tiny-gemma4-6e", tag)
            assert got is not None, tag
            state["ollama"][tag] = "sha256:" + hashlib.sha256(got[0]).hexdigest()
    finally:
        client.close()
    return state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


