"""`release canary`: the bundled demo released across machines the way v4 is, into private scratch repos on
the real services (or the endpoints given), verified, then removed. Minutes, no GPU, a few MB.

    check the token and the registry key → generate the demo's base here and upload it to a private
    scratch base repo (`NS/release-canary-<run>-base`), pinned at its commit, as v4's base is pinned →
    the demo definition pointed at scratch repos `NS/release-canary-<run>` (+ `-GGUF`, `-NVFP4A16`) and
    the Ollama model `NS/release-canary`, `[release] private = true`, in a git repo of its own → `release
    plan --matrix` → each stage's jobs (prepare, then the fan-out, at once) and finish, each a process of
    its own with its own --dist and Hugging Face cache and no git identity (a hosted runner) → check the
    repos stayed private while staged → verify: every published file of the finish manifest on main
    (LFS sha256, or the bytes of a small file), no record on main, every Ollama tag's manifest read back
    with the digest finish built → delete every Hub repo and the collection it made (`--keep` keeps them).

Registries cannot delete a model, so the Ollama model keeps one fixed scratch name and each run
overwrites its tags. Children run `python -m release` from this installation.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..access import Targets, check_hub, check_registry, hub_identity
from ..demo import generate_tiny_gemma4
from ..errors import WorkError
from ..fsutil import sha256_bytes, sha256_file
from ..ollama.build import load_builds
from ..ollama.registry import RegistryClient
from ..spec.load import PROJECT_ROOT

if TYPE_CHECKING:
    from ..publish.hub import HubPublisher

OLLAMA_NAME = "release-canary"
DEMO = PROJECT_ROOT / "pipelines" / "demo"
DEFAULT_REGISTRY = "https://registry.ollama.ai"


@dataclass
class CanaryResult:
    run: str
    namespace: str
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo → private_while_staged, deleted
    jobs: dict[str, float] = field(default_factory=dict)  # job → seconds
    verified_files: int = 0
    ollama: dict[str, str] = field(default_factory=dict)  # tag → manifest digest read back
    git_tag: str | None = None
    kept: bool = False
    workspace: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_canary(*, hub_endpoint: str | None, ollama_registry: str | None, namespace: str | None, dist: Path,
               keep: bool, say: Callable[[str], None]) -> CanaryResult:
    from huggingface_hub.utils import disable_progress_bars  # lazy: huggingface_hub takes ~0.3 s

    from ..publish.hub import HubPublisher  # lazy: huggingface_hub at start-up

    disable_progress_bars()  # one line per step in a CI log
    ident = hub_identity(hub_endpoint)
    ns = namespace or ident.name
    run = time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
    repos = {"bf16": f"{ns}/release-canary-{run}", "gguf": f"{ns}/release-canary-{run}-GGUF",
             "nvfp4": f"{ns}/release-canary-{run}-NVFP4A16"}
    base_repo = f"{ns}/release-canary-{run}-base"
    registry = ollama_registry or DEFAULT_REGISTRY
    model = f"{ns}/{OLLAMA_NAME}"
    check_hub(hub_endpoint, Targets(write=[*repos.values(), base_repo], collection=ns))
    check_registry(registry, model, insecure=registry.startswith("http://"))
    workspace = (dist / f"canary-{run}").absolute()
    result = CanaryResult(run=run, namespace=ns, workspace=str(workspace), kept=keep)
    pub = HubPublisher(hub_endpoint, progress=None)  # also switches Xet off for a stand-in
    made = [base_repo, *repos.values()]
    title = f"release canary {run}"
    say(f"canary {run}: scratch repos {', '.join(made)}; Ollama model {model} on {registry}")
    try:
        revision = _upload_base(pub, base_repo, workspace / "base")
        pipeline = _definition(workspace, run, ns, repos, base_repo, revision, model, registry, title)
        runner = _Runner(pipeline, workspace / "machines", hub_endpoint, registry)
        plan = runner.plan()
        for stage in ("dropmap", "prepare", "build"):
            jobs = [j["job"] for j in plan["stages"][stage]["include"]]
            result.jobs.update(runner.at_once(jobs, say))
        for repo in repos.values():
            result.repos[repo] = {"private_while_staged": pub.is_private(repo)}
        if not all(r["private_while_staged"] for r in result.repos.values()):
            raise WorkError(f"a repo the jobs created is readable before finish: {result.repos}")
        result.jobs.update(runner.at_once(["finish"], say))
        result.git_tag = runner.summaries["finish"].get("git_tag")
        result.verified_files = _verify_hub(pub, runner.machine("finish") / "dist" / "canary")
        result.ollama = _verify_ollama(runner.machine("finish") / "dist" / "canary", registry, model)
        say(f"verified {result.verified_files} files on main and {len(result.ollama)} Ollama tags")
    finally:
        if not keep:
            for repo in made:
                pub.delete_repo(repo)
                result.repos.setdefault(repo, {})["deleted"] = pub.is_private(repo) is None
            _delete_collection(pub, ns, title)
            say(f"deleted {', '.join(made)}")
    return result


def _upload_base(pub: HubPublisher, repo: str, folder: Path) -> str:
    """The demo's base, generated here, on a private scratch repo; the commit it is pinned at."""
    generate_tiny_gemma4(folder)
    api = pub._api
    pub._call(f"create {repo}", lambda: api.create_repo(repo, private=True, exist_ok=True))
    info = pub._call(f"upload the base to {repo}", lambda: api.upload_folder(
        repo_id=repo, folder_path=str(folder), commit_message="release canary: the demo's base"))
    return str(info.oid)


