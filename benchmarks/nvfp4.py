"""Benchmark: streaming NVFP4A16 quantizer vs compressed-tensors' compressor on the same tensors.

Builds a BF16 checkpoint with the Gemma 4 26B-A4B layout at full width (hidden 2816, 98 fused experts
of 704, dense MLP 2112, sliding q/k/v/o, and a full-attention k_eq_v layer without v_proj), written
directly as safetensors (≈1.27 GB per layer). Then, each in its own process so ru_maxrss is its own:

- ours:   `release.nvfp4.quantize_checkpoint(src, out)` end to end (read, quantize, write, fsync);
- oracle: compressed-tensors 0.20 `NVFP4PackedCompressor.compress` per module on the same weights
          (safetensors `get_slice` per expert, group global scales, calculate_qparams), output discarded.

Ours also runs on a checkpoint twice as large to show its peak RSS does not grow with size.
Prints MB/s of BF16 input, peak RSS, and the ratio ours/oracle in speed.

    python benchmarks/nvfp4.py [--layers 1] [--workdir /tmp] [--keep]

Goal: ratio ≥ 1 (at least as fast as the oracle) and our peak RSS < 2.5 GB at every size.
Temporary files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from release.prune.safetensors_header import TensorEntry, encode_header  # noqa: E402

HIDDEN, MOE_INTER, DENSE_INTER, EXPERTS, VOCAB = 2816, 704, 2112, 98, 4096
HEADS, KV, HEAD_DIM, GLOBAL_KV, GLOBAL_HEAD_DIM = 16, 8, 256, 2, 512


def layer_tensors(layer: int, full: bool) -> list[tuple[str, list[int]]]:
    p = f"model.language_model.layers.{layer}."
    attn = ([(p + "self_attn.q_proj.weight", [HEADS * GLOBAL_HEAD_DIM, HIDDEN]),
             (p + "self_attn.k_proj.weight", [GLOBAL_KV * GLOBAL_HEAD_DIM, HIDDEN]),
             (p + "self_attn.o_proj.weight", [HIDDEN, HEADS * GLOBAL_HEAD_DIM]),
             (p + "self_attn.q_norm.weight", [GLOBAL_HEAD_DIM]), (p + "self_attn.k_norm.weight", [GLOBAL_HEAD_DIM])]
            if full else
            [(p + "self_attn.q_proj.weight", [HEADS * HEAD_DIM, HIDDEN]),
             (p + "self_attn.k_proj.weight", [KV * HEAD_DIM, HIDDEN]),
             (p + "self_attn.v_proj.weight", [KV * HEAD_DIM, HIDDEN]),
             (p + "self_attn.o_proj.weight", [HIDDEN, HEADS * HEAD_DIM]),
             (p + "self_attn.q_norm.weight", [HEAD_DIM]), (p + "self_attn.k_norm.weight", [HEAD_DIM])])
    norms = ["input_layernorm", "post_attention_layernorm", "post_feedforward_layernorm",
             "post_feedforward_layernorm_1", "post_feedforward_layernorm_2", "pre_feedforward_layernorm",
             "pre_feedforward_layernorm_2"]
    return [*attn,
            (p + "experts.gate_up_proj", [EXPERTS, 2 * MOE_INTER, HIDDEN]),
            (p + "experts.down_proj", [EXPERTS, HIDDEN, MOE_INTER]),
            (p + "mlp.gate_proj.weight", [DENSE_INTER, HIDDEN]), (p + "mlp.up_proj.weight", [DENSE_INTER, HIDDEN]),
            (p + "mlp.down_proj.weight", [HIDDEN, DENSE_INTER]),
            (p + "router.proj.weight", [EXPERTS, HIDDEN]), (p + "router.per_expert_scale", [EXPERTS]),
            (p + "router.scale", [HIDDEN]), (p + "layer_scalar", [1]),
            *((p + n + ".weight", [HIDDEN]) for n in norms)]


def write_checkpoint(folder: Path, layers: int) -> int:
    """One shard per layer (plus embeddings), random N(0, 0.02) BF16; returns tensor bytes."""
    folder.mkdir(parents=True)
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    config = {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4",
              "tie_word_embeddings": True,
              "text_config": {"model_type": "gemma4_text", "hidden_size": HIDDEN, "intermediate_size": DENSE_INTER,
                              "moe_intermediate_size": MOE_INTER, "enable_moe_block": True,
                              "num_experts": EXPERTS, "top_k_experts": 8, "num_hidden_layers": layers,
                              "layer_types": layer_types, "num_attention_heads": HEADS,
                              "num_key_value_heads": KV, "head_dim": HEAD_DIM, "global_head_dim": GLOBAL_HEAD_DIM,
                              "num_global_key_value_heads": GLOBAL_KV, "attention_k_eq_v": True,
                              "vocab_size": VOCAB}}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    groups = [[("model.language_model.embed_tokens.weight", [VOCAB, HIDDEN]),
               ("model.language_model.norm.weight", [HIDDEN])]]
    groups += [layer_tensors(i, layer_types[i] == "full_attention") for i in range(layers)]
    gen = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    total = 0
    for i, tensors in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        entries, pos = [], 0
        for tname, shape in tensors:
            n = 2 * int(torch.Size(shape).numel())
            entries.append(TensorEntry(tname, "BF16", tuple(shape), pos, pos + n))
            pos += n
            weight_map[tname] = name
        header = encode_header(entries, '{"format":"pt"}')
        with open(folder / name, "wb") as fh:
            fh.write(header)
            for e in entries:
                numel = int(torch.Size(e.shape).numel())
                for start in range(0, numel, 1 << 26):  # 128 MB of bf16 at a time
                    k = min(1 << 26, numel - start)
                    fh.write((torch.randn(k, generator=gen) * 0.02).to(torch.bfloat16).view(torch.uint8).numpy())
        total += pos
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return total


OURS = """
import resource, sys, time
sys.path.insert(0, {root!r})
from release.nvfp4 import quantize_checkpoint
t = time.perf_counter()
r = quantize_checkpoint({src!r}, {out!r})
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, r.quantized_modules)
"""

ORACLE = """
import json, re, resource, time, torch
from pathlib import Path
from safetensors import safe_open
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.quantization import QuantizationScheme
from compressed_tensors.quantization.quant_scheme import NVFP4A16
from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
torch.set_num_threads({threads})
scheme = QuantizationScheme(targets=["Linear"], **NVFP4A16)
src = Path({src!r})
index = json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]

