"""Bytes moved per job when the demo is released across machines, against the previous design, in the
same run; the demo's fan-out run concurrently against the strict stand-in Hub beside the same jobs one
after another (wall time, the Hub's 409/429 answers met); and the v4 job table (disk, RAM, hours)
against the fan-out goal (≤ 70 GB, ≤ 16 GB).

    python benchmarks/distributed.py                      # all of it
    python benchmarks/distributed.py --v4-only            # the table only (no build)
    python benchmarks/distributed.py --commit-seconds 2   # each commit holds its repo 2 s on the Hub
    python benchmarks/distributed.py --commit-quota 2/60  # 2 commits per repo per minute (default 128/3600)

The demo's base is put on a stand-in Hub at a pinned commit; every job of `release plan demo --matrix`
runs as a process of its own with its own --dist and Hugging Face cache, sharing only the stand-in Hub
and a docker-registry on 127.0.0.1. Downloads are counted from the Hub's request log (every LFS object
served, at its size) and uploads from the bytes it received, plus the Ollama model blobs a job pushed.

The stand-in is as strict as huggingface.co: one commit at a time per repository (409) and a commit
quota per repository (429). A commit there is applied in milliseconds; on the Hub it takes seconds
(an assumption, not a measurement), so each commit holds its repository `--commit-seconds` (default 1)
in both runs. Sequential: each job alone, in plan order. Concurrent: the stages in order, every job of
a stage at once (as the workflow's matrix runs them), each on a fresh Hub holding only the base.

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
import time
from collections import Counter
from dataclasses import dataclass, field
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


@dataclass
class Demo:
    """The demo pointed at a stand-in Hub holding its base (the Hub's state kept in `hub_state`)."""

    tmp: Path
    folder: Path
    hub_state: Path
    base_bytes: int
    jobs: list[dict]
    env: dict[str, str]


@dataclass
class Run:
    wall: float = 0.0
    stage_walls: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, int, int]] = field(default_factory=list)  # job, downloaded, uploaded
    answers: Counter[int] = field(default_factory=Counter)  # 409 and 429 answers met
    waited: float = 0.0  # seconds the jobs said they waited on them


def _prepare_demo(tmp: Path) -> Demo:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import disable_progress_bars

    from release.demo import generate_tiny_gemma4
    from release.localhub import LocalHub

    constants.HF_HUB_DISABLE_XET = True
    disable_progress_bars()
    hub = LocalHub(tmp / "hub-base", tokens={TOKEN: ["demo"]})
    url = hub.start()
    try:
        generate_tiny_gemma4(tmp / "base")
        api = HfApi(endpoint=url, token=TOKEN)
        api.create_repo("demo/tiny-gemma4-8e", exist_ok=True)
        rev = api.upload_folder(repo_id="demo/tiny-gemma4-8e", folder_path=str(tmp / "base")).oid
        base_bytes = sum(f.size for f in api.list_repo_tree("demo/tiny-gemma4-8e") if getattr(f, "lfs", None))
    finally:
        hub.stop()
    folder = tmp / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    toml = re.sub(r'revision = "0+"', f'revision = "{rev}"', toml).replace(
        'path = "base"\ngenerator = "tiny-gemma4"\n', "")
    (folder / "release.toml").write_text(toml)
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}
    plan = json.loads(subprocess.run([sys.executable, "-m", "release", "plan", str(folder), "--matrix", "--json"],
                                     check=True, capture_output=True, text=True, env=env).stdout)
    return Demo(tmp, folder, tmp / "hub-base", base_bytes, plan["jobs"], env)


def _job_cmd(demo: Demo, job: dict, machine: Path, hub_url: str, registry_url: str) -> list[str]:
    args = ["--finish"] if job["stage"] == "finish" else ["--job", job["id"]]
    return [sys.executable, "-m", "release", "publish", str(demo.folder), "--dist", str(machine), "--hub-endpoint",
            hub_url, "--ollama-registry", registry_url, "--json", "--no-git-tag", *args]


