"""The conventions a command line is expected to follow (issue 19.12): -V, -q/-v, --json on every command
that prints a result, a JSON error object on stdout when a --json command fails, names typed in any case
with the near name suggested, shell completion of release names and --only values, and the exit
statuses in --help."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from release import __version__
from release.cli import cli
from release.outcome import resume_command

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    code, stdout, _ = run(flag)
    assert code == 0 and stdout.strip() == f"release, version {__version__}"


def test_quiet_keeps_only_the_result_and_verbose_adds_detail(tmp_path: Path) -> None:
    code, stdout, stderr = run("check", "demo")
    assert code == 0 and stdout.startswith("✓ demo") and "warning:" in stderr
    code, stdout, stderr = run("-q", "check", "demo")
    assert code == 0 and stdout.startswith("✓ demo") and stderr == ""
    code, _, stderr = run("-q", "plan", "demo", "--dist", str(tmp_path))
    assert code == 0 and stderr == ""
    # -v: an error shows its cause
    code, _, stderr = run("-v", "plan", "demo", "--dist", str(tmp_path), "--only", "gguf:Q9_9")
    assert code == 2 and "cause: InputError" in stderr
    code, _, stderr = run("-q", "-v", "check", "demo")
    assert code == 2 and "opposite" in stderr


@pytest.mark.parametrize("args", [
    ("plan", "demo", "--only", "gguf:Q9_9", "--json"),  # bad input found by the command
    ("plan", "no-such-release", "--json"),
    ("build", "demo", "--only", "weights", "--json"),
    ("build", "demo", "--jobs", "0", "--json"),  # a usage error found by click
    ("publish", "demo", "--prune-remote", "--only", "gguf", "--json"),
    ("preview", "no-such-release", "--json"),
    ("check", "no-such-release", "--json"),
])
def test_json_commands_answer_errors_in_json(args: tuple[str, ...], tmp_path: Path) -> None:
    code, stdout, _stderr = run(*args, "--dist", str(tmp_path))
    assert code == 2
    error = json.loads(stdout)["error"]
    assert error["exit_code"] == 2 and error["message"]
    assert all(set(p) == {"file", "field", "message"} for p in error["problems"])
    assert not any(tmp_path.iterdir()), "bad input wrote something"


def test_json_error_names_the_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "lc"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace('tiers = ["Q8_0",', 'tiers = ["q8_0",'))
    code, stdout, _ = run("check", str(folder), "--json")
    assert code == 2
    problems = json.loads(stdout)["error"]["problems"]
    first = next(p for p in problems if p["field"] == "gguf.tiers[0]")
    assert first["file"] == "lc/release.toml" and first["message"].endswith("did you mean 'Q8_0'?")


def test_build_and_preview_take_json() -> None:
    for command in ("build", "preview"):
        _, stdout, _ = run(command, "--help")
        assert "--json" in stdout


def test_tiers_are_matched_in_any_case_and_misses_suggest_the_near_name(tmp_path: Path) -> None:
    code, stdout, _ = run("plan", "demo", "--dist", str(tmp_path), "--only", "GGUF:q4_k_m", "--json")
    assert code == 0, stdout
    assert "gguf:Q4_K_M" in {a["id"] for a in json.loads(stdout)["artifacts"]}
    code, _, stderr = run("plan", "demo", "--dist", str(tmp_path), "--only", "gguf:Q4_K_N")
    assert code == 2 and "did you mean 'gguf:Q4_K_M'?" in stderr
    code, _, stderr = run("plan", "demo", "--dist", str(tmp_path), "--only", "ggfu")
    assert code == 2 and "did you mean 'gguf'?" in stderr


def test_help_states_every_exit_status() -> None:
    for args in ([], ["build"], ["publish"], ["plan"], ["scores", "import"]):
        code, stdout, _ = run(*args, "--help")
        assert code == 0
        text = " ".join(stdout.split())
        for status in ("0 success", "1 a failure while working", "2 bad input", "130 interrupted",
                       "143 terminated"):
            assert status in text, (args, status)


def completions(args: list[str], incomplete: str) -> list[str]:
    return [c.value for c in ShellComplete(cli, {}, "release", "_RELEASE_COMPLETE").get_completions(args, incomplete)]


def test_completion_of_release_names_and_only_values() -> None:
    assert {"demo", "v4", "v3", "v5-coder"} <= set(completions(["build"], ""))
    assert completions(["plan"], "v5") == ["v5-coder"]
    assert "gguf" in completions(["build", "demo", "--only"], "gg")
    assert completions(["build", "demo", "--only"], "gguf:q4") == ["gguf:Q4_K_M"]
    assert "hub:demo/tiny-gemma4-6e-it-GGUF" in completions(["publish", "demo", "--only"], "hub:")
    assert completions(["build", "no-such-release", "--only"], "gguf:") == []


def test_completion_script_is_clicks() -> None:
    """What README tells a user to eval."""
    result = CliRunner().invoke(cli, [], env={"_RELEASE_COMPLETE": "bash_source"}, prog_name="release")
    assert "_release_completion" in result.stdout and "complete " in result.stdout


def test_resume_command_leaves_out_what_redoes_work() -> None:
    assert resume_command(["build", "demo", "--only", "gguf:Q4_K_M", "--force"]) == \
        "release build demo --only gguf:Q4_K_M"
    assert resume_command(["publish", "v4", "--from", "gguf", "--dist", "my dist"]) == \
        "release publish v4 --dist 'my dist'"
    assert resume_command(["publish", "v4", "--from=gguf", "--local"]) == "release publish v4 --local"


def test_a_command_plans_the_release_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`build --only` checked its selectors against one plan and built from another (issue 19.7)."""
    import release.engine
    import release.pipeline
    import release.plan

    calls = []
    real = release.plan.plan_artifacts

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(release.plan, "plan_artifacts", counted)
    monkeypatch.setattr(release.pipeline, "plan_artifacts", counted)
    monkeypatch.setattr(release.engine, "plan_artifacts", counted)
    code, stdout, stderr = run("build", "demo", "--only", "cards", "--dist", str(tmp_path))
    assert code == 0, stdout + stderr
    assert len(calls) == 1


def test_publish_plans_the_release_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`publish` checks access, selectors and the lock against the plan it publishes (issue 21.3)."""
    import release.engine
    import release.pipeline
    import release.plan
    import release.publishing

    calls = []
    real = release.plan.plan_artifacts

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    for module in (release.plan, release.pipeline, release.engine, release.publishing):
        monkeypatch.setattr(module, "plan_artifacts", counted)
    code, stdout, stderr = run("publish", "demo", "--local", "--dry-run", "--only", "cards", "--dist", str(tmp_path))
    assert code == 0, stdout + stderr
    assert len(calls) == 1
