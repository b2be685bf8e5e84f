"""Publishers: push built artifacts to their destinations (the Hub here; Ollama registries alongside).

Generic helpers shared by publishers: `retry` (backoff), `redact` (secrets out of messages).
Names are imported lazily so `release.publish.<other>` does not pay for huggingface_hub's import.
"""

from __future__ import annotations

from typing import Any

from .hubplan import HubPlan, HubResult, PlannedFile, RepoPlan, RepoResult

__all__ = ["HubPlan", "HubPublisher", "HubResult", "PlannedFile", "RepoPlan", "RepoResult"]


def __getattr__(name: str) -> Any:
    if name == "HubPublisher":
        from .hub import HubPublisher  # lazy: huggingface_hub at start-up

        return HubPublisher
    raise AttributeError(name)
