"""Benchmark: streaming expert pruning vs `cp -r` of the same checkpoint, measured in the same run.

Builds a ≥1.5 GB checkpoint with the Gemma 4 tensor layout (names, fused experts at dim 0, BF16), written
directly as safetensors — no model is instantiated — then, with a warm page cache, alternates
`cp -r SRC DST` and `release.prune.prune_checkpoint` (128 → 98 experts in every layer), each in its own
process so that its peak RSS (ru_maxrss) is its own. Prints medians and the ratio prune / cp.

    python benchmarks/prune.py [--reps 5] [--workdir /tmp] [--keep]

Goal: ratio ≤ 1.1 and prune peak RSS ≤ 64 MB. Temporary files are deleted at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from release.prune.safetensors_header import TensorEntry, encode_header  # noqa: E402

# Gemma 4 layout scaled down in width (docs/moe-pruning.md §7): 4 layers of 128 fused experts, BF16.
HIDDEN, MOE_INTER, DENSE_INTER, EXPERTS, TOP_K, LAYERS, VOCAB = 1024, 512, 2048, 128, 8, 4, 32000
HEADS, KV_HEADS, HEAD_DIM = 8, 4, 128
KEEP = 98
BF16 = 2
GNU_TIME = Path("/usr/bin/time").exists()


def layer_tensors(layer: int) -> list[tuple[str, list[int]]]:
    p = f"model.language_model.layers.{layer}."
    full = layer == LAYERS - 1  # last layer full attention, as in Gemma 4's (5 sliding + 1 full) pattern
    q = HEADS * HEAD_DIM * (2 if full else 1)
    kv = KV_HEADS * HEAD_DIM
    out = [
        (p + "experts.down_proj", [EXPERTS, HIDDEN, MOE_INTER]),
        (p + "experts.gate_up_proj", [EXPERTS, 2 * MOE_INTER, HIDDEN]),
        (p + "input_layernorm.weight", [HIDDEN]),
        (p + "layer_scalar", [1]),
        (p + "mlp.down_proj.weight", [HIDDEN, DENSE_INTER]),
        (p + "mlp.gate_proj.weight", [DENSE_INTER, HIDDEN]),
        (p + "mlp.up_proj.weight", [DENSE_INTER, HIDDEN]),
        (p + "post_attention_layernorm.weight", [HIDDEN]),
        (p + "post_feedforward_layernorm.weight", [HIDDEN]),
        (p + "post_feedforward_layernorm_1.weight", [HIDDEN]),
        (p + "post_feedforward_layernorm_2.weight", [HIDDEN]),
        (p + "pre_feedforward_layernorm.weight", [HIDDEN]),
        (p + "pre_feedforward_layernorm_2.weight", [HIDDEN]),
        (p + "router.per_expert_scale", [EXPERTS]),
        (p + "router.proj.weight", [EXPERTS, HIDDEN]),
        (p + "router.scale", [HIDDEN]),
        (p + "self_attn.k_norm.weight", [HEAD_DIM]),
        (p + "self_attn.k_proj.weight", [kv, HIDDEN]),
        (p + "self_attn.o_proj.weight", [HIDDEN, q]),
        (p + "self_attn.q_norm.weight", [HEAD_DIM]),
        (p + "self_attn.q_proj.weight", [q, HIDDEN]),
    ]
    if not full:  # attention_k_eq_v: full-attention layers have no v_proj
        out.append((p + "self_attn.v_proj.weight", [kv, HIDDEN]))
    return out


def write_shard(path: Path, tensors: list[tuple[str, list[int]]], block: bytes) -> int:
    entries, pos = [], 0
    for name, shape in tensors:
        n = BF16
        for d in shape:
            n *= d
        entries.append(TensorEntry(name, "BF16", tuple(shape), pos, pos + n))
        pos += n
    header = encode_header(entries, '{"format":"pt"}')
    with open(path, "wb") as fh:
        fh.write(header)
        left = pos
        while left:
            chunk = block[: min(len(block), left)]
            fh.write(chunk)
            left -= len(chunk)
    return pos


def build_checkpoint(root: Path) -> tuple[Path, int]:
    """Gemma 4-layout checkpoint, one decoder layer per shard (+ embeddings in the first). → (dir, bytes)."""
    src = root / "base"
    src.mkdir(parents=True)
    block = random.Random(0).randbytes(64 << 20)  # incompressible, the content is irrelevant to copying
    shards = [[("model.language_model.embed_tokens.weight", [VOCAB, HIDDEN]),
               ("model.language_model.norm.weight", [HIDDEN]), *layer_tensors(0)]]
    shards += [layer_tensors(i) for i in range(1, LAYERS)]
    weight_map, total, params = {}, 0, 0
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(src / name, tensors, block)
        for t, _ in tensors:
            weight_map[t] = name
    params = total // BF16
    index = {"metadata": {"total_parameters": params, "total_size": total},
             "weight_map": dict(sorted(weight_map.items()))}
    (src / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config = {
        "architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "dtype": "bfloat16",
        "text_config": {
            "model_type": "gemma4_text", "hidden_size": HIDDEN, "intermediate_size": DENSE_INTER,
            "moe_intermediate_size": MOE_INTER, "num_experts": EXPERTS, "top_k_experts": TOP_K,
            "enable_moe_block": True, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "global_head_dim": 2 * HEAD_DIM,
            "vocab_size": VOCAB, "attention_k_eq_v": True, "tie_word_embeddings": True,
        },
        "vision_config": None,
    }
    (src / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (src / "tokenizer_config.json").write_text("{}\n")
    return src, total


def drop_map_file(root: Path) -> Path:
    rng = random.Random(1)
    drop = {str(layer): sorted(rng.sample(range(EXPERTS), EXPERTS - KEEP)) for layer in range(LAYERS)}
    path = root / "dropmap.json"
    path.write_text(json.dumps({"format": "moe-drop-map/1", "base": "bench/gemma4-layout", "num_experts": EXPERTS,
                                "drop": drop}))
    return path


def run(cmd: list[str], scratch: Path) -> tuple[float, float, int]:
    """(wall seconds, wall + sync seconds, peak RSS bytes) of one command in its own process.

    Peak RSS comes from GNU time's report on its child: a child forked straight from this (large) Python
    process would inherit our RSS high-water mark through fork/exec and report it as its own.
    """
    report = scratch / "maxrss"
    wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(report), *cmd] if GNU_TIME else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapped, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{cmd[0]} failed with status {os.waitstatus_to_exitcode(status)}")
    os.sync()  # the copy is only done when it is on disk; both commands pay for their own write-back
    total = time.perf_counter() - t0
    rss_kb = int(report.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return wall, total, rss_kb * 1024


def warm(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


PRUNE = """
import sys
from pathlib import Path
from release.prune import prune_checkpoint
from release.spec.dropmap import load_drop_map
prune_checkpoint(Path(sys.argv[1]), load_drop_map(Path(sys.argv[2])), Path(sys.argv[3]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="prune-bench-", dir=args.workdir))
    try:
        t = time.perf_counter()
        src, total = build_checkpoint(root)
        dm = drop_map_file(root)
        os.sync()
        print(f"checkpoint: {total / 1e9:.3f} GB of tensors in {len(list(src.glob('*.safetensors')))} shards, "
              f"built in {time.perf_counter() - t:.1f}s; pruning {EXPERTS} → {KEEP} experts in {LAYERS} layers")
        cp_dst, pr_dst = root / "cp", root / "pruned"
        results: dict[str, list[tuple[float, float, int]]] = {"cp -r": [], "prune": []}
        for rep in range(args.reps):
            for label in ("cp -r", "prune") if rep % 2 == 0 else ("prune", "cp -r"):
                for d in (cp_dst, pr_dst):
                    shutil.rmtree(d, ignore_errors=True)
                os.sync()
                warm(src)
                cmd = ["cp", "-r", str(src), str(cp_dst)] if label == "cp -r" else \
                    [sys.executable, "-c", PRUNE, str(src), str(dm), str(pr_dst)]
                results[label].append(run(cmd, root))
        out_bytes = sum(p.stat().st_size for p in pr_dst.glob("*.safetensors"))

        print(f"{'':8} {'wall s':>8} {'+sync s':>8} {'min–max (+sync)':>16} {'peak RSS':>10}   "
              f"(medians of {args.reps}{'' if GNU_TIME else '; RSS includes this process: no /usr/bin/time'})")
        med = {}
        for label, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            total_s = statistics.median(r[1] for r in rows)
            rss = max(r[2] for r in rows)
            med[label] = (wall, total_s, rss)
            lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
            print(f"{label:8} {wall:8.2f} {total_s:8.2f} {lo:7.2f}–{hi:<7.2f} {rss / 2**20:8.1f} MB")
        print(f"bytes: in {total / 1e9:.3f} GB, pruned shards {out_bytes / 1e9:.3f} GB "
              f"({out_bytes / total:.1%} of input)")
        ratio = med["prune"][1] / med["cp -r"][1]
        ratio_wall = med["prune"][0] / med["cp -r"][0]
        rss_mb = med["prune"][2] / 2**20
        print(f"ratio prune / cp -r: {ratio:.2f} (wall+sync), {ratio_wall:.2f} (wall only)   goal ≤ 1.10 "
              f"{'OK' if ratio <= 1.1 else 'MISSED'}")
        print(f"prune peak RSS: {rss_mb:.1f} MB   goal ≤ 64 MB {'OK' if rss_mb <= 64 else 'MISSED'}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
