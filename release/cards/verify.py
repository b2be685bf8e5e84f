"""The verify gate's card check: the written READMEs still pass the link check (a template or a
definition may have changed after rendering, or a file was edited by hand)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..manifest import ArtifactRegistry
from ..spec.load import Release
from .links import check_links
from .render import card_kinds


def verify_cards(release: Release, artifacts: ArtifactRegistry, cards_dir: Path) -> None:
    """Raise InputError if a card is missing, CardLinkError naming card and link if one dangles."""
    texts: dict[str, str] = {}
    for kind in card_kinds(release):
        path = cards_dir / kind / "README.md"
        if not path.is_file():
            raise InputError("card not rendered yet (run `release cards`)", file=str(path))
        texts[f"card:{kind}"] = path.read_text(encoding="utf-8")
    check_links(release, artifacts, texts)
