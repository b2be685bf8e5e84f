"""Where the pages a card links to live (the Hub, ollama.com): one home for the URL shapes the card
context, the preview and the link check share."""

from __future__ import annotations

HUB = "https://huggingface.co"
OLLAMA = "https://ollama.com"


def hub_url(repo: str, path: str = "") -> str:
    return f"{HUB}/{repo}/blob/main/{path}" if path else f"{HUB}/{repo}"


def hub_resolve_url(repo: str, path: str) -> str:
    """The file's raw content (what a card embeds as an image)."""
    return f"{HUB}/{repo}/resolve/main/{path}"


def hub_tree_url(repo: str, folder: str) -> str:
    return f"{HUB}/{repo}/tree/main/{folder}"