def compress(ws):
    amax = torch.stack([w.abs().amax() for w in ws]).amax().reshape(1)
    gs = generate_gparam(-amax, amax)
    for w in ws:
        b = w.reshape(w.shape[0], -1, 16)
        s, _ = calculate_qparams(b.amin(-1), b.amax(-1), scheme.weights, global_scale=gs)
        NVFP4PackedCompressor.compress({{"weight": w, "weight_scale": s, "weight_global_scale": gs}}, scheme)

t = time.perf_counter()
n = 0
for shard in sorted(set(index.values())):
    with safe_open(src / shard, "pt") as f:
        names = list(f.keys())
        layers = sorted({{m.group(1) for k in names if (m := re.match(r"(.*layers\\.\\d+\\.)", k))}})
        for p in layers:
            qkv = [f.get_tensor(p + f"self_attn.{{x}}_proj.weight") for x in "qkv"
                   if p + f"self_attn.{{x}}_proj.weight" in names]
            compress(qkv); compress([f.get_tensor(p + "self_attn.o_proj.weight")])
            compress([f.get_tensor(p + "mlp.gate_proj.weight"), f.get_tensor(p + "mlp.up_proj.weight")])
            compress([f.get_tensor(p + "mlp.down_proj.weight")])
            gu, dn = f.get_slice(p + "experts.gate_up_proj"), f.get_slice(p + "experts.down_proj")
            for e in range(gu.get_shape()[0]):
                w = gu[e]
                half = w.shape[0] // 2
                compress([w[:half], w[half:]]); compress([dn[e]])
                n += 3
            n += len(qkv) + 4
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, n)
"""


def run(code: str) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    seconds, rss, modules = out.split()[-3:]
    return float(seconds), int(rss), int(modules)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1, help="layers of the oracle-compared checkpoint")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--oracle-threads", type=int, default=1,
                    help="torch threads for the oracle (1: OpenMP spin-waits make 2 slower on a shared box)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nvfp4-bench-", dir=args.workdir))
    try:
        small, big = work / "small", work / "big"
        size = write_checkpoint(small, args.layers)
        big_size = write_checkpoint(big, 2 * args.layers)
        print(f"checkpoints: {size / 1e9:.2f} GB ({args.layers} layer(s)), {big_size / 1e9:.2f} GB; "
              f"98 experts at 26B widths, BF16")
        results = {}
        for label, code, n in (
            ("ours", OURS.format(root=str(ROOT), src=str(small), out=str(work / "out-small")), size),
            ("oracle", ORACLE.format(src=str(small), threads=args.oracle_threads), size),
            ("ours (2× size)", OURS.format(root=str(ROOT), src=str(big), out=str(work / "out-big")), big_size),
        ):
            seconds, rss, modules = run(code)
            results[label] = (seconds, rss)
            print(f"{label:15s} {n / seconds / 1e6:8.1f} MB/s  {seconds:7.1f} s  peak RSS {rss / 1e9:5.2f} GB  "
                  f"{modules} modules")
        ratio = results["oracle"][0] / results["ours"][0]
        print(f"speed ratio ours / compressed-tensors compressor: {ratio:.2f}× "
              f"(goal ≥ 1; ours includes reading and writing the checkpoint, the oracle only computes)")
        print(f"peak RSS ours: {results['ours'][1] / 1e9:.2f} GB at {size / 1e9:.2f} GB, "
              f"{results['ours (2× size)'][1] / 1e9:.2f} GB at {big_size / 1e9:.2f} GB (goal < 2.5 GB, flat)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
