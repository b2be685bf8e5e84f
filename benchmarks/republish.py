"""Planning an unchanged multi-GB release again: cold hash cache vs warm hash cache.

Builds a release of a few big files (default 4 x 544 MiB ≈ 2.3 GB), publishes it once to a stand-in
Hub on 127.0.0.1, then times `HubPublisher.plan` of the unchanged release:

  baseline  a fresh process with an empty hash cache: every file is hashed (what the client itself
            does before it can tell an LFS file is unchanged)
  warm      a fresh process whose hash cache was saved by the baseline run: sizes and mtimes only

and prints warm / baseline (goal: ≤ 5 %). Both read the same remote tree; the files are in the page
cache for both, so the ratio isolates hashing, not disk speed. A full re-publish with the warm cache
is also checked to send 0 bytes and make 0 commits. Temporary files are deleted at the end.

    python benchmarks/republish.py [--size-mib 544] [--files 4] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from huggingface_hub.utils import disable_progress_bars

from release.fsutil import HashCache
from release.localhub import LocalHub
from release.manifest import Artifact, Destination, FileEntry
from release.publish import HubPublisher

TOKEN = "bench-token-not-secret"
REPO = "bench/Big-MoE-GGUF"
BLOCK = 64 << 20


def build(root: Path, files: int, size: int) -> list[Artifact]:
    gguf = root / "gguf"
    gguf.mkdir(parents=True)
    block = os.urandom(BLOCK)
    artifacts = []
    for i in range(files):
        name = f"Big-MoE-Q{i}_K.gguf"
        with open(gguf / name, "wb") as fh:
            fh.write(i.to_bytes(8, "little"))  # distinct contents, distinct LFS objects
            left = size - 8
            while left > 0:
                n = min(left, BLOCK)
                fh.write(block[:n])
                left -= n
        artifacts.append(Artifact(id=f"gguf:Q{i}", kind="gguf", root="gguf", files=[FileEntry(name)],
                                  destination=Destination(kind="hub", repo=REPO)))
    (root / "card").mkdir()
    (root / "card" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Big MoE GGUF\n")
    artifacts.append(Artifact(id="card:gguf", kind="card", root="card", files=[FileEntry("README.md")],
                              destination=Destination(kind="hub", repo=REPO)))
    return artifacts


def fresh(artifacts: list[Artifact]) -> list[Artifact]:
    return [Artifact.from_json(a.to_json()) for a in artifacts]


def timed_plan(url: str, cache_file: Path, artifacts: list[Artifact], release: Path) -> tuple[float, int]:
    pub = HubPublisher(url, TOKEN, hash_cache=HashCache(cache_file))
    t = time.perf_counter()
    plan = pub.plan(fresh(artifacts), release)
    elapsed = time.perf_counter() - t
    assert not plan.changed, plan.summary()
    return elapsed, plan.bytes_to_send


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=544)
    ap.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    disable_progress_bars()
    tmp = Path(tempfile.mkdtemp(prefix="republish-bench-", dir=args.dir))
    hub = LocalHub(tmp / "hub", {TOKEN: ["bench"]})
    try:
        url = hub.start()
        release = tmp / "dist" / "big"
        artifacts = build(release, args.files, args.size_mib << 20)
        total = sum((release / a.root / f.path).stat().st_size for a in artifacts for f in a.files)
        print(f"release: {args.files} files, {total / 1e9:.2f} GB; stand-in Hub at {url}")

        t = time.perf_counter()
        setup = HubPublisher(url, TOKEN, hash_cache=HashCache(tmp / "setup-cache.json"))
        result = setup.apply(setup.plan(fresh(artifacts), release))
        print(f"first publish: {result.bytes_sent / 1e9:.2f} GB, {result.commits} commit(s), "
              f"{time.perf_counter() - t:.1f} s")

        cold, warm = [], []
        for i in range(args.repeat):
            cache = tmp / f"cache-{i}.json"
            cold.append(timed_plan(url, cache, artifacts, release)[0])  # empty cache: hashes everything
            warm.append(timed_plan(url, cache, artifacts, release)[0])  # reloaded from disk, like a rerun
        base, fast = statistics.median(cold), statistics.median(warm)
        print(f"plan, cold hash cache (baseline): median {base:.3f} s  {[round(x, 3) for x in cold]}"
              f"  ({total / base / 1e9:.2f} GB/s hashed)")
        print(f"plan, warm hash cache:            median {fast:.3f} s  {[round(x, 3) for x in warm]}")
        ratio = fast / base
        print(f"ratio warm/cold = {ratio:.4f} ({ratio * 100:.2f} %; goal <= 5 %) -> "
              f"{'OK' if ratio <= 0.05 else 'MISSED'}")

        hub.log.clear()
        again = HubPublisher(url, TOKEN, hash_cache=HashCache(tmp / "cache-0.json"))
        t = time.perf_counter()
        plan = again.plan(fresh(artifacts), release)
        res = again.apply(plan)
        tags = again.tag([REPO], "bench")  # one write: the tag did not exist yet
        print(f"full re-publish (warm): {time.perf_counter() - t:.3f} s, {res.commits} commits, "
              f"{hub.log.upload_bytes()} bytes uploaded, writes: {[r.route for r in hub.log.writes()]} "
              f"(tag {tags[0].action})")
        return 0 if ratio <= 0.05 and res.commits == 0 and hub.log.upload_bytes() == 0 else 1
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
