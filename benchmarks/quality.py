"""Quality measurement cost against quantization cost, per GGUF tier, measured in the same run.

For every tier of the demo release (or --tiers): the time llama.cpp's quantizer takes to make it from the
F16 conversion (one tier at a time, all cores, as the tier's job does) against the time `release` takes to
measure it (release.quality.gguf.measure_tier: every held-out window through libllama, KL divergence against
the stored reference). The reference itself is made once per release and shared by every tier; it is shown
apart, and amortised over the tiers in the last line. Goal: measuring a tier costs less than quantizing it.

The checkpoint is the demo's (generated, 7.6M parameters) unless --medium: the 0.76B Gemma 4 MoE of
benchmarks/gguf_sweep.py (32 experts top-4 pruned to 24, expert FFN 704 like the 26B), generated once and
cached in $MOE_RELEASE_CACHE/bench/ — closer to a real release's ratio, since measuring scales with the
active parameters per token and quantizing with all of them. Work files go to a temporary folder.

    python benchmarks/quality.py [--medium] [--tiers Q8_0,Q4_K_M] [--max-tokens 4096] [--keep]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--medium", action="store_true", help="the 0.76B checkpoint of benchmarks/gguf_sweep.py")
    ap.add_argument("--tiers", default="", help="comma-separated subset of the demo's tiers (default: all)")
    ap.add_argument("--max-tokens", type=int, default=0, help="[quality] max_tokens (default: the definition's)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))

    from release.gguf.build import GgufJob, baseline_source, convert_baseline, make_imatrix, quantize_tiers
    from release.pipeline import Context, Options, ensure
    from release.quality.gguf import make_reference, measure_tier
    from release.spec.heldout import read_heldout
    from release.spec.load import load_release

    tmp = Path(tempfile.mkdtemp(prefix="quality-bench-"))
    try:
        folder, pruned = _pipeline(args, tmp)
        release = load_release(str(folder))
        g, q = release.definition.gguf, release.quality
        assert g is not None and q is not None
        tiers = [t for t in args.tiers.split(",") if t] or list(g.tiers)
        t = time.perf_counter()
        if pruned is None:
            ctx = Context(release, Options(dist_root=tmp / "dist", quiet=True))
            ensure(ctx, ["bf16"])
            pruned = ctx.artifact_dir(ctx.built("bf16"))
        job = GgufJob(release, tmp / "gguf", log=lambda _m: None)
        source = baseline_source(tmp, convert_baseline(job, pruned))
        imatrix = make_imatrix(job, source, pruned)
        imatrix_path = tmp / "gguf" / imatrix.files[0].path
        size = sum(p.stat().st_size for p in pruned.glob("*.safetensors"))
        print(f"{release.name}{' (medium checkpoint)' if args.medium else ''}: {size / 1e9:.3f} GB BF16; "
              f"{g.baseline} and imatrix made in {time.perf_counter() - t:.1f} s; {os.cpu_count()} cores",
              flush=True)

        ref_dir = tmp / "reference"
        t = time.perf_counter()
        facts = make_reference(source, read_heldout(release), q, ref_dir, reference=f"gguf:{g.baseline}",
                               shown=q.text)
        reference_s = time.perf_counter() - t
        print(f"reference: {facts['windows']} windows of {facts['context']} tokens ({facts['tokens']} scored) "
              f"through {g.baseline} in {reference_s:.2f} s", flush=True)

        rows = []
        (tmp / "tiers").mkdir()
        job = GgufJob(release, tmp / "tiers", log=lambda _m: None)
        for tier in tiers:
            t = time.perf_counter()
            (built,) = quantize_tiers(job, [tier], source, imatrix_path, jobs=1)
            quantize_s = time.perf_counter() - t
            path = tmp / "tiers" / sorted(f.path for f in built.files)[0]
            t = time.perf_counter()
            fig = measure_tier(path, ref_dir)
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
        print(f"with the reference amortised over {len(rows)} tiers: {(m_total + reference_s) / q_total:.2f} "
              "(below 1: measuring costs less than quantizing)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
