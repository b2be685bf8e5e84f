"""Which tensors become NVFP4, how they group, and what the output checkpoint holds — from names,
shapes and dtypes alone, so `plan` can size the artifact and the builder can stream it.

Selection rules (docs/nvfp4.md §3–§6):
- Quantized: 2-D `<m>.weight` of decoder-layer linears named q/k/v/o_proj, gate/up/down_proj or
  w1/w2/w3 (Mixtral experts), and fused 3-D Gemma-4 style experts (`experts.gate_up_proj`
  [E, 2I, H], `experts.down_proj` [E, H, I]) split per expert.
- Everything else stays byte-for-byte: routers, embeddings, lm_head, norms, vision/audio towers,
  per-expert scales, biases, unknown linears. Every kept 2-D linear weight is listed in `ignore`,
  because vLLM treats a `Linear` target that is not ignored as quantized and fails to load BF16.
- Fusion groups share one global scale: q/k/v of one attention block (whichever exist — Gemma-4
  full-attention k_eq_v layers have no v_proj), gate/up of one MLP or expert. vLLM fuses these
  shards and keeps only max()/the first of their global scales, so unshared scales would
  dequantize the other shards wrongly.
- "Units" are all-or-nothing (vLLM refuses a fused layer with some shards ignored, and one MoE
  layer has one quant method): a q/k/v group, a gate/up group, a lone linear, or all experts of
  one MoE layer. If any member is excluded (user regex, input dim % 16, option), the unit is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

GROUP = 16  # elements per block scale (numerics computes them; this module only counts)

QUANTIZABLE_DTYPES = {"BF16", "F32"}
_ATTN = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "o_proj": None}
_MLP = {"gate_proj": "gate_up", "up_proj": "gate_up", "down_proj": None,
        "w1": "gate_up", "w3": "gate_up", "w2": None}
_TOWERS = re.compile(r"(^|\.)(vision_tower|audio_tower|vision_model|visual|embed_vision|embed_audio|"
                     r"multi_modal_projector|mm_projector|vision_embed)(\.|$)")
_DECODER_LAYER = re.compile(r"(^|\.)layers\.\d+\.")
_EXPERT = re.compile(r"^(?P<container>.*\.experts)\.(?P<e>\d+)\.(?P<leaf>[^.]+)$")
_FUSED = re.compile(r"^(?P<container>.*\.experts)\.(?P<kind>gate_up_proj|down_proj)$")
_EMBEDDING_LEAVES = {"embed_tokens", "embed_tokens_per_layer", "embeddings", "embedding", "wte", "wpe",
                     "word_embeddings", "position_embeddings", "token_type_embeddings"}

DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


@dataclass(frozen=True)
class SrcTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str = ""  # shard file name (empty when sized from a config)
    begin: int = 0  # absolute byte offset in `file`
    order: int = 0  # position in reading order (shard, offset)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES.get(self.dtype, 0)


@dataclass(frozen=True)
class Member:
    """One quantized linear: an output module name and where its [out, in] weight comes from."""

    module: str
    src: SrcTensor
    expert: int | None  # index into dim 0 of a fused 3-D tensor
    row0: int  # rows [row0, row1) of the (expert's) 2-D matrix
    row1: int
    in_features: int

    @property
    def out_features(self) -> int:
        return self.row1 - self.row0

    @property
    def src_offset(self) -> int:
        """Absolute byte offset of this member's first element in the source file."""
        item = DTYPE_BYTES[self.src.dtype]
        per_expert = math.prod(self.src.shape[1:]) * item if self.expert is not None else 0
        return self.src.begin + (self.expert or 0) * per_expert + self.row0 * self.in_features * item

    @property
    def nbytes(self) -> int:
        return self.out_features * self.in_features * DTYPE_BYTES[self.src.dtype]

    @property
    def label(self) -> str:
        """How a person finds these values in the source checkpoint."""
        if self.expert is None:
            return self.src.name
        return f"{self.src.name}[{self.expert}, {self.row0}:{self.row1}]"


@dataclass
class QuantGroup:
    """Linears sharing one global scale."""

    members: list[Member]
    order: int = 0


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


