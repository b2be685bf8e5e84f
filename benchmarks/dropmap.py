"""Benchmark: the `release dropmap` collector on CPU — tokens per second for the demo and for a full-width
Gemma 4 checkpoint, and peak memory against the bound "two layers + activations" computed from the layer
sizes, all in the same run.

The full-width checkpoint has the 26B-A4B text layout at full width (pipelines/v4/base-config.json: hidden
2816, 128 experts × 704, dense MLP 2112, 16 heads) with two decoder layers (one sliding-, one full-attention)
and a 16384-token vocabulary, BF16, random weights written tensor by tensor (no model is instantiated).
Each measurement runs in its own process, so its peak RSS (VmHWM) is its own; the baseline is that
process's RSS just before streaming starts (torch and transformers imported, model skeleton on meta),
where the high-water mark is reset.

    python benchmarks/dropmap.py [--tokens 4096] [--reps 3] [--workdir /tmp] [--keep]

Goal: peak RSS above the baseline ≤ the bound. The 26B figures printed at the end are an extrapolation
(30 layers of the measured full-width speed), not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from release.peak import peak_rss, reset_peak_rss, rss  # noqa: E402  (after the path)

FULL_LAYERS, FULL_VOCAB, REAL_LAYERS = 2, 16384, 30


def write_full_width(out: Path) -> Path:
    """Gemma 4 26B-A4B text layers at full width, two of them, BF16 random weights (~3.3 GB)."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import initialization as init

    if (out / "model.safetensors.index.json").is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = json.loads((ROOT / "pipelines" / "v4" / "base-config.json").read_text())
    text = config["text_config"]
    text.update(num_hidden_layers=FULL_LAYERS, layer_types=["sliding_attention", "full_attention"],
                vocab_size=FULL_VOCAB, vocab_size_per_layer_input=FULL_VOCAB)
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    cfg = transformers.AutoConfig.from_pretrained(tmp)
    with torch.device("meta"), init.no_init_weights():
        skeleton = getattr(transformers, cfg.architectures[0])(cfg)
    shapes = {n: tuple(t.shape) for n, t in skeleton.state_dict().items() if n.startswith("model.language_model.")}
    gen = torch.Generator().manual_seed(0)
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in shapes.items():
        part = name.split(".")[3] if ".layers." in name else "other"
        groups.setdefault(part, {})[name] = shape
    weight_map: dict[str, str] = {}
    total = 0
    for i, (_part, names) in enumerate(sorted(groups.items())):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in names.items():
            t = torch.empty(shape, dtype=torch.bfloat16)
            if len(shape) >= 2:
                for row in range(shape[0]):  # row by row: no float32 copy of a 1 GB expert tensor
                    t[row] = torch.randn(shape[1:], generator=gen) / math.sqrt(shape[-1])
            else:
                t.copy_(0.75 + 0.5 * torch.rand(shape, generator=gen))
            tensors[name] = t
            weight_map[name] = file
            total += t.numel() * 2
        save_file(tensors, str(tmp / file), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    tmp.rename(out)
    return out


def transient_bytes(config: dict[str, Any], dtype_bytes: int, batch_tokens: int, seq: int) -> int:
    """Working memory of one batch inside one layer, estimated from the config as every intermediate tensor
    alive at once: in the experts, the token rows repeated k times and gathered by expert, gate/up,
    activation, output, weighted and re-ordered outputs (compute dtype), the fp32 weighted sum; attention
    projections, output and a materialised fp32 score matrix; the dense MLP; residual and norm copies."""
    tc = config.get("text_config", config)
    b, n, k, h = dtype_bytes, batch_tokens, tc["top_k_experts"], tc["hidden_size"]
    inter, dense = tc["moe_intermediate_size"], tc["intermediate_size"]
    heads = tc["num_attention_heads"]
    q = heads * max(tc["head_dim"], tc.get("global_head_dim") or 0)
    kv = 2 * max(tc["num_key_value_heads"] * tc["head_dim"],
                 (tc.get("num_global_key_value_heads") or 0) * (tc.get("global_head_dim") or 0))
    experts = n * k * (5 * h + 3 * inter) * b + (n * k * h + n * h) * 4
    attention = n * (2 * q + kv) * b + (n // seq) * heads * seq * seq * 4
    mlp = n * 4 * dense * b
    return experts + attention + mlp + 6 * n * h * b


def child(checkpoint: Path, warmup: Path, tokens: int, dtype_name: str, seq: int, batch_tokens: int) -> dict[str, Any]:
    import torch

    from release.dropmap.calibration import TokenizedClass
    from release.dropmap.collect import collect
    from release.dropmap.stream import LayerStream
    from release.prune import inspect_checkpoint

    dtype = getattr(torch, dtype_name)

    def classes_for(info: Any, count: int) -> list[TokenizedClass]:
        vocab = info.family.text_config(info.config)["vocab_size"]
        gen = torch.Generator().manual_seed(0)
        return [TokenizedClass(c, f"{c}.txt", "0" * 64,
                               tuple(tuple(torch.randint(4, vocab, (seq,), generator=gen).tolist())
                                     for _ in range(max(1, count // 2 // seq)))) for c in ("a", "b")]

    # Fixed costs (lazy imports, kernels, allocator pools) go into the baseline: a run on the tiny demo first,
    # which takes the same code paths, and one skeleton of the measured model.
    tiny = inspect_checkpoint(warmup)
    collect(tiny, tiny.family, classes_for(tiny, tokens), device=torch.device("cpu"), dtype=dtype,
            batch_tokens=batch_tokens)
    info = inspect_checkpoint(checkpoint)
    classes = classes_for(info, tokens)
    LayerStream(info, device=torch.device("cpu"), dtype=dtype).close()
    reset = reset_peak_rss()
    baseline = rss() if reset else peak_rss()
    got = collect(info, info.family, classes, device=torch.device("cpu"), dtype=dtype, batch_tokens=batch_tokens)
    peak = peak_rss()
    embed = sum(e.numel for s in info.shards for e in s.entries if e.name.endswith("embed_tokens.weight"))
    return {"tokens": got.tokens, "seconds": got.seconds, "layers": len(info.moe_layers),
            "layer_bytes": got.layer_bytes, "activation_bytes": got.activation_bytes,
            "embed_bytes": embed * dtype.itemsize,
            "transient_bytes": transient_bytes(info.config, dtype.itemsize, min(batch_tokens, tokens // 2), seq),
            "baseline_rss": baseline, "peak_rss": peak}


def run_child(checkpoint: Path, warmup: Path, tokens: int, dtype: str, seq: int, batch_tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(checkpoint), "--warmup", str(warmup), "--tokens", str(tokens),
           "--dtype", dtype,
           "--seq", str(seq), "--batch-tokens", str(batch_tokens)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def report(name: str, r: dict[str, Any]) -> None:
    tps = r["tokens"] / r["seconds"]
    extra = r["peak_rss"] - r["baseline_rss"]
    bound = max(2 * r["layer_bytes"], r["embed_bytes"]) + r["activation_bytes"] + r["transient_bytes"]
    print(f"\n{name}: {r['tokens']} tokens through {r['layers']} layers in {r['seconds']:.1f} s = {tps:.1f} tokens/s "
          f"({tps * r['layers']:.1f} token-layers/s)")
    print(f"  one layer {_gb(r['layer_bytes'])}; held activations {_gb(r['activation_bytes'])}; one batch's working "
          f"memory (estimate) {_gb(r['transient_bytes'])}; embeddings {_gb(r['embed_bytes'])}")
    print(f"  bound = max(2 layers, embeddings) + activations + working = {_gb(bound)}")
    print(f"  peak RSS above the baseline +{_gb(extra)} = "
          f"{extra / bound:.2f} × bound  [{'within' if extra <= bound else 'OVER'}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096, help="calibration tokens per checkpoint")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sample")
    parser.add_argument("--batch-tokens", type=int, default=1024)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--reps", type=int, default=3, help="runs per checkpoint (median time, highest peak)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.warmup, args.tokens, args.dtype, args.seq, args.batch_tokens)))
        return

    from release.demo import generate_tiny_gemma4, is_current

    work = args.workdir / "moe-release-dropmap-bench"
    work.mkdir(parents=True, exist_ok=True)
    try:
        demo = work / "demo-base"
        if not is_current(demo):
            generate_tiny_gemma4(demo)
        full = write_full_width(work / "gemma4-full-width")
        print(f"CPU, {args.dtype}, {args.tokens} calibration tokens in samples of {args.seq}, batches of "
              f"{args.batch_tokens} tokens")
        def median_run(checkpoint: Path) -> dict[str, Any]:
            runs = [run_child(checkpoint, demo, args.tokens, args.dtype, args.seq, args.batch_tokens)
                    for _ in range(args.reps)]
            runs.sort(key=lambda r: r["seconds"])
            worst = max(runs, key=lambda x: x["peak_rss"] - x["baseline_rss"])
            return {**runs[len(runs) // 2], "peak_rss": worst["peak_rss"] - worst["baseline_rss"], "baseline_rss": 0}

        report(f"demo (tiny Gemma 4: 4 layers, 8 experts), median of {args.reps} runs, highest peak", median_run(demo))
        r = median_run(full)
        report(f"full-width Gemma 4 ({FULL_LAYERS} layers of 26B-A4B width), median of {args.reps} runs, "
               "highest peak", r)
        per_token_layer = r["seconds"] / r["tokens"] / r["layers"]  # layer loading included, not overlapped
        for n in (10_000, 100_000):
            hours = REAL_LAYERS * n * per_token_layer / 3600
            print(f"extrapolation, not a measurement: 26B-A4B ({REAL_LAYERS} such layers), {n} calibration tokens "
                  f"≈ {hours:.2f} h on this CPU, holding 2 layers ({_gb(2 * r['layer_bytes'])}) + activations")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
