"""`release canary` against the stand-in Hub and a real docker-registry: the demo released across machines
into scratch repos that are private from creation to deletion (watched on the server side while it runs),
verified, every repo and the collection deleted after, the Ollama model left under its fixed scratch
name; and a canary with a bad token stops in seconds with nothing made."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import NAMESPACE, NEEDS_REGISTRY, TOKEN, Targets, env

pytestmark = pytest.mark.skipif(**NEEDS_REGISTRY)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def _canary(remote: Targets, dist: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release", "canary", *remote.args(), "--namespace", NAMESPACE,
                           "--dist", str(dist), "--json"], capture_output=True, text=True,
                          env={**env(), "HF_TOKEN": token}, timeout=1800)


def _watch(remote: Targets, seen: dict[str, set[bool]], stop: threading.Event) -> None:
    """Every canary repo the Hub holds, and each visibility it was ever seen with."""
    while not stop.is_set():
        for key in remote.hub.store.repos("model"):
            try:
                meta = remote.hub.store.repo(key)
            except (OSError, ValueError):
                continue  # deleted between listing and reading
            if meta is not None and key.name.startswith("release-canary-"):
                seen.setdefault(key.id, set()).add(meta["private"])
        stop.wait(0.05)


def test_the_canary_leaves_nothing_public_and_nothing_behind(remote: Targets, tmp_path: Path) -> None:
    from release.ollama.registry import RegistryClient

    seen: dict[str, set[bool]] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(remote, seen, stop), daemon=True)
    watcher.start()
    try:
        proc = _canary(remote, tmp_path / "dist", TOKEN)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert TOKEN not in proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    run = result["run"]
    made = {f"{NAMESPACE}/release-canary-{run}{suffix}" for suffix in ("-base", "", "-GGUF", "-NVFP4A16")}
    assert set(seen) == made, seen
    assert all(flags == {True} for flags in seen.values()), f"a canary repo was public at some point: {seen}"
    assert not [k for k in remote.hub.store.repos("model") if k.name.startswith("release-canary-")], "left behind"
    assert not [c for c in remote.hub.store.collections() if run in c["title"]], "its collection was left behind"
    assert all(r["deleted"] for r in result["repos"].values()) and len(result["repos"]) == 4
    assert all(r["private_while_staged"] for r in result["repos"].values() if "private_while_staged" in r)
    assert {"prepare", "nvfp4", "finish"} <= set(result["jobs"]) and result["verified_files"] >= 10
    assert result["git_tag"] == "release/canary"
    assert not (tmp_path / "dist" / f"canary-{run}").exists(), "the workspace was left behind"

    client = RegistryClient(remote.registry_url)
    try:
        for tag, digest in result["ollama"].items():
            got = client.get_manifest(f"{NAMESPACE}/release-canary", tag)
            assert got is not None and digest.startswith("sha256:"), tag
    finally:
        client.close()
    assert {"latest", "Q4_K_M"} <= set(result["ollama"])


def test_a_canary_with_a_bad_token_stops_in_seconds(remote: Targets, tmp_path: Path) -> None:
    start = time.monotonic()
    proc = _canary(remote, tmp_path / "dist", "hf_not_a_token_0123456789")
    assert proc.returncode == 1 and time.monotonic() - start < 15, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HF_TOKEN is not a valid token" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "dist").exists() and not remote.hub.log.writes()
