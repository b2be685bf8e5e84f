"""What a job costs, the numbers behind `release plan --matrix`: the throughputs of a hosted runner and
each step's share of a job's time and memory, from the planned sizes.

Each kind says what its artifacts cost (`Kind.cost`, release/kinds/) with the helpers here; the job planner
(release/distributed/jobs.py) sums the shares of a job's artifacts. The throughputs are assumptions, stated
so a reader can redo them, not measurements of any particular runner.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import BASE, Context
from .estimate import census
from .gguf.checks import release_tensors, tier_recipe
from .quality.estimate import StreamedPass, libllama_pass_bytes, planned_tokens, vocab_size

GB = 1e9
# Throughputs behind the hours column (bytes/s unless noted), for a GitHub-hosted runner.
DOWNLOAD_BPS = 150e6  # Hub → runner
UPLOAD_BPS = 60e6  # runner → Hub
PRUNE_BPS = 500e6  # streaming byte-range copy: disk bound (measured 0.4–0.7× `cp -r`)
CONVERT_BPS = 150e6  # convert_hf_to_gguf.py, BF16 safetensors → F16 GGUF
NVFP4_BPS = 160e6  # release/nvfp4 on 2 cores (benchmarks/nvfp4.py); more cores go faster
# llama.cpp decoding a window of held-out text (a quality measurement): ≈56 GFLOP/s per core measured on the
# 0.76B MoE of `benchmarks/quality.py --medium` (2 cores; 2 FLOPs per active parameter per token).
DECODE_FLOPS_PER_CORE = 50e9
# transformers on CPU, layer by layer (the importance matrix in float32, the NVFP4 quality passes), 2 FLOPs
# per active parameter per token: `benchmarks/quality.py --memory` measured 8.2 GFLOP/s per core on the 26B-A4B
# layer set, reading and loading included, on a 2-core VM shared with other jobs; an idle runner core does more.
TORCH_FLOPS_PER_CORE = 10e9
READ_BPS = 500e6  # reading a checkpoint from the runner's disk: a streamed pass, a mapped model read again
CORES = {"standard": 4, "large": 16}
RAM_GB = {"standard": 16, "large": 64}
# Usable disk: a standard runner has 107–122 GiB free after the workflow's free-disk step (84–90 before).
DISK_GB = {"standard": 100, "large": 250}
OVERHEAD_GB = 2.0  # the venv, the llama.cpp build, logs
IMATRIX_CHUNK_TOKENS = 512

DROPMAP_TOKENS_PER_S = {"gpu": 2000.0, "standard": 20.0}  # 26B-A4B, layer-streamed (benchmarks/dropmap.py)

@dataclass(frozen=True)
class Cost:
    """One artifact's share of its job: what `jobs._estimate` adds up (seconds and bytes) or takes the
    largest of (memory)."""

    serial_s: float = 0.0  # seconds that do not spread over cores (reading, pruning, conversion, a GPU pass)
    cpu_s: float = 0.0  # core-seconds (quantizing, the imatrix, measurements): spread over the runner's cores
    ram_gb: float = 0.0  # peak memory of its step
    disk: float = 0.0  # bytes beyond its own files (e.g. an unsplit conversion beside its shards)


def artifact_size(ctx: Context, artifact_id: str) -> int | None:
    if artifact_id == BASE:
        return base_size(ctx)
    a = ctx.artifacts[artifact_id]
    return a.size or a.facts.get("size")


def base_size(ctx: Context) -> int | None:
    total = census(ctx.release).base_total
    return total * 2 if total else None  # BF16 weights


def quantize_cost(ctx: Context, artifact_id: str) -> float:
    """CPU-seconds to quantize a tier: llama.cpp's per-type cost × the baseline's size."""
    from .gguf.build import tier_cost  # lazy: numpy at start-up

    a = ctx.artifacts[artifact_id]
    g = ctx.release.definition.gguf
    if a.kind != "gguf" or g is None:
        return 0.0
    baseline = artifact_size(ctx, f"gguf:{g.baseline}") or 0
    return tier_cost(tier_recipe(ctx.release, artifact_id.split(":", 1)[1])) * baseline / GB


def active_parameters(ctx: Context, *, embeddings: bool = True) -> int:
    """Parameters a token passes through: all but the experts it is not routed to (and, without
    `embeddings`, but the embedding: a pass that ends before the output projection)."""

    c = census(ctx.release)
    total = c.pruned_total or 0
    top_k = ctx.release.family.top_k(ctx.release.base_config)
    active = max(total - c.per_expert * c.moe_layers * max(c.experts_after - top_k, 0), 0)
    return active if embeddings else max(active - c.embedding, 0)


def streamed_pass(ctx: Context, tokens: int, *, compute_bytes: int, head: bool = False):  # type: ignore[no-untyped-def]
    """A layer-streamed pass over the pruned checkpoint (release.quality.estimate.StreamedPass): the largest
    decoder layer from the GGUF tensor list when the family has one, else the text parameters per layer."""

    c = census(ctx.release)
    cfg = ctx.release.family.text_config(ctx.release.base_config)
    hidden = int(cfg.get("hidden_size") or 0)
    if c.gguf_tensors:
        per_layer: dict[str, int] = {}
        for t in c.gguf_tensors:
            if t.name.startswith("blk."):
                block = t.name.split(".", 2)[1]
                per_layer[block] = per_layer.get(block, 0) + t.n_elements
        layer = max(per_layer.values(), default=0)
    else:
        layers = int(cfg.get("num_hidden_layers") or 1)
        layer = max((c.pruned_total or 0) - c.embedding, 0) // max(layers, 1)
    q = ctx.release.quality
    logits = q.context * vocab_size(ctx.release) if head and q is not None else 0
    return StreamedPass(layer, c.embedding, hidden, tokens, compute_bytes, patched=head, logits=logits)


def calibration_tokens(ctx: Context) -> int:
    """Calibration tokens of a derived drop map: ≈4 bytes of text a token, capped per sample."""
    d = ctx.release.definition.dropmap
    if d is None:
        return 0
    folder = ctx.release.path(d.calibration)
    total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0
    return total // 4


def windows(ctx: Context) -> int:

    q = ctx.release.quality
    return planned_tokens(ctx.release)[0] // q.context if q is not None else 0


def measure_cost(ctx: Context, artifact_id: str) -> float:
    """CPU-seconds of a quality measurement: forward passes over the held-out windows (2 FLOPs per active
    parameter per token) — one for a GGUF file in llama.cpp, two (BF16, then dequantized NVFP4) in
    transformers for NVFP4."""

    if ctx.artifacts[artifact_id].kind != "quality":
        return 0.0
    decoded = planned_tokens(ctx.release)[0]
    flops = 2 * active_parameters(ctx) * decoded
    if artifact_id == "quality:nvfp4":
        return 2 * flops / TORCH_FLOPS_PER_CORE
    return flops / DECODE_FLOPS_PER_CORE


def mapped_model_gb(ctx: Context, artifact_id: str) -> float:
    """GB of the GGUF file a libllama measurement maps (0 for NVFP4's, which streams the BF16 checkpoint)."""
    a = ctx.artifacts[artifact_id]
    if artifact_id == "quality:nvfp4":
        return 0.0
    source = a.needs[0] if a.needs else ""
    return (artifact_size(ctx, source) or 0) / GB if source in ctx.artifacts else 0.0


def measure_ram_gb(ctx: Context, artifact_id: str) -> float:
    """Peak memory of a quality measurement (release.quality.estimate): NVFP4's two layer-streamed passes over
    the held-out windows (float32 below FLOAT32_MAX_BYTES of BF16, else bfloat16), or libllama decoding them."""
    from .quality.nvfp4 import FLOAT32_MAX_BYTES  # lazy: numpy at start-up

    q = ctx.release.quality
    if q is None:
        return 0.0
    if artifact_id == "quality:nvfp4":
        bf16 = artifact_size(ctx, "bf16") or 0
        decoded = planned_tokens(ctx.release)[0]
        compute = 4 if bf16 <= FLOAT32_MAX_BYTES else 2
        return streamed_pass(ctx, decoded, compute_bytes=compute, head=True).peak_bytes() / GB
    return libllama_pass_bytes(q.context, vocab_size(ctx.release)) / GB


def quantize_ram_gb(ctx: Context) -> float:
    from .gguf.build import quantize_memory  # lazy: numpy at start-up

    tensors = release_tensors(ctx.release)
    g = ctx.release.definition.gguf
    baseline = (artifact_size(ctx, f"gguf:{g.baseline}") or 0) if g else 0
    # The sweep runs at most two quantizers at once within a job (--jobs 2).
    return 2 * quantize_memory(tensors, baseline) / GB + 0.5
