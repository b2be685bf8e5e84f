"""What each output shard contains and which source bytes it is made of.

Output shards map 1:1 to input shards, tensors keep their order, so a shard's data is a sequence of
source byte ranges. Fused expert tensors contribute the rows of kept experts (runs of consecutive kept
experts become one range); per-expert tensors are dropped or renamed. Ranges that touch in both source
and output are merged, so an identity prune is a single range per shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec.dropmap import DropMap
from .checkpoint import CheckpointInfo
from .safetensors_header import ShardHeader, TensorEntry, encode_header


@dataclass
class ShardPlan:
    source: ShardHeader
    entries: list[TensorEntry] = field(default_factory=list)  # output tensors, data-offset order
    # (src offset, dst offset, length), absolute file offsets
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    header: bytes = b""
    renamed: dict[str, str] = field(default_factory=dict)  # old name → new name (renumbered experts)
    dropped: list[str] = field(default_factory=list)
    removed_elements: int = 0

    @property
    def name(self) -> str:
        return self.source.file

    @property
    def data_len(self) -> int:
        return self.entries[-1].end if self.entries else 0

    @property
    def size(self) -> int:
        return len(self.header) + self.data_len

    @property
    def written(self) -> bool:
        """False for a shard whose every tensor was removed (an MTP-only shard): no empty file is written."""
        return bool(self.entries) or not self.source.entries


def kept_runs(kept: tuple[int, ...]) -> list[tuple[int, int]]:
    """Maximal runs [first, last+1) of consecutive expert indices (kept is ascending)."""
    runs: list[tuple[int, int]] = []
    for j in kept:
        if runs and runs[-1][1] == j:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((j, j + 1))
    return runs


def renumbering(drop_map: DropMap) -> dict[int, dict[int, int]]:
    """layer → {old expert index: new index} (per-expert layouts can have ~10^5 tensors to look up)."""
    return {layer: {j: i for i, j in enumerate(keep)} for layer, keep in drop_map.kept.items()}


def plan_shard(info: CheckpointInfo, shard: ShardHeader, drop_map: DropMap,
               remove: frozenset[str] = frozenset(), renumber: dict[int, dict[int, int]] | None = None) -> ShardPlan:
    """The output of one shard; tensors named in `remove` are left out entirely (MTP block on request)."""
    plan = ShardPlan(shard)
    pieces: list[tuple[int, int]] = []  # (src offset relative to data, length), in output order
    position = 0
    n_experts = info.num_experts
    renumber = renumber if renumber is not None else renumbering(drop_map)
    for e in shard.entries:
        if e.name in remove:
            plan.dropped.append(e.name)
            plan.removed_elements += e.numel
            continue
        ref = info.experts.get(e.name)
        name, shape = e.name, e.shape
        if ref is None:
            parts = [(e.begin, e.nbytes)]
        elif ref.action == "slice":
            kept = drop_map.kept[ref.layer]
            row = e.nbytes // n_experts
            parts = [(e.begin + a * row, (b - a) * row) for a, b in kept_runs(kept)]
            shape = (len(kept), *e.shape[1:])
            plan.removed_elements += e.numel - e.numel // n_experts * len(kept)
        else:
            assert ref.expert is not None
            new_index = renumber[ref.layer].get(ref.expert)
            if new_index is None:
                plan.dropped.append(e.name)
                plan.removed_elements += e.numel
                continue
            if new_index != ref.expert:
                name = ref.renamed(e.name, new_index)
                plan.renamed[e.name] = name
            parts = [(e.begin, e.nbytes)]
        length = sum(n for _, n in parts)
        plan.entries.append(TensorEntry(name, e.dtype, shape, position, position + length))
        position += length
        pieces.extend(p for p in parts if p[1])

    plan.header = encode_header(plan.entries, shard.metadata_json)
    dst = len(plan.header)
    for src_rel, length in pieces:
        src = shard.data_start + src_rel
        if plan.runs and plan.runs[-1][0] + plan.runs[-1][2] == src:
            s, d, n = plan.runs[-1]
            plan.runs[-1] = (s, d, n + length)
        else:
            plan.runs.append((src, dst, length))
        dst += length
    return plan


def plan_checkpoint(info: CheckpointInfo, drop_map: DropMap, remove: frozenset[str] = frozenset()) -> list[ShardPlan]:
    renumber = renumbering(drop_map)
    return [plan_shard(info, shard, drop_map, remove, renumber) for shard in info.shards]