@dataclass
class Plan:
    groups: list[QuantGroup]
    passthrough: list[SrcTensor]
    ignore: list[str]
    kept_linears: list[str]  # 2-D linear weights kept BF16 (module names); a subset of `ignore`
    notes: list[str] = field(default_factory=list)  # why units were kept (for the build log)

    @property
    def quantized_modules(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def work(self) -> list[QuantGroup | SrcTensor]:
        """Groups and passthrough tensors in source reading order."""
        items: list[QuantGroup | SrcTensor] = [*self.groups, *self.passthrough]
        return sorted(items, key=lambda it: it.order)

    def outputs_of(self, item: QuantGroup | SrcTensor) -> list[OutTensor]:
        if isinstance(item, SrcTensor):
            return [OutTensor(item.name, item.dtype, item.shape)]
        out: list[OutTensor] = []
        for m in item.members:
            out.extend(module_outputs(m.module, m.out_features, m.in_features))
        return out


def module_outputs(module: str, out_features: int, in_features: int) -> list[OutTensor]:
    """compressed-tensors `nvfp4-pack-quantized` tensors of one weight-only module (no input scale)."""
    return [OutTensor(f"{module}.weight_packed", "U8", (out_features, in_features // 2)),
            OutTensor(f"{module}.weight_scale", "F8_E4M3", (out_features, in_features // GROUP)),
            OutTensor(f"{module}.weight_global_scale", "F32", (1,))]


@dataclass
class _Unit:
    key: str
    category: str  # "attention" | "dense_mlp" | "experts"
    groups: list[QuantGroup]
    sources: list[SrcTensor]
    extra_ignore: list[str] = field(default_factory=list)  # names vLLM checks that have no tensor
    by_key: dict[str, QuantGroup] = field(default_factory=dict)


def make_plan(tensors: Sequence[SrcTensor], config: dict[str, Any], *, ignore: Sequence[str] = (),
              quantize_attention: bool = True, quantize_dense_mlp: bool = True,
              config_file: str = "config.json") -> Plan:
    patterns = []
    for i, pat in enumerate(ignore):
        try:
            patterns.append(re.compile(pat))
        except re.error as exc:
            raise InputError(f"not a regular expression: {exc}", file="release.toml",
                             field=f"nvfp4.ignore[{i}]") from exc
    hidden = _hidden_size(config)
    units: dict[str, _Unit] = {}
    claimed: set[str] = set()
    by_name = {t.name: t for t in tensors}

    for t in tensors:
        if _TOWERS.search(t.name) or not _DECODER_LAYER.search(t.name):
            continue
        fused = _FUSED.match(t.name)
        if fused and len(t.shape) == 3:
            _add_fused(t, fused["container"], fused["kind"], by_name, hidden, units, config_file)
            claimed.add(t.name)
            continue
        if not t.name.endswith(".weight") or len(t.shape) != 2:
            continue
        module = t.name[: -len(".weight")]
        parent, _, leaf = module.rpartition(".")
        expert = _EXPERT.match(module)
        if expert and expert["leaf"] in _MLP:
            category, fusion, key = "experts", _MLP[expert["leaf"]], expert["container"]
            gkey = f"{parent}:{fusion or leaf}"
        elif leaf in _ATTN:
            category, fusion = "attention", _ATTN[leaf]
            key = gkey = f"{parent}:{fusion or leaf}"
        elif leaf in _MLP:
            category, fusion = "dense_mlp", _MLP[leaf]
            key = gkey = f"{parent}:{fusion or leaf}"
        else:
            continue
        unit = units.setdefault(key, _Unit(key, category, [], []))
        group = unit.by_key.get(gkey)
        if group is None:
            group = unit.by_key[gkey] = QuantGroup([])
            unit.groups.append(group)
        group.members.append(Member(module, t, None, 0, t.shape[0], t.shape[1]))
        unit.sources.append(t)
        claimed.add(t.name)

    groups: list[QuantGroup] = []
    kept: list[str] = []
    extra: list[str] = []
    notes: list[str] = []
    passthrough_names: set[str] = set()
    for unit in units.values():
        if unit.category == "attention":
            _note_k_eq_v(unit)
        reason = _keep_reason(unit, patterns, quantize_attention, quantize_dense_mlp)
        if reason is None:
            for m in (m for g in unit.groups for m in g.members):
                if m.src.dtype not in QUANTIZABLE_DTYPES:
                    raise InputError(f"{m.src.dtype} weight: only BF16 and F32 checkpoints are quantized "
                                     "(compressed-tensors' numerics depend on the dtype)",
                                     file=m.src.file or config_file, field=m.src.name)
            groups.extend(unit.groups)
            continue
        notes.append(f"{unit.key.split(':')[0]}: kept BF16 ({reason})")
        passthrough_names.update(s.name for s in unit.sources)
        kept.extend(m.module for g in unit.groups for m in g.members)
        extra.extend(unit.extra_ignore)
        if unit.category == "experts":
            extra.append(unit.key)  # vLLM asks about the FusedMoE layer by its container name

    for g in groups:
        g.members.sort(key=lambda m: (m.src.order, m.expert or 0, m.row0))
        g.order = min(m.src.order * 1_000_000 + (m.expert or 0) for m in g.members)
    passthrough = [t for t in tensors if t.name not in claimed or t.name in passthrough_names]
    passthrough = [SrcTensor(t.name, t.dtype, t.shape, t.file, t.begin, t.order * 1_000_000)
                   for t in passthrough]
    for t in passthrough:
        module, _, suffix = t.name.rpartition(".")
        if (suffix == "weight" and len(t.shape) == 2 and module.rpartition(".")[2] not in _EMBEDDING_LEAVES
                and module not in kept):
            kept.append(module)
    # llm-compressor also lists Gemma-4's router wrapper module; harmless, and keeps configs comparable
    extra.extend(m[: -len(".proj")] for m in kept if m.endswith(".router.proj"))
    names = kept + extra
    if "lm_head" not in names:
        names.append("lm_head")  # tied heads have no tensor, but vLLM builds the module
    ignore_list = sorted(dict.fromkeys(names), key=_natural)
    return Plan(groups=groups, passthrough=passthrough, ignore=ignore_list,
                kept_linears=sorted(dict.fromkeys(kept), key=_natural), notes=notes)


def _add_fused(t: SrcTensor, container: str, kind: str, by_name: dict[str, SrcTensor], hidden: int | None,
               units: dict[str, _Unit], config_file: str) -> None:
    # Input: transformers v5 stores Gemma-4 experts as nn.Linear-oriented stacks: gate_up_proj
    # [E, 2I, H] (gate = first I rows), down_proj [E, H, I]. Other orientations (gpt-oss [E, H, 2I],
    # interleaved) would quantize along the wrong axis, so they are refused rather than guessed.
    # Output: one module per expert, `experts.{e}.gate_proj|up_proj|down_proj.weight_packed/_scale/
    # _global_scale` — the per-expert names vLLM's compressed-tensors MoE loader maps into its
    # w13/w2 stacks (fused_moe expert params mapping), the layout llm-compressor's oneshot writes for
    # Gemma 4 (byte-identical on tiny models, docs/nvfp4.md §8) and every quantized Gemma-4 checkpoint in the
    # wild uses. vLLM also accepts fused 3-D names, but no compressed-tensors tool writes packed
    # 3-D experts, so that path is the less travelled one; per-expert scales also give each expert's
    # gate/up the shared global scale vLLM assumes (it keeps w1's for w3).
    e_count, rows, cols = t.shape
    ok = hidden is None or (cols == hidden if kind == "gate_up_proj" else rows == hidden)
    if kind == "gate_up_proj":
        ok = ok and rows % 2 == 0
        partner = by_name.get(f"{container}.down_proj")
        ok = ok and (partner is None or (len(partner.shape) == 3 and partner.shape[2] * 2 == rows))
    if not ok:
        raise InputError(f"fused expert tensor {list(t.shape)} is not in the [experts, out, in] layout "
                         f"(gate_up_proj [E, 2·I, hidden={hidden}], down_proj [E, hidden, I]); "
                         "this layout is not supported for NVFP4", file=t.file or config_file, field=t.name)
    unit = units.setdefault(container, _Unit(container, "experts", [], []))
    unit.sources.append(t)
    for e in range(e_count):
        if kind == "gate_up_proj":
            half = rows // 2
            unit.groups.append(QuantGroup([
                Member(f"{container}.{e}.gate_proj", t, e, 0, half, cols),
                Member(f"{container}.{e}.up_proj", t, e, half, rows, cols)]))
        else:
            unit.groups.append(QuantGroup([Member(f"{container}.{e}.down_proj", t, e, 0, rows, cols)]))


def fusion_key(module: str) -> str:
    """Modules with equal keys share one global scale (q/k/v of a block; gate/up of an MLP or expert)."""
    parent, _, leaf = module.rpartition(".")
    fusion = _ATTN.get(leaf) or _MLP.get(leaf)
    return f"{parent}:{fusion}" if fusion else module


def _note_k_eq_v(unit: _Unit) -> None:
    # vLLM builds q/k/v as one fused layer even where the checkpoint has no v_proj (Gemma-4 k_eq_v
    # loads K into the V shard); if the layer stays BF16, its v shard must be ignored as well.
    for g in unit.groups:
        leaves = {m.module.rpartition(".")[2]: m.module for m in g.members}
        if "q_proj" in leaves and "k_proj" in leaves and "v_proj" not in leaves:
            unit.extra_ignore.append(leaves["k_proj"].rpartition(".")[0] + ".v_proj")


def _keep_reason(unit: _Unit, patterns: list[re.Pattern[str]], quantize_attention: bool,
                 quantize_dense_mlp: bool) -> str | None:
    if unit.category == "attention" and not quantize_attention:
        return "quantize_attention = false"
    if unit.category == "dense_mlp" and not quantize_dense_mlp:
        return "quantize_dense_mlp = false"
    members = [m for g in unit.groups for m in g.members]
    odd = next((m for m in members if m.in_features % GROUP), None)
    if odd is not None:
        return f"input dim {odd.in_features} of {odd.module} is not a multiple of {GROUP}"
    names = [m.module for m in members] + ([unit.key] if unit.category == "experts" else [])
    for pat in patterns:
        hit = next((n for n in names if pat.search(n)), None)
        if hit is not None:
            return f"ignore pattern {pat.pattern!r} matches {hit}"
    return None


def _hidden_size(config: dict[str, Any]) -> int | None:
    for sub in ("text_config", "language_config", "llm_config"):
        if isinstance(config.get(sub), dict) and isinstance(config[sub].get("hidden_size"), int):
            return int(config[sub]["hidden_size"])
    value = config.get("hidden_size")
    return int(value) if isinstance(value, int) else None


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
