"""Model cards: context (every computed figure), Jinja rendering with Hub metadata, the link check,
and a static HTML preview of the release family.

Public interface (the CLI and the verify gate call these):
    render_cards(release, artifacts, out_dir, *, provenance) -> list[Artifact]
    render_card_texts(release, artifacts, *, provenance) -> {kind: markdown}   (checked, nothing written)
    check_links(release, artifacts, {card: markdown})                          (raises CardLinkError)
    verify_cards(release, artifacts, cards_dir)                                (re-checks written cards)
    build_preview(release, artifacts, cards_dir, out_dir) -> Path
"""

from __future__ import annotations

from .context import build_context
from .links import CardLinkError, check_links
from .preview import build_preview
from .render import card_data, render_card_texts, render_cards
from .verify import verify_cards

__all__ = [
    "CardLinkError",
    "build_context",
    "build_preview",
    "card_data",
    "check_links",
    "render_card_texts",
    "render_cards",
    "verify_cards",
]
