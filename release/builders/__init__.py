"""Builders: one per artifact kind. Each turns planned artifacts into built ones (files, sizes,
hashes, facts) by calling its part of the package; none reaches into another's internals."""

from __future__ import annotations

from .bf16 import Bf16Builder
from .cards import CardsBuilder
from .dropmap import DropmapBuilder
from .gguf import GgufBuilder
from .nvfp4 import Nvfp4Builder
from .ollama import OllamaBuilder
from .quality import QualityBuilder

BUILDERS = {
    "dropmap": DropmapBuilder(),
    "bf16": Bf16Builder(),
    "gguf": GgufBuilder(),
    "nvfp4": Nvfp4Builder(),
    "quality": QualityBuilder(),
    "ollama": OllamaBuilder(),
    "cards": CardsBuilder(),
}
