"""`release dropmap`: derive a release's drop map from calibration text.

- `derive(name, DropmapRequest(...)) -> DropmapResult` — the command (release/dropmap/derive.py).
- `collect(...)` — stream a checkpoint layer by layer and measure each expert per class (collect.py, stream.py).
- `Recipe`, `select_layer`, `RECIPES` — from measurements to kept experts (pure Python; in
  ../spec/drop_recipes.py, since the definition names a recipe and checks it at load).
- `parse_scores`, `ExpertScores`, `kept_share(scores, kept)` — the scores file beside a derived map (pure
  Python; in ../spec/expert_scores.py, since a given map is checked against its scores at load): `kept_share`
  gives, per MoE layer, the share of the measured contribution the kept experts carry (for cards).

Importing this package does not import torch.
"""

from ..spec.drop_recipes import RECIPES, Recipe, select_layer
from ..spec.expert_scores import ExpertScores, kept_share, parse_scores, scores_path_for

__all__ = ["RECIPES", "ExpertScores", "Recipe", "kept_share", "parse_scores", "scores_path_for", "select_layer"]