def _definition(workspace: Path, run: str, ns: str, repos: dict[str, str], base_repo: str, revision: str,
                model: str, registry: str, title: str) -> Path:
    """The bundled demo pointed at the scratch repos, in a git repo of its own."""
    import tomllib

    repo = workspace / "pipelines-repo"
    folder = repo / "pipelines" / "canary"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    d = tomllib.loads((folder / "release.toml").read_text(encoding="utf-8"))
    d["release"].update(name="canary", title=title, owner=ns, private=True,
                        summary=f"Scratch release of the demo by `release canary` (run {run}); deleted after.")
    d["base"].update(repo=base_repo, revision=revision)
    for key in ("path", "generator"):
        d["base"].pop(key, None)
    for kind, name in repos.items():
        d[kind]["repo"] = name
    d["ollama"].update(model=model, registry=registry, insecure=registry.startswith("http://"))
    (folder / "release.toml").write_text(dump_toml(d), encoding="utf-8")
    drop_map = folder / d["prune"].get("drop_map", "dropmap.json")
    dm = json.loads(drop_map.read_text(encoding="utf-8"))
    drop_map.write_text(json.dumps({**dm, "base": base_repo}, indent=1) + "\n", encoding="utf-8")
    identity = ["-c", "user.name=release canary", "-c", "user.email=canary@localhost"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-qm", f"canary {run}"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return folder


class _Runner:
    """Each job a process of its own: its own --dist and Hugging Face cache, no git identity."""

    def __init__(self, pipeline: Path, machines: Path, hub_endpoint: str | None, registry: str) -> None:
        import os

        self.pipeline, self.machines = pipeline, machines
        self.remote = [*(["--hub-endpoint", hub_endpoint] if hub_endpoint else []), "--ollama-registry", registry]
        self.env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        self.summaries: dict[str, dict[str, Any]] = {}

    def machine(self, job: str) -> Path:
        return self.machines / job

    def plan(self) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "release", "plan", str(self.pipeline), "--matrix", "--json"],
                              capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise WorkError(f"release plan --matrix failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout)

    def at_once(self, jobs: list[str], say: Callable[[str], None]) -> dict[str, float]:
        started = time.monotonic()
        procs = {}
        for job in jobs:
            m = self.machine(job)
            m.mkdir(parents=True, exist_ok=True)
            args = ["--finish"] if job == "finish" else ["--job", job]
            with open(m / "out.json", "w") as out, open(m / "err.log", "w") as err:
                procs[job] = subprocess.Popen(
                    [sys.executable, "-m", "release", "publish", str(self.pipeline), "--dist", str(m / "dist"),
                     *self.remote, "--json", *args], stdout=out, stderr=err,
                    env={**self.env, "HF_HOME": str(m / "hf-home")})
        seconds: dict[str, float] = {}
        failed = []
        for job, proc in procs.items():
            code = proc.wait()
            seconds[job] = round(time.monotonic() - started, 1)
            if code != 0:
                failed.append(f"{job} (exit {code}): " + (self.machine(job) / "err.log").read_text()[-1500:].strip())
            else:
                self.summaries[job] = json.loads((self.machine(job) / "out.json").read_text())
                say(f"  {job}: done in {seconds[job]:.0f} s")
        if failed:
            raise WorkError("canary job failed: " + "\n".join(failed))
        return seconds


def _verify_hub(pub: HubPublisher, dist: Path) -> int:
    """Every published Hub file of finish's manifest is on main as built; no unit record reached main."""
    manifest = json.loads((dist / "manifest.json").read_text())
    checked = 0
    problems = []
    trees: dict[str, dict[str, Any]] = {}
    for a in manifest["artifacts"]:
        dest = a.get("destination") or {}
        if dest.get("kind") != "hub" or a.get("status") != "published":
            continue
        repo = dest["repo"]
        if repo not in trees:
            trees[repo] = pub.tree(repo, pub.head(repo))
            problems += [f"{repo}: {p} on main" for p in trees[repo] if p.startswith(".release/")]
        prefix = dest.get("path_in_repo") or ""
        for f in a["files"]:
            path = f"{prefix.strip('/')}/{f['path']}" if prefix.strip("/") else f["path"]
            remote = trees[repo].get(path)
            if remote is None or int(remote.size or 0) != f["size"]:
                problems.append(f"{repo}/{path}: missing or another size")
            elif remote.lfs is not None:
                if remote.lfs.sha256 != f["sha256"]:
                    problems.append(f"{repo}/{path}: sha256 differs")
            elif sha256_file(pub.download(repo, path, "main", dist / ".canary-cache")) != f["sha256"]:
                problems.append(f"{repo}/{path}: content differs")
            checked += 1
    if problems or not checked:
        raise WorkError("the promoted trees differ from the manifest: " + ("; ".join(problems[:10]) or "nothing"))
    return checked


def _verify_ollama(dist: Path, registry: str, model: str) -> dict[str, str]:
    """Every tag (and latest) reads back with the manifest digest finish built."""

    _, latest, builds = load_builds(dist / "ollama")
    client = RegistryClient(registry, insecure=registry.startswith("http://"))
    got: dict[str, str] = {}
    try:
        for ref, build in [*((b.tag, b) for b in builds), ("latest", next(b for b in builds if b.tag == latest))]:
            answer = client.get_manifest(model, ref)
            digest = f"sha256:{sha256_bytes(answer[0])}" if answer else ""
            if digest != build.manifest_digest:
                raise WorkError(f"{model}:{ref} on {registry} is {digest or 'missing'}, finish built "
                                f"{build.manifest_digest}")
            got[ref] = digest
    finally:
        client.close()
    return got


def _delete_collection(pub: HubPublisher, namespace: str, title: str) -> None:
    api = pub._api
    for c in pub._call("list collections", lambda: list(api.list_collections(owner=namespace, limit=100))):
        if c.title == title:
            pub._call(f"delete collection {c.slug}", lambda c=c: api.delete_collection(c.slug, missing_ok=True))


def dump_toml(data: dict[str, Any]) -> str:
    """TOML for a parsed definition (tables of strings, numbers, booleans, lists and sub-tables)."""
    lines: list[str] = []

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a TOML basic string
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    def table(prefix: list[str], t: dict[str, Any]) -> None:
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"\n[{'.'.join(key(p) for p in prefix)}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in t.items():
            if isinstance(v, dict):
                table([*prefix, k], v)

    table([], data)
    return "\n".join(lines).lstrip("\n") + "\n"