def _release(demo: Demo, name: str, commit_seconds: float, quota: tuple[int, float], *, concurrent: bool) -> Run:
    """Every job of the demo's plan against a fresh strict Hub holding the base."""
    from release.local import start_registry
    from release.localhub import LocalHub

    root = demo.tmp / name
    shutil.copytree(demo.hub_state, root / "hub")
    hub = LocalHub(root / "hub", tokens={TOKEN: ["demo"]}, commit_seconds=commit_seconds, commit_quota=quota)
    url = hub.start()
    registry = start_registry(root / "registry")
    run = Run()
    start = time.monotonic()
    try:
        for stage in dict.fromkeys(j["stage"] for j in demo.jobs):
            jobs = [j for j in demo.jobs if j["stage"] == stage]
            groups = [jobs] if concurrent else [[j] for j in jobs]
            for group in groups:
                hub.log.clear()
                began = time.monotonic()
                outputs = []
                for j in group:
                    machine = root / "machines" / j["id"]
                    machine.mkdir(parents=True, exist_ok=True)
                    # Files, not pipes: a job must never stall on a full pipe while another is read.
                    out, err = open(machine / "stdout", "w+"), open(machine / "stderr", "w+")  # noqa: SIM115
                    outputs.append((j, out, err, subprocess.Popen(
                        _job_cmd(demo, j, machine, url, registry.url), stdout=out, stderr=err,
                        env={**demo.env, "HF_HOME": str(machine / "hf-home")})))
                texts = {}
                for j, out, err, proc in outputs:
                    proc.wait()
                    out.seek(0)
                    err.seek(0)
                    texts[j["id"]] = out.read(), err.read()
                    out.close()
                    err.close()
                    if proc.returncode != 0:
                        raise SystemExit(f"{name}: job {j['id']} failed:\n{texts[j['id']][1][-3000:]}")
                run.stage_walls[stage] = run.stage_walls.get(stage, 0.0) + time.monotonic() - began
                run.answers.update(r.status for r in hub.log.records() if r.status in (409, 429))
                run.waited += sum(float(w) for _o, e in texts.values()
                                  for w in re.findall(r"; waiting ([\d.]+)s \(", e))
                if not concurrent:
                    summary = json.loads(texts[group[0]["id"]][0])
                    down = sum(hub.store.lfs_path(r.path.rsplit("/", 1)[-1]).stat().st_size
                               for r in hub.log.records(route="lfs_download", method="GET"))
                    up = sum(r.received for r in hub.log.records() if r.route in ("lfs_upload", "lfs_part", "commit"))
                    up += summary.get("ollama_bytes", 0) + sum(t.get("sent_bytes", 0) for t in summary.get("tags", []))
                    run.rows.append((group[0]["id"], down, up))
        run.wall = time.monotonic() - start
    finally:
        registry.stop()
        hub.stop()
    return run


def demo_bytes(commit_seconds: float, quota: tuple[int, float]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    try:
        demo = _prepare_demo(tmp)
        sequential = _release(demo, "sequential", commit_seconds, quota, concurrent=False)
        concurrent = _release(demo, "concurrent", commit_seconds, quota, concurrent=True)
        built: dict[str, int] = {}
        for m in (tmp / "sequential" / "machines").iterdir():
            st = m / "demo" / "state.json"
            if st.is_file():
                for aid, rec in json.loads(st.read_text())["artifacts"].items():
                    built[aid] = sum(f["size"] or 0 for f in rec["artifact"]["files"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    heavy = [a for a in built if a.split(":")[0] in ("bf16", "gguf", "nvfp4") and a != "gguf:ollama-files"]
    total = sum(built[a] for a in heavy)
    old_jobs = [(a, demo.base_bytes, built[a]) for a in heavy]
    old_publish = ("publish", total, total)
    rows = sequential.rows

    print(f"demo: base {mb(demo.base_bytes)}, {len(heavy)} heavy artifacts ({mb(total)})")
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

    fanout = sum(1 for j in demo.jobs if j["stage"] == "build")
    print(f"\nstrict stand-in Hub, each commit holding its repo {commit_seconds:g} s, {quota[0]} commits per repo per "
          f"{quota[1]:g} s; {fanout} fan-out jobs")
    print(f"{'':12s} {'wall':>9s} " + " ".join(f"{s:>9s}" for s in sequential.stage_walls)
          + f" {'409s':>5s} {'429s':>5s} {'waited':>8s}")
    for name, run in (("sequential", sequential), ("concurrent", concurrent)):
        print(f"{name:12s} {run.wall:8.1f}s " + " ".join(f"{run.stage_walls[s]:8.1f}s" for s in sequential.stage_walls)
              + f" {run.answers[409]:5d} {run.answers[429]:5d} {run.waited:7.1f}s")
    print(f"ratio concurrent / sequential: wall {concurrent.wall / sequential.wall:.2f}, fan-out stage "
          f"{concurrent.stage_walls['build'] / sequential.stage_walls['build']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--v4-only", action="store_true", help="print the v4 job table only")
    ap.add_argument("--commit-seconds", type=float, default=1.0,
                    help="how long a commit holds its repository on the stand-in (server-side work; default 1)")
    from release.localhub.limits import DEFAULT_COMMIT_QUOTA

    default_quota = f"{DEFAULT_COMMIT_QUOTA[0]}/{DEFAULT_COMMIT_QUOTA[1]:g}"
    ap.add_argument("--commit-quota", default=default_quota, metavar="COUNT/SECONDS",
                    help=f"the stand-in's commit quota per repository (default {default_quota}, the Hub's)")
    args = ap.parse_args()
    count, _, window = args.commit_quota.partition("/")
    if not args.v4_only:
        demo_bytes(args.commit_seconds, (int(count), float(window)))
    v4_table()


if __name__ == "__main__":
    main()
