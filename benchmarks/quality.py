"""Quality measurement and the importance matrix: what they cost, and what they are worth, each against a
baseline measured in the same run.

1. (default) Each GGUF tier's measurement time against its quantization time. For every tier of the demo
   release (or --tiers): llama.cpp's quantizer making it from the F16 (one tier at a time, all cores, as
   the tier's job does) against `release.quality.gguf.measure_tier` measuring it (every held-out window
   through libllama, KL divergence against the stored reference). The reference is made once per release
   and shared; it is shown apart and amortised over the tiers in the last line. Goal: measuring a tier
   costs less than quantizing it.

2. --imatrix: the importance matrix computed layer by layer from the BF16 checkpoint
   (release/gguf/imatrix_stream.py) against llama.cpp's own (release/gguf/imatrix.compute_imatrix, which
   llama-imatrix writes bit for bit), on the same calibration text: both times, and the KL divergence of
   every tier quantized with each. Goal: every tier within 3 % of llama.cpp's.

3. --memory: the peak resident memory and time of the passes a `prepare` and an `nvfp4` job run — the
   streamed importance matrix, the streamed NVFP4 measurement, the libllama quality reference — each in a
   process of its own (release.peak), beside the model's size and beside what the job plan counts for it
   (release.quality.estimate), on: a full-width layer set (two Gemma 4 26B-A4B decoder layers as v4 keeps
   them: hidden 2816, 98 experts × 704, dense MLP 2112, 16 heads; ≈2.6 GB), a model at the 26B's
   vocabulary (262 144 × 2816 embeddings, two small layers; ≈1.7 GB) and a 16-layer model of ≈2.7 GB.
   Then v4 as planned (`release plan v4 --matrix`), and its importance matrix's time extrapolated from the
   full-width layers (30 layers, 64 chunks of 512 tokens): an extrapolation, not a measurement. Goal: peaks
   a fraction of the model, the plan within 10 % of every measured peak.

4. --jobs: the real `prepare` and `nvfp4` jobs (`release publish NAME --job …`, each a process with its own
   --dist and Hugging Face cache, against a stand-in Hub holding the base) for a release of the 16-layer
   model (32 experts pruned to 24), sampling every 0.2 s the disk its folder takes (the downloaded base,
   the cache, dist/; a hard-linked file once) and the resident memory of the job's processes but for
   mapped model files; beside the job plan's disk and RAM for the same release (its disk less the plan's
   allowance for the venv and the llama.cpp build).

The demo checkpoint is generated (7.6M parameters) unless --medium: the 0.76B Gemma 4 MoE of
benchmarks/gguf_sweep.py (32 experts top-4 pruned to 24, expert FFN 704 like the 26B), generated once and
cached in $MOE_RELEASE_CACHE/bench/. Work files go to a temporary folder (--keep keeps it).

    python benchmarks/quality.py [--medium] [--tiers Q8_0,Q4_K_M] [--max-tokens 4096] [--keep]
    python benchmarks/quality.py --imatrix [--medium] [--chunks 8]
    python benchmarks/quality.py --memory [--workdir /tmp]
    python benchmarks/quality.py --jobs [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Two decoder layers of gemma-4-26B-A4B as v4 keeps them (98 experts), with the demo's small vocabulary.
LAYER_SET = {"hidden_size": 2816, "intermediate_size": 2112, "moe_intermediate_size": 704, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 256, "global_head_dim": 512, "num_global_key_value_heads": 2,
             "num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"], "num_experts": 98,
             "top_k_experts": 8, "sliding_window": 1024}
# The 26B's vocabulary and hidden size around two small layers: the embeddings and the head at full size.
VOCABULARY = {**LAYER_SET, "num_experts": 8, "top_k_experts": 2, "moe_intermediate_size": 64,
              "intermediate_size": 128, "vocab_size": 262144, "vocab_size_per_layer_input": 262144}
# Sixteen layers at hidden 1024 and the 26B's FFN widths (tests/test_streamed_memory.py's model).
SIXTEEN_LAYERS = {**{k: LAYER_SET[k] for k in ("intermediate_size", "moe_intermediate_size", "head_dim",
                                                "global_head_dim", "num_global_key_value_heads")},
                  "hidden_size": 1024, "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 16,
                  "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * 4, "num_experts": 32,
                  "sliding_window": 512}
V4_LAYERS, V4_CHUNKS = 30, 64


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


# ---- 1 and 2: the demo (or the medium checkpoint) --------------------------------------------------------

def _pipeline(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path | None]:
    """(the release folder, the pruned checkpoint when --medium; else the demo's is built from its base)."""
    folder = tmp / "pipelines" / "demo"
    pruned = None
    if args.medium:
        import gguf_sweep  # benchmarks/gguf_sweep.py: the medium checkpoint and its pipeline

        from release.prune import prune_checkpoint
        from release.spec.load import load_release
        from release.toolchain import cache_dir

        cache = cache_dir() / "bench"
        base, pruned = cache / "gemma4-medium-32e", cache / f"gemma4-medium-{gguf_sweep.KEPT}e"
        if not (pruned / "config.json").is_file() and not (base / "config.json").is_file():
            print(f"generating the medium checkpoint in {base} …", flush=True)
            gguf_sweep.generate_medium(base)
        gguf_sweep.bench_pipeline(folder, base if (base / "config.json").is_file() else pruned, pruned)
        if not (pruned / "config.json").is_file():
            prune_checkpoint(base, load_release(str(folder)).drop_map, pruned)
            shutil.rmtree(base)
    else:
        shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    if args.max_tokens:
        toml = folder / "release.toml"
        toml.write_text(toml.read_text().replace("max_tokens = 8192", f"max_tokens = {args.max_tokens}"))
    return folder, pruned


def _prepared(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The release, its pruned checkpoint, its F16 and the quality reference."""
    from release.gguf.build import GgufJob, baseline_source, convert_baseline
    from release.pipeline import Context, Options, ensure
    from release.quality.gguf import make_reference
    from release.spec.heldout import read_heldout
    from release.spec.load import load_release

    folder, pruned = _pipeline(args, tmp)
    release = load_release(str(folder))
    g, q = release.definition.gguf, release.quality
    assert g is not None and q is not None
    t = time.perf_counter()
    if pruned is None:
        ctx = Context(release, Options(dist_root=tmp / "dist", quiet=True))
        ensure(ctx, ["bf16"])
        pruned = ctx.artifact_dir(ctx.built("bf16"))
    job = GgufJob(release, tmp / "gguf", log=lambda _m: None)
    source = baseline_source(tmp, convert_baseline(job, pruned))
    convert_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in pruned.glob("*.safetensors"))
    ref_dir = tmp / "reference"
    t = time.perf_counter()
    facts = make_reference(source, read_heldout(release), q, ref_dir, reference=f"gguf:{g.baseline}", shown=q.text)
    reference_s = time.perf_counter() - t
    print(f"{release.name}{' (medium checkpoint)' if args.medium else ''}: {size / 1e9:.3f} GB BF16; "
          f"{g.baseline} made in {convert_s:.1f} s; {os.cpu_count()} cores", flush=True)
    print(f"reference: {facts['windows']} windows of {facts['context']} tokens ({facts['tokens']} scored) "
          f"through {g.baseline} in {reference_s:.2f} s", flush=True)
    return {"release": release, "pruned": pruned, "source": source, "reference": ref_dir,
            "reference_s": reference_s}


def tier_timings(args: argparse.Namespace, tmp: Path) -> None:
    from release.gguf.build import GgufJob, make_imatrix, quantize_tiers
    from release.quality.gguf import measure_tier

    p = _prepared(args, tmp)
    release = p["release"]
    imatrix = make_imatrix(GgufJob(release, tmp / "gguf", log=lambda _m: None), p["source"], p["pruned"])
    imatrix_path = tmp / "gguf" / imatrix.files[0].path
    tiers = [t for t in args.tiers.split(",") if t] or list(release.definition.gguf.tiers)
    rows = []
    (tmp / "tiers").mkdir()
    job = GgufJob(release, tmp / "tiers", log=lambda _m: None)
    for tier in tiers:
        t = time.perf_counter()
        (built,) = quantize_tiers(job, [tier], p["source"], imatrix_path, jobs=1)
        quantize_s = time.perf_counter() - t
        path = tmp / "tiers" / sorted(f.path for f in built.files)[0]
        t = time.perf_counter()
        fig = measure_tier(path, p["reference"])
        measure_s = time.perf_counter() - t
        rows.append((tier, quantize_s, measure_s, fig.kld_mean))
        print(f"  {tier:<8} quantize {quantize_s:6.2f} s   measure {measure_s:6.2f} s   ratio "
              f"{measure_s / quantize_s:5.2f}   KLD {fig.kld_mean:.4g}", flush=True)
        for f in built.files:
            (tmp / "tiers" / f.path).unlink()
    q_total = sum(r[1] for r in rows)
    m_total = sum(r[2] for r in rows)
    print(f"measure / quantize per tier: median {statistics.median(r[2] / r[1] for r in rows):.2f}, "
          f"total {m_total:.1f} s / {q_total:.1f} s = {m_total / q_total:.2f}")
    print(f"with the reference amortised over {len(rows)} tiers: {(m_total + p['reference_s']) / q_total:.2f} "
          "(below 1: measuring costs less than quantizing)")


def imatrix_fidelity(args: argparse.Namespace, tmp: Path) -> None:
    from release.gguf.build import GgufJob, quantize_tiers
    from release.gguf.imatrix import compute_imatrix
    from release.gguf.imatrix_stream import stream_imatrix
    from release.quality.gguf import measure_tier

    p = _prepared(args, tmp)
    release = p["release"]
    g = release.definition.gguf
    if args.medium:  # a calibration text of several full chunks (the demo's gives two short ones)
        calibration, chunks = tmp / "calibration.txt", args.chunks
        calibration.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    else:
        calibration, chunks = release.path(g.imatrix), g.imatrix_chunks
    matrices = {"streamed": tmp / "streamed-imatrix.gguf", "llama.cpp": tmp / "llama-imatrix.gguf"}
    t = time.perf_counter()
    res = stream_imatrix(p["pruned"], p["source"], calibration, matrices["streamed"], chunks=chunks)
    streamed_s = time.perf_counter() - t
    t = time.perf_counter()
    compute_imatrix(p["source"], calibration, matrices["llama.cpp"], chunks=chunks, threads=os.cpu_count() or 2)
    llama_s = time.perf_counter() - t
    print(f"imatrix over {res.chunks} chunks of {res.chunk_size} tokens of {calibration.name}: layer-streamed from "
          f"BF16 {streamed_s:.1f} s, llama.cpp on the F16 {llama_s:.1f} s (ratio {streamed_s / llama_s:.2f})")
    kld: dict[str, dict[str, float]] = {}
    for label, matrix in matrices.items():
        out = tmp / f"tiers-{label}"
        out.mkdir()
        job = GgufJob(release, out, log=lambda _m: None)
        for built in quantize_tiers(job, list(g.tiers), p["source"], matrix, jobs=2):
            path = out / sorted(f.path for f in built.files)[0]
            kld.setdefault(built.id.split(":", 1)[1], {})[label] = measure_tier(path, p["reference"]).kld_mean
            for f in built.files:
                (out / f.path).unlink()
    worst = 0.0
    print(f"  {'tier':<8} {'KLD streamed':>13} {'KLD llama.cpp':>14} {'ratio':>7}")
    for tier, k in kld.items():
        ratio = k["streamed"] / k["llama.cpp"]
        worst = max(worst, abs(ratio - 1))
        print(f"  {tier:<8} {k['streamed']:13.5f} {k['llama.cpp']:14.5f} {ratio:7.4f}")
    print(f"largest difference {100 * worst:.2f} % (goal: within 3 %: {'met' if worst <= 0.03 else 'MISSED'})")


# ---- 3: memory -------------------------------------------------------------------------------------------

def _checkpoint(work: Path, name: str, widths: dict[str, Any]) -> dict[str, Path]:
    """A generated Gemma 4 BF16 checkpoint (the demo's tokenizer), its F16 GGUF and its NVFP4A16 checkpoint."""
    from release.demo import text_config, write_gemma4
    from release.gguf.convert import convert
    from release.nvfp4 import quantize_checkpoint
    from release.toolchain import ensure_toolchain

    root = work / name
    bf16, f16, nvfp4 = root / "bf16", root / "F16.gguf", root / "nvfp4"
    if not (bf16 / "config.json").is_file():
        write_gemma4(bf16, {**text_config(), **widths}, seed=9, max_shard_size="1GB", init_in_bf16=True)
    if not f16.is_file():
        convert(ensure_toolchain(), bf16, f16, outtype="F16", model_name=name)
    if not (nvfp4 / "config.json").is_file():
        quantize_checkpoint(bf16, nvfp4)
    return {"bf16": bf16, "f16": f16, "nvfp4": nvfp4, "root": root}


def _passes(files: dict[str, Path], tokens: int) -> dict[str, dict[str, Any]]:
    from release.peak import measure

    setup = ("from pathlib import Path\nimport torch, transformers\n"
             "from release.gguf.imatrix_stream import stream_imatrix\nfrom release.quality.gguf import make_reference\n"
             "from release.quality.nvfp4 import measure_nvfp4\nfrom release.spec.load import load_release\n"
             f"q = load_release('demo').quality.model_copy(update={{'max_tokens': {tokens}}})\n"
             f"text = Path({str(ROOT / 'pipelines' / 'demo' / 'heldout.txt')!r}).read_text()\n")
    f = {k: repr(str(v)) for k, v in files.items()}
    runs = {
        "imatrix": f"r = stream_imatrix(Path({f['bf16']}), Path({f['f16']}), Path({str(ROOT / 'README.md')!r}), "
                   f"Path({f['root']}) / 'imatrix.gguf', chunks={tokens // 512})\nresult = r.tokens",
        "nvfp4": f"r = measure_nvfp4(Path({f['bf16']}), Path({f['nvfp4']}), text, q, shown='heldout.txt', "
                 f"work=Path({f['root']}) / 'work')\nresult = r.tokens",
        "reference": f"r = make_reference(Path({f['f16']}), text, q, Path({f['root']}) / 'reference', "
                     "reference='gguf:F16', shown='heldout.txt')\nresult = r['tokens']",
    }
    return {name: measure(setup, run) for name, run in runs.items()}


def _planned(files: dict[str, Path], tokens: int) -> dict[str, int]:
    from release.quality.estimate import checkpoint_pass, libllama_pass_bytes
    from release.quality.nvfp4 import compute_dtype

    nvfp4_bytes = compute_dtype(files["bf16"]).itemsize
    vocab = json.loads((files["bf16"] / "config.json").read_text())["text_config"]["vocab_size"]
    return {"imatrix": checkpoint_pass(files["bf16"], tokens=tokens, compute_bytes=4).peak_bytes(),
            "nvfp4": checkpoint_pass(files["bf16"], tokens=tokens, compute_bytes=nvfp4_bytes,
                                     head_context=512).peak_bytes(),
            "reference": libllama_pass_bytes(512, vocab)}


def memory(args: argparse.Namespace, work: Path) -> None:
    from release.costs import CORES, TORCH_FLOPS_PER_CORE
    from release.distributed.jobs import plan_jobs
    from release.pipeline import Context, Options
    from release.quality.estimate import checkpoint_pass
    from release.spec.load import load_release

    tokens = 2048
    print(f"{os.cpu_count()} cores; each pass in a process of its own over {tokens} tokens (4 imatrix chunks of "
          "512, 4 held-out windows of 512); peak = VmHWM (the libllama reference: anonymous memory, its model "
          "file is mapped page cache)")
    layer_rate = None
    for name, widths in (("26B layer set", LAYER_SET), ("26B vocabulary", VOCABULARY),
                         ("16 layers", SIXTEEN_LAYERS)):
        files = _checkpoint(work, name.replace(" ", "-"), widths)
        size = sum(p.stat().st_size for p in files["bf16"].glob("*.safetensors"))
        measured, planned = _passes(files, tokens), _planned(files, tokens)
        shape = checkpoint_pass(files["bf16"], tokens=tokens, compute_bytes=4)
        print(f"\n{name}: {_gb(size)} BF16, largest layer {_gb(shape.layer * 2)} BF16, embeddings "
              f"{_gb(shape.embedding * 2)}")
        for what, m in measured.items():
            peak = m["peak_anon"] if what == "reference" else m["peak_rss"]
            print(f"  {what:<9} peak {_gb(peak)} = {peak / size:.2f} × the model; planned {_gb(planned[what])} "
                  f"({planned[what] / peak:.2f} × measured); {m['seconds']:.1f} s")
        if widths is LAYER_SET:
            cfg = {**widths}
            per_expert = 3 * cfg["hidden_size"] * cfg["moe_intermediate_size"]
            active = shape.layer - (cfg["num_experts"] - cfg["top_k_experts"]) * per_expert
            flops = 2 * active * cfg["num_hidden_layers"] * tokens
            layer_rate = measured["imatrix"]["seconds"] / (tokens * cfg["num_hidden_layers"])
            print(f"  imatrix: {flops / measured['imatrix']['seconds'] / 1e9:.1f} GFLOP/s on {os.cpu_count()} cores "
                  f"({flops / measured['imatrix']['seconds'] / (os.cpu_count() or 1) / 1e9:.1f} per core; the plan "
                  f"assumes {TORCH_FLOPS_PER_CORE / 1e9:.0f}), reading and converting the layers included")
    plan = plan_jobs(Context(load_release("v4"), Options(quiet=True)))
    print("\nv4 as planned (release plan v4 --matrix):")
    for job in (plan.job("prepare"), plan.job("nvfp4")):
        print(f"  {job.id:<8} {job.ram_gb:5.1f} GB RAM  {job.disk_gb:5.1f} GB disk  {job.hours:4.2f} h  {job.runner}")
    if layer_rate is not None:
        hours = layer_rate * V4_LAYERS * V4_CHUNKS * 512 / 3600
        cores = os.cpu_count() or 1
        print(f"extrapolation, not a measurement: v4's imatrix ({V4_LAYERS} such layers, {V4_CHUNKS} chunks of 512) "
              f"≈ {hours:.2f} h on this machine's {cores} cores, ≈ {hours * cores / CORES['standard']:.2f} h on a "
              f"standard runner's {CORES['standard']} at the same speed per core")


# ---- 4: the jobs themselves ------------------------------------------------------------------------------

def _allocated(folder: Path) -> int:
    """Bytes the files below `folder` take on disk, each file once (a job hard-links what it downloads)."""
    seen: dict[tuple[int, int], int] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # renamed or removed while we looked
                st = os.lstat(os.path.join(root, name))
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


MODEL_FILES = (".gguf", ".safetensors", ".npy")


def _resident(pid: int) -> int:
    """Resident bytes of one process but for mapped model files (page cache the kernel drops and reads
    again): what --memory measures, VmHWM of the streamed passes, anonymous memory around libllama."""
    total, counted = 0, True
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                head = line.split(maxsplit=6)
                if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
                    counted = not (len(head) == 6 and head[5].strip().endswith(MODEL_FILES))
                elif counted and head and head[0] == "Rss:":
                    total += int(head[1]) * 1024
    except OSError:
        return 0
    return total


def _tree_resident(pid: int) -> int:
    """_resident of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack += children.get(p, [])
        total += _resident(p)
    return total


def _run_sampled(cmd: list[str], env: dict[str, str], folder: Path) -> tuple[int, int, float]:
    """(peak disk of `folder`, peak resident memory of the process tree but for mapped model files, seconds)
    of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peaks[0] = max(peaks[0], _allocated(folder))
            peaks[1] = max(peaks[1], _tree_resident(proc.pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:6])} failed:\n{err[-3000:]}")
    return peaks[0], peaks[1], time.perf_counter() - started


def jobs(args: argparse.Namespace, work: Path) -> None:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import disable_progress_bars

    from release.costs import OVERHEAD_GB
    from release.local import start_registry
    from release.localhub import LocalHub

    token = "hf_bench_quality_0123456789"
    constants.HF_HUB_DISABLE_XET = True
    disable_progress_bars()
    files = _checkpoint(work, "16-layers", SIXTEEN_LAYERS)
    hub = LocalHub(work / "hub", tokens={token: ["demo", "bench"]})
    url = hub.start()
    registry = start_registry(work / "registry")
    try:
        api = HfApi(endpoint=url, token=token)
        api.create_repo("bench/gemma4-16-layers", exist_ok=True)
        rev = api.upload_folder(repo_id="bench/gemma4-16-layers", folder_path=str(files["bf16"])).oid
        folder = work / "pipelines" / "bench"
        shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
        config = json.loads((files["bf16"] / "config.json").read_text())
        (folder / "base-config.json").write_text(json.dumps(config, indent=2))
        layers, experts = SIXTEEN_LAYERS["num_hidden_layers"], SIXTEEN_LAYERS["num_experts"]
        rng = random.Random(5)
        drop = {str(n): sorted(rng.sample(range(experts), 8)) for n in range(layers)}
        (folder / "dropmap.json").write_text(json.dumps({"format": "moe-drop-map/1", "base": "bench/gemma4-16-layers",
                                                         "num_experts": experts, "drop": drop}))
        index = json.loads((files["bf16"] / "model.safetensors.index.json").read_text())
        toml = (folder / "release.toml").read_text()
        toml = toml.replace('repo = "demo/tiny-gemma4-8e"', 'repo = "bench/gemma4-16-layers"')
        toml = re.sub(r'revision = "0+"', f'revision = "{rev}"', toml)
        toml = toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', "")
        toml = toml.replace("experts_kept = 6", "experts_kept = 24")
        toml = re.sub(r"(?m)^parameters = .*$", f"parameters = {index['metadata']['total_size'] // 2}", toml)
        toml = re.sub(r"(?m)^imatrix_chunks = .*$", "imatrix_chunks = 4", toml)
        (folder / "release.toml").write_text(toml)
        (folder / "calibration.txt").write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
        env = {**os.environ, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"}
        plan = json.loads(subprocess.run([sys.executable, "-m", "release", "plan", str(folder), "--matrix", "--json"],
                                         check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout)
        planned = {j["id"]: j for j in plan["jobs"]}
        print(f"a release of the 16-layer model ({experts} → 24 experts), base {_gb(index['metadata']['total_size'])} "
              "on a stand-in Hub; each job in a process of its own")
        for job_id in ("prepare", "nvfp4"):
            machine = work / "machines" / job_id
            machine.mkdir(parents=True)
            cmd = [sys.executable, "-m", "release", "publish", str(folder), "--job", job_id, "--dist", str(machine),
                   "--hub-endpoint", url, "--ollama-registry", registry.url, "--json", "--no-git-tag"]
            disk, ram, seconds = _run_sampled(cmd, {**env, "HF_HOME": str(machine / "hf-home")}, machine)
            j = planned[job_id]
            plan_disk = (j["disk_gb"] - OVERHEAD_GB) * 1e9
            print(f"  {job_id:<8} disk peak {_gb(disk)}, planned {_gb(plan_disk)} ({plan_disk / disk:.2f} × measured); "
                  f"memory peak {_gb(ram)}, planned {j['ram_gb']:.2f} GB ({j['ram_gb'] * 1e9 / ram:.2f} × measured); "
                  f"{seconds:.0f} s")
    finally:
        registry.stop()
        hub.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--medium", action="store_true", help="the 0.76B checkpoint of benchmarks/gguf_sweep.py")
    ap.add_argument("--tiers", default="", help="comma-separated subset of the demo's tiers (default: all)")
    ap.add_argument("--max-tokens", type=int, default=0, help="[quality] max_tokens (default: the definition's)")
    ap.add_argument("--imatrix", action="store_true", help="streamed imatrix against llama.cpp's (KLD of every tier)")
    ap.add_argument("--chunks", type=int, default=8, help="imatrix chunks of the --medium calibration text")
    ap.add_argument("--memory", action="store_true", help="peaks and times of the streamed passes")
    ap.add_argument("--jobs", action="store_true", help="disk and memory of the prepare and nvfp4 jobs")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="for --memory's checkpoints")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    tmp = Path(tempfile.mkdtemp(prefix="quality-bench-", dir=args.workdir if args.memory or args.jobs else None))
    try:
        if args.jobs:
            jobs(args, tmp)
        elif args.memory:
            memory(args, tmp)
        elif args.imatrix:
            imatrix_fidelity(args, tmp)
        else:
            tier_timings(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
