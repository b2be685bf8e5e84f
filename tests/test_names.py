"""Naming rules agree with what the Hub's own client and Ollama accept."""

from __future__ import annotations

import pytest
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from release.spec.names import hub_repo_problem, ollama_model_problem, ollama_tag_problem

REPO_IDS = [
    "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF", "a/b", "org/model.v2", "o_r-g/m_1.0", "a--b/c", "a/b..c",
    "-a/b", "a/b-", ".a/b", "a/.b", "a/b.", "a/b c", "a/b/c", "a", "a/", "/b", "a/b.git", "a/é",
    "x" * 50 + "/" + "y" * 96, "x" * 50 + "/" + "y" * 97, "x" * 97 + "/y", "a/b!", "a/b_",
]


@pytest.mark.parametrize("repo_id", REPO_IDS)
def test_repo_rules_match_huggingface_hub(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
        hub_ok = repo_id.count("/") == 1 and all(repo_id.split("/"))
    except HFValidationError:
        hub_ok = False
    assert (hub_repo_problem(repo_id) is None) == hub_ok, repo_id


@pytest.mark.parametrize(("tag", "ok"), [("Q4_K_M", True), ("CD-Q3_K_M", True), ("latest", True), ("_x", True),
                                         ("-x", False), ("a b", False), ("x" * 80, True), ("x" * 81, False),
                                         ("a:b", False), ("", False)])
def test_ollama_tags(tag: str, ok: bool) -> None:
    assert (ollama_tag_problem(tag) is None) == ok


@pytest.mark.parametrize(("name", "oci", "ok"), [
    ("mannix/gemma4-98e-v4", False, True), ("mannix/Gemma4", False, True), ("mannix/Gemma4", True, False),
    ("man.nix/x", False, False), ("x", False, False), ("a/b/c", False, False), ("a/-b", False, False),
])
def test_ollama_models(name: str, oci: bool, ok: bool) -> None:
    assert (ollama_model_problem(name, oci_registry=oci) is None) == ok
