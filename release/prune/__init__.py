"""Streaming expert pruner: byte-range rewrite of safetensors checkpoints, never loading the model.

Public interface (the CLI and the BF16 build step call these):
- `prune_checkpoint(base_dir, drop_map, out_dir, *, base_repo="", base_revision="", progress=None)
  -> PruneResult`
- `inspect_checkpoint(base_dir) -> CheckpointInfo` — validation only, writes nothing (InputError).
- `verify_pruned(out_dir, base_dir=None, *, full=False) -> CheckpointInfo` — the verify gate (VerifyError).
"""

from .checkpoint import CheckpointInfo, ExpertRef, inspect_checkpoint
from .pruner import PruneResult, prune_checkpoint
from .verify import verify_pruned

__all__ = ["CheckpointInfo", "ExpertRef", "PruneResult", "inspect_checkpoint", "prune_checkpoint", "verify_pruned"]
