"""README starts with exactly the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index("```bash") < text.index("## "), "the commands come first"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_two_commands_first() -> None:
    install_and_run, tests = _commands()
    assert install_and_run.startswith("scripts/bootstrap.sh && ") and "release publish demo" in install_and_run
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "scripts/bootstrap.sh" in ci
    assert _commands()[1] in ci
