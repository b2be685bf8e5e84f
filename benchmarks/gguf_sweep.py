"""GGUF step speed on a medium Gemma 4 MoE at the 26B's FFN widths (expert 704, dense 2112).

Prints two ratios, each against a baseline measured in the same run:
  1. conversion: `release`'s convert step vs running llama.cpp's convert_hf_to_gguf.py directly
     (same arguments) — overhead of progress, checks and the atomic rename; ≈1.0 is the goal;
  2. sweep: `quantize_tiers`' parallel sweep (processes within the memory budget, slowest tiers first,
     facts/hashes included) vs the same tiers quantized one after another with all cores each (what a
     `for t in …; do llama-quantize …; done` loop does). Same F16 input, same imatrix, same recipes.

The checkpoint (hidden 1024, 12 layers 5:1 sliding/full, 32 experts top-4 pruned to 24 with the real
pruner, ≈0.76B params, ≈1.5 GB BF16) is generated once with transformers and cached outside the repo in
$MOE_RELEASE_CACHE/bench/ (default ~/.cache/moe-release/bench/). Big outputs go to a temporary folder
that is deleted at the end (--keep to keep it).

    python benchmarks/gguf_sweep.py [--tiers Q8_0,Q6_K,...] [--jobs 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from release.toolchain import cache_dir, ensure_toolchain  # noqa: E402

EXPERTS, KEPT, TOP_K = 32, 24, 4


def medium_text_config() -> dict:
    from release.demo import text_config

    tc = text_config()
    tc.update(hidden_size=1024, intermediate_size=2112, moe_intermediate_size=704, num_hidden_layers=12,
              num_attention_heads=8, num_key_value_heads=4, head_dim=256, global_head_dim=512,
              num_global_key_value_heads=2, num_experts=EXPERTS, top_k_experts=TOP_K,
              layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 2, sliding_window=512)
    return tc


def generate_medium(out: Path) -> None:
    """A random-init Gemma4ForConditionalGeneration (text + the demo's small vision tower) saved as BF16."""
    from release.demo import write_gemma4

    write_gemma4(out, medium_text_config(), seed=11, max_shard_size="400MB", init_in_bf16=True)


def bench_pipeline(folder: Path, base: Path, pruned: Path) -> Path:
    """The demo pipeline pointed at the medium checkpoint, with a seeded 32→24 drop map."""
    demo = ROOT / "pipelines" / "demo"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(demo, folder, ignore=shutil.ignore_patterns("base", "dist"))
    config = json.loads((base / "config.json").read_text())
    config["text_config"]["num_experts"] = EXPERTS  # the pruned copy says 24; the pipeline records the base
    (folder / "base-config.json").write_text(json.dumps(config, indent=2))
    rng = random.Random(5)
    drop = {str(n): sorted(rng.sample(range(EXPERTS), EXPERTS - KEPT)) for n in range(12)}
    (folder / "dropmap.json").write_text(json.dumps({"format": "moe-drop-map/1", "base": "bench/gemma4-medium",
                                                     "num_experts": EXPERTS, "drop": drop}, indent=1))
    toml = (folder / "release.toml").read_text()
    toml = toml.replace('repo = "demo/tiny-gemma4-8e"', 'repo = "bench/gemma4-medium"')
    toml = toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', "")
    toml = toml.replace("experts_kept = 6", f"experts_kept = {KEPT}")
    (folder / "release.toml").write_text(toml)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiers", default="", help="comma-separated subset of the demo tiers (default: all 7)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reps", type=int, default=2, help="conversion runs per side (best counts)")
    ap.add_argument("--conversion-only", action="store_true")
    args = ap.parse_args()

    from release.gguf.build import GgufJob, baseline_source, convert_baseline, make_imatrix, quantize_tiers
    from release.gguf.convert import convert, converter_command
    from release.gguf.quantize import QuantizeJob, run_job
    from release.prune import prune_checkpoint
    from release.spec.load import load_release

    tc = ensure_toolchain()
    cache = cache_dir() / "bench"
    base = cache / "gemma4-medium-32e"
    pruned = cache / f"gemma4-medium-{KEPT}e"
    if not (pruned / "config.json").is_file() and not (base / "config.json").is_file():
        t = time.perf_counter()
        print(f"generating the medium checkpoint in {base} …", flush=True)
        generate_medium(base)
        print(f"  {time.perf_counter() - t:.0f} s", flush=True)
    # Only the pruned checkpoint is kept in the cache; the base's config is all the pipeline needs.
    pipeline = bench_pipeline(cache / "pipeline", base if (base / "config.json").is_file() else pruned, pruned)
    release = load_release(str(pipeline))
    if not (pruned / "config.json").is_file():
        prune_checkpoint(base, release.drop_map, pruned)
        shutil.rmtree(base)
    size = sum(p.stat().st_size for p in pruned.glob("*.safetensors"))
    print(f"checkpoint: {pruned} ({size / 1e9:.3f} GB BF16, {KEPT} experts, expert FFN 704, dense 2112)")
    g = release.definition.gguf
    tiers = [t for t in args.tiers.split(",") if t] or list(g.tiers)

    tmp = Path(tempfile.mkdtemp(prefix="gguf-bench-", dir=os.environ.get("GGUF_BENCH_TMP")))
    try:
        # 1. Conversion: llama.cpp's converter directly vs release's convert step. The checkpoint is read
        #    once first so neither side pays the cold page cache; runs alternate, best of --reps each.
        for f in pruned.glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(64 << 20):
                    pass
        direct_out, ours_out = tmp / "direct-F16.gguf", tmp / "ours-F16.gguf"
        direct_runs, ours_runs = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            subprocess.run(converter_command(tc, pruned, direct_out, "F16", g.model_name), env=tc.converter_env(),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            direct_runs.append(time.perf_counter() - t)
            direct_out.unlink()
            t = time.perf_counter()
            convert(tc, pruned, ours_out, outtype="F16", model_name=g.model_name)
            ours_runs.append(time.perf_counter() - t)
            ours_out.unlink()
        direct_s, ours_s = min(direct_runs), min(ours_runs)
        print(f"conversion F16 (best of {args.reps}): converter directly {direct_s:.1f} s, release convert "
              f"{ours_s:.1f} s → ratio {ours_s / direct_s:.2f} (release / direct; 1.00 = no overhead)", flush=True)
        if args.conversion_only:
            return 0

        # 2. Baseline conversion + imatrix (used by the sweep below).
        out = tmp / "gguf"
        t = time.perf_counter()
        job = GgufJob(release, out, log=print)
        baseline = convert_baseline(job, pruned)
        source = baseline_source(tmp, baseline)
        art = make_imatrix(job, source, pruned)
        imatrix = out / art.files[0].path
        facts = art.facts
        print(f"F16 conversion + imatrix ({facts.get('chunks')} chunks × {facts.get('chunk_size')} tokens): "
              f"{time.perf_counter() - t:.1f} s", flush=True)

        # 3a. Sequential baseline: one tier after another, all cores each, one process per tier.
        from release.gguf.checks import tier_recipe

        cores = os.cpu_count() or 2
        seq: dict[str, float] = {}
        t0 = time.perf_counter()
        for tier in tiers:
            r = tier_recipe(release, tier)
            job = QuantizeJob(tier, str(source), str(tmp / "seq" / f"{tier}.gguf"), r.ftype, r.embed_type,
                              r.output_type, r.overrides, str(imatrix), "calibration.txt", cores)
            t = time.perf_counter()
            _in_child(run_job, job)
            seq[tier] = time.perf_counter() - t
            (tmp / "seq" / f"{tier}.gguf").unlink()
        seq_s = time.perf_counter() - t0
        print("sequential: " + ", ".join(f"{k} {v:.1f}s" for k, v in seq.items()) + f" = {seq_s:.1f} s",
              flush=True)

        # 3b. release's parallel sweep (includes reading back facts and sha256 of every file).
        t = time.perf_counter()
        arts = quantize_tiers(job, tiers, source, imatrix, jobs=args.jobs)
        par_s = time.perf_counter() - t
        per = {a.id.split(":")[1]: a.facts.get("wall_s") for a in arts}
        print("parallel:   " + ", ".join(f"{k} {v}s" for k, v in per.items()) + f" = {par_s:.1f} s wall",
              flush=True)
        for a in arts:
            print(f"  {a.id:12s} {a.size / 2**20:7.1f} MiB  {a.facts['bpw']:.2f} bpw  "
                  f"gate_up {sorted(a.facts['histogram'].get('ffn_gate_up_exps', {}))} "
                  f"down {sorted(a.facts['histogram'].get('ffn_down_exps', {}))}")
        print(f"sweep of {len(tiers)} tiers: sequential {seq_s:.1f} s, parallel ({args.jobs} jobs) {par_s:.1f} s "
              f"→ speed-up {seq_s / par_s:.2f}× (sequential / parallel)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _in_child(fn, arg):
    """Run in a fresh process, as build_gguf's workers do, so both sides pay the same start-up."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, arg).result()


if __name__ == "__main__":
    sys.exit(main())
