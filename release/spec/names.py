"""Naming rules of the Hub and of Ollama, checked at `release check` before anything remote happens."""

from __future__ import annotations

import re

# Ollama: types/model/name.go — each part 1–80 chars, first [A-Za-z0-9_], rest [A-Za-z0-9_.-];
# no '.' in the namespace.
_OLLAMA_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_OLLAMA_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$")
_RELEASE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


# The Hub's repo-id rules, as huggingface_hub's validate_repo_id applies them (a test keeps the two in
# agreement); written out so `check` doesn't pay for importing the client.
_HUB_PART = re.compile(r"^\w(?:[\w.-]{0,94}\w)?$", re.ASCII)


def hub_repo_problem(repo_id: str) -> str | None:
    """Why the Hub would refuse `repo_id` (namespace/name), or None."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        return f"{repo_id!r} is not a repo id of the form namespace/name"
    namespace, name = repo_id.split("/")
    if not namespace or not name:
        return f"{repo_id!r} has an empty namespace or name"
    if "--" in repo_id or ".." in repo_id:
        return f"cannot have -- or .. in repo_id: {repo_id!r}"
    if repo_id.endswith(".git"):
        return f"{repo_id!r} cannot end with .git"
    if not (_HUB_PART.match(namespace) and _HUB_PART.match(name)):
        return (f"{repo_id!r}: use letters, digits, '-', '_' or '.'; each part is 1–96 characters "
                "and cannot start or end with '-' or '.'")
    return None


def ollama_model_problem(model: str, *, oci_registry: bool) -> str | None:
    """Why Ollama (or a plain OCI registry) would refuse the model name `namespace/model`."""
    parts = model.split("/")
    if len(parts) != 2:
        return f"{model!r} must be namespace/model (the registry host goes in 'registry')"
    namespace, name = parts
    if not _OLLAMA_NAMESPACE.match(namespace):
        return f"namespace {namespace!r}: 1–80 of [A-Za-z0-9_-], starting with a letter, digit or _ (no '.')"
    if not _OLLAMA_PART.match(name):
        return f"model {name!r}: 1–80 of [A-Za-z0-9_.-], starting with a letter, digit or _"
    if oci_registry and model != model.lower():
        return f"{model!r}: an OCI registry needs lowercase repository names"
    return None


def ollama_tag_problem(tag: str) -> str | None:
    if not isinstance(tag, str) or not _OLLAMA_PART.match(tag):
        return f"tag {tag!r}: 1–80 of [A-Za-z0-9_.-], starting with a letter, digit or _"
    return None


def release_name_problem(name: str) -> str | None:
    if not _RELEASE_NAME.match(name):
        return f"{name!r}: lowercase letters, digits, '.', '_' or '-' (it names folders and git tags)"
    return None


def revision_problem(revision: str) -> str | None:
    if not _HEX40.match(revision):
        return f"{revision!r} is not a pinned commit sha (40 lowercase hex digits)"
    return None


MAX_QUANTIZED_BY = 96


def quantized_by_problem(value: str) -> str | None:
    """Why `quantized_by` (a free-form name the Hub shows in the card header) cannot be used, or None."""
    if not value.strip():
        return "empty: leave it out to use [release] owner"
    if value != value.strip() or any(not c.isprintable() for c in value):
        return f"{value!r}: one line of printable characters, without surrounding spaces"
    if len(value) > MAX_QUANTIZED_BY:
        return f"{len(value)} characters; at most {MAX_QUANTIZED_BY}"
    return None
