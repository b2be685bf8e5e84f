"""Streaming expert pruner: byte-range rewrite of safetensors checkpoints, never loading the model.

Public interface (the CLI and the BF16 build step call these):
- `prune_checkpoint(base_dir, drop_map, out_dir, *, base_repo="", base_revision="", progress=None)
  -> PruneResult`
- `check_prune(base_dir, drop_map, *, base_repo="", base_revision="") -> PrunePreview` — checks base +
  drop map together and plans the output (sizes, parameters) without writing (InputError).
- `inspect_checkpoint(base_dir) -> CheckpointInfo` — validation only, writes nothing (InputError).
- `verify_pruned(out_dir, base_dir=None, *, full=False) -> CheckpointInfo` — the verify gate (VerifyError).
"""

from .checkpoint import CheckpointInfo, ExpertRef, inspect_checkpoint
from .pruner import PrunePreview, PruneResult, check_prune, prune_checkpoint
from .verify import verify_pruned

__all__ = ["CheckpointInfo", "ExpertRef", "PrunePreview", "PruneResult", "check_prune", "inspect_checkpoint",
           "prune_checkpoint", "verify_pruned"]
