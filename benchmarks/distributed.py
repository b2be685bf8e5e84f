"""Bytes moved per job when the demo is released across machines, against the previous design, in the
same run; and the v4 job table (disk, RAM, hours) against the fan-out goal (≤ 70 GB, ≤ 16 GB).

    python benchmarks/distributed.py            # both
    python benchmarks/distributed.py --v4-only  # the table only (no build)

The demo's base is put on a stand-in Hub at a pinned commit; every job of `release plan demo --matrix`
runs as a process of its own with its own --dist and Hugging Face cache, sharing only the stand-in Hub
and a docker-registry on 127.0.0.1. Downloads are counted from the Hub's request log (every LFS object
served, at its size) and uploads from the bytes it received, plus the Ollama model blobs a job pushed.

The previous design (one matrix job per heavy artifact, each downloading the base and pruning it, its
output uploaded as a GitHub artifact; one publish job downloading every artifact and pushing it all) is
costed from the sizes this run built: base per job, the artifact's files up, everything down and up
again in the publish job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "hf_bench_distributed_0123456789"
GOAL_DISK_GB, GOAL_RAM_GB = 70.0, 16.0


def mb(n: float) -> str:
    return f"{n / 1e6:9.2f} MB"


def v4_table() -> None:
    from release.distributed.jobs import plan_jobs
    from release.pipeline import Context, Options
    from release.spec.load import load_release

    plan = plan_jobs(Context(load_release("v4"), Options(quiet=True)))
    print(f"\nv4: {len(plan.jobs)} jobs (planned sizes; hours from the throughputs in release/distributed/jobs.py)")
    print(f"{'job':34s} {'stage':8s} {'fetches':>10s} {'disk':>9s} {'RAM':>8s} {'hours':>6s}  runner")
    worst_disk = worst_ram = 0.0
    base_reads = 0
    for j in plan.jobs:
        fetched = sum(i.size or 0 for i in j.inputs)
        base_reads += sum(1 for i in j.inputs if i.id == "base")
        print(f"{j.id:34s} {j.stage:8s} {fetched / 1e9:8.1f} GB {j.disk_gb:6.1f} GB {j.ram_gb:5.1f} GB "
              f"{j.hours:6.2f}  {j.runner}")
        if j.stage == "build":
            worst_disk, worst_ram = max(worst_disk, j.disk_gb), max(worst_ram, j.ram_gb)
    print(f"fan-out worst case: {worst_disk:.1f} GB disk ({worst_disk / GOAL_DISK_GB:.2f} of the {GOAL_DISK_GB:.0f} GB "
          f"goal), {worst_ram:.1f} GB RAM ({worst_ram / GOAL_RAM_GB:.2f} of {GOAL_RAM_GB:.0f} GB); "
          f"the base is read by {base_reads} job (prepare)")


def demo_bytes() -> None:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import disable_progress_bars

    from release.demo import generate_tiny_gemma4
    from release.local import start_registry
    from release.localhub import LocalHub

    constants.HF_HUB_DISABLE_XET = True
    disable_progress_bars()
    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    hub = LocalHub(tmp / "hub", tokens={TOKEN: ["demo"]})
    url = hub.start()
    registry = start_registry(tmp / "registry")
    try:
        generate_tiny_gemma4(tmp / "base")
        api = HfApi(endpoint=url, token=TOKEN)
        api.create_repo("demo/tiny-gemma4-8e", exist_ok=True)
        rev = api.upload_folder(repo_id="demo/tiny-gemma4-8e", folder_path=str(tmp / "base")).oid
        folder = tmp / "pipelines" / "demo"
        shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
        toml = (folder / "release.toml").read_text()
        toml = re.sub(r'revision = "0+"', f'revision = "{rev}"', toml).replace(
            'path = "base"\ngenerator = "tiny-gemma4"\n', "")
        (folder / "release.toml").write_text(toml)
        base_bytes = sum(f.size for f in api.list_repo_tree("demo/tiny-gemma4-8e") if getattr(f, "lfs", None))
        env = {**os.environ, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}
        plan = json.loads(subprocess.run([sys.executable, "-m", "release", "plan", str(folder), "--matrix", "--json"],
                                         check=True, capture_output=True, text=True, env=env).stdout)
        rows = []
        for job in plan["jobs"]:
            hub.log.clear()
            machine = tmp / "machines" / job["id"]
            args = ["--finish"] if job["stage"] == "finish" else ["--job", job["id"]]
            proc = subprocess.run(
                [sys.executable, "-m", "release", "publish", str(folder), "--dist", str(machine), "--hub-endpoint",
                 url, "--ollama-registry", registry.url, "--json", "--no-git-tag", *args],
                capture_output=True, text=True, env={**env, "HF_HOME": str(machine / "hf-home")})
            if proc.returncode != 0:
                raise SystemExit(f"job {job['id']} failed:\n{proc.stderr[-3000:]}")
            summary = json.loads(proc.stdout)
            down = sum(hub.store.lfs_path(r.path.rsplit("/", 1)[-1]).stat().st_size
                       for r in hub.log.records(route="lfs_download", method="GET"))
            up = sum(r.received for r in hub.log.records() if r.route in ("lfs_upload", "lfs_part", "commit"))
            up += summary.get("ollama_bytes", 0) + sum(t.get("sent_bytes", 0) for t in summary.get("tags", []))
            rows.append((job["id"], down, up))
        built: dict[str, int] = {}
        for m in (tmp / "machines").iterdir():
            st = m / "demo" / "state.json"
            if st.is_file():
                for aid, rec in json.loads(st.read_text())["artifacts"].items():
                    built[aid] = sum(f["size"] or 0 for f in rec["artifact"]["files"])
        heavy = [a for a in built if a.split(":")[0] in ("bf16", "gguf", "nvfp4") and a != "gguf:ollama-files"]
        total = sum(built[a] for a in heavy)
        old_jobs = [(a, base_bytes, built[a]) for a in heavy]
        old_publish = ("publish", total, total)
    finally:
        registry.stop()
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"demo: base {mb(base_bytes)}, {len(heavy)} heavy artifacts ({mb(total)})")
    print(f"\n{'this design: job':34s} {'downloads':>12s} {'uploads':>12s}")
    for jid, down, up in rows:
        print(f"{jid:34s} {mb(down)} {mb(up)}")
    new_down, new_up = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':34s} {mb(new_down)} {mb(new_up)}")
    print(f"\n{'previous design: job':34s} {'downloads':>12s} {'uploads':>12s}")
    for jid, down, up in [*old_jobs, old_publish]:
        print(f"{jid:34s} {mb(down)} {mb(up)}")
    old_down = sum(r[1] for r in old_jobs) + old_publish[1]
    old_up = sum(r[2] for r in old_jobs) + old_publish[2]
    print(f"{'total':34s} {mb(old_down)} {mb(old_up)}")
    print(f"\nratio this / previous: downloads {new_down / old_down:.2f}, uploads {new_up / old_up:.2f}; base read "
          f"by 1 job instead of {len(old_jobs)}; largest single download {mb(max(r[1] for r in rows))} instead "
          f"of {mb(old_publish[1])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--v4-only", action="store_true", help="print the v4 job table only")
    args = ap.parse_args()
    if not args.v4_only:
        demo_bytes()
    v4_table()


if __name__ == "__main__":
    main()
