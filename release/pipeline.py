"""The engine: builds what a command selects, in flow order, over a shared context (release/context.py).

    check → fetch base → [dropmap] → prune (bf16) → build (gguf | nvfp4) → quality → ollama → cards
          → verify → plan → publish (hub, ollama) → tag

Each artifact kind (release/kinds/, in `FLOW` order) plans, hashes and builds its artifacts; this module
decides what to build, restores what is unchanged and records what it made. The manifest
(`dist/<name>/manifest.json`) is the registry serialised with provenance. `state.json` records every built
artifact with the hash of its inputs, so a rerun after a crash or an edit rebuilds only what changed (new
scores → only the cards) and restores the rest.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from rich.console import Console

from .console import human_duration
from .context import BASE, Options, State, digest
from .context import Context as RunContext
from .errors import InputError, WorkError
from .kinds import KINDS, Kind, kind_of, order
from .manifest import Artifact, ArtifactRegistry
from .plan import plan_artifacts
from .spec.load import Release
from .steps import closure, dependents, topological
from .suggest import did_you_mean, resolve


def parse_only(values: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            kind, colon, name = item.partition(":")
            known = resolve(kind, KINDS)
            if known is None:
                raise InputError(f"unknown kind {kind!r} (one of {', '.join(KINDS)}){did_you_mean(kind, KINDS)}",
                                 file="--only")
            out.append(known + colon + name)
    return out


class Context(RunContext):
    """The run context of a command: plans the release unless the command has planned it already (pass
    `artifacts=`: one plan per command)."""

    def __init__(self, release: Release, options: Options, console: Console | None = None, *,
                 estimates: bool = True, artifacts: ArtifactRegistry | None = None) -> None:
        super().__init__(release, options, console, artifacts=artifacts if artifacts is not None else
                         plan_artifacts(release, estimates=estimates))


__all__ = ["BASE", "KINDS", "Context", "Options", "State", "digest", "ensure", "parse_only",
           "restore_recorded", "run_build", "select", "select_ids"]


def ensure(ctx: Context, ids: list[str]) -> list[str]:
    """Build `ids` and what they need, in flow order, unless their recorded inputs are unchanged and
    their files intact (then they are restored from state.json). Returns the ids built in this run.

    One kind at a time: of the artifacts whose needs are all built, those of the earliest step go to
    their builder together (so the GGUF tiers of a wave are quantized in one parallel sweep).
    """
    forget_forced(ctx, ids)
    pending = [i for i in closure(ctx.artifacts, ids) if ctx.artifacts[i].status not in ("built", "published")]
    check_space(ctx, pending)
    built_now: list[str] = []
    while pending:
        ready = [i for i in pending if _ready(ctx, i, pending)]
        if not ready:
            raise WorkError(f"cannot build {', '.join(pending)}: their needs were not built")
        kind = kind_of(ctx.artifacts[min(ready, key=lambda i: order(ctx.artifacts[i].kind))].kind)
        batch = [ctx.artifacts[i] for i in ready if ctx.artifacts[i].kind == kind.name]
        pending = [i for i in pending if i not in {a.id for a in batch}]
        started = time.monotonic()
        made = _build_batch(ctx, kind, batch)
        if made:
            ctx.say(f"{kind.name}: made {', '.join(made)} in {human_duration(time.monotonic() - started)}")
        built_now += made
    return built_now


def forget_forced(ctx: Context, ids: list[str]) -> None:
    """`--force`: what the selection chose and what is made from it (among what this run makes) is made
    again; what they need is restored as usual (`--from KIND` redoes an upstream step). Their records are
    forgotten once per run, so a rerun without --force resumes with what is left."""
    if not ctx.options.force:
        return
    in_run = set(closure(ctx.artifacts, ids))
    chosen = (set(ids) | set(dependents(ctx.artifacts, ids))) & in_run
    for i in sorted(chosen - ctx.forced):
        ctx.state.forget(i)
        a = ctx.artifacts[i]
        if a.status in ("built", "published"):  # restored earlier in this run: make it again
            ctx.artifacts.add(dataclasses.replace(a, status="planned"))
    ctx.forced |= chosen


def restore_recorded(ctx: Context) -> list[str]:
    """Put into the registry, as built, every artifact whose record is current (its inputs hash to the
    recorded ones) and whose files are intact: a run that made a part (--only, a job, `plan`) leaves the
    manifest saying what exists. Cards come last (they describe the rest). Returns the ids restored."""
    if not ctx.state.data["artifacts"]:
        return []
    restored: list[str] = []
    for i in topological(ctx.artifacts, [a.id for a in ctx.artifacts]):
        a = ctx.artifacts[i]
        if a.status in ("built", "published") or i in ctx.forced or ctx.state.get(i) is None:
            continue
        if any(n != BASE and ctx.artifacts[n].status not in ("built", "published") for n in a.needs):
            continue
        rec = ctx.state.restore(i, kind_of(a.kind).input_hash(ctx, a))
        if rec is not None:
            rec.needs = a.needs
            if ctx.intact(rec):
                ctx.adopt(rec)
                restored.append(i)
    return restored


def check_space(ctx: Context, ids: list[str]) -> None:
    """Refuse before writing anything when the artifacts about to be made (planned sizes; those whose
    recorded files are all still here will be restored, not made) do not fit on the disk."""
    need = 0
    for i in ids:
        a = ctx.artifacts[i]
        if kind_of(a.kind).wraps or kind_of(a.kind).describes_all:
            continue  # hard links to GGUFs and a few kB of text
        rec = ctx.state.restore(i)
        if rec is not None and rec.files and all((ctx.artifact_dir(rec) / f.path).is_file() for f in rec.files):
            continue
        need += int(a.size or a.facts.get("size") or 0)
    folder = ctx.dist
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise WorkError(f"not enough disk for this build: about {need / 1e9:.2f} GB to write under {ctx.dist}, "
                        f"{free / 1e9:.2f} GB free; nothing was written (free some space, or --dist elsewhere)")


def _ready(ctx: Context, artifact_id: str, pending: list[str]) -> bool:
    a = ctx.artifacts[artifact_id]
    if kind_of(a.kind).describes_all:
        # Rendered from everything else as it stands: after every other pending artifact.
        return all(kind_of(ctx.artifacts[i].kind).describes_all for i in pending)
    return all(n == BASE or ctx.artifacts[n].status in ("built", "published") for n in a.needs)


def _build_batch(ctx: Context, kind: Kind, batch: list[Artifact]) -> list[str]:
    todo: list[tuple[Artifact, str]] = []
    for a in batch:
        inputs = kind.input_hash(ctx, a)
        restored = ctx.state.restore(a.id, inputs)  # None for what --force chose: forget_forced dropped it
        if restored is not None:
            restored.needs = a.needs
            if ctx.intact(restored):
                ctx.adopt(restored)
                ctx.detail(f"{a.id}: inputs unchanged and files intact: restored, not made")
                continue
        todo.append((a, inputs))
    if not todo:
        return []
    ctx.say(f"{kind.selector}: making {', '.join(a.id for a, _ in todo)}")
    for root in {ctx.dist / a.root for a, _ in todo}:
        remove_partials(root)
    hashes = {a.id: h for a, h in todo}
    built_now: list[str] = []
    for built in kind.build(ctx, [a for a, _ in todo]):
        built.status = "built"
        built.needs = ctx.artifacts[built.id].needs if built.id in ctx.artifacts else built.needs
        for f in built.files:  # the builder just hashed these: don't hash them again
            path = ctx.artifact_dir(built) / f.path
            if f.sha256 and path.is_file():  # (an Ollama model blob may live on the registry only)
                ctx.hash_cache.remember(path, f.sha256)
        ctx.adopt(built)
        if built.id in hashes:
            ctx.state.record(built, hashes[built.id])
            built_now.append(built.id)
    missing = set(hashes) - set(built_now)
    if missing:
        raise WorkError(f"the {kind.selector} builder did not build {', '.join(sorted(missing))}")
    ctx.write_manifest()
    return built_now


def remove_partials(folder: Path) -> None:
    """Remove what a killed run left half-written in `folder` (`.<name>.partial` files and folders):
    SIGKILL skips every cleanup handler, so the next run of the same builder does it."""
    import shutil

    if not folder.is_dir():
        return
    for p in [*folder.glob(".*.partial"), folder / ".partial"]:
        if not p.exists():
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def selector_kind(artifact: Artifact) -> str:
    return kind_of(artifact.kind).selector


def select(ctx: Context, only: list[str] | None = None) -> list[str]:
    """The artifact ids `--only` chooses (all without it)."""
    return select_ids(ctx.artifacts, ctx.options.only if only is None else only, ctx.release.name)


def select_ids(artifacts: ArtifactRegistry, only: list[str], release_name: str) -> list[str]:
    """The ids `only` chooses from `artifacts`. A selector that chooses nothing is bad input: a typo must
    not turn into a successful run that did nothing."""
    if not only:
        return [a.id for a in artifacts]
    chosen: list[str] = []
    for sel in only:
        kind, _, name = sel.partition(":")
        # What `kind:NAME` can name: repos for hub, else the ids of that kind (tiers typed in any case,
        # as llama-quantize takes them).
        known = sorted({a.destination.repo for a in artifacts if a.destination and a.destination.kind == "hub"}) \
            if kind == "hub" else sorted({a.id.split(":", 1)[-1] for a in artifacts if selector_kind(a) == kind})
        name = (resolve(name, known) or name) if name else name
        if kind == "hub":
            matched = [a.id for a in artifacts
                       if a.destination is not None and a.destination.kind == "hub"
                       and (not name or a.destination.repo == name)]
        else:
            matched = [a.id for a in artifacts if selector_kind(a) == kind
                       and (not name or a.id.split(":", 1)[-1] == name)]
        if not matched:
            hint = f" (this release has: {', '.join(known)})" if known else f" (release {release_name} has none)"
            raise InputError(f"{sel!r} selects nothing{did_you_mean(name, known, prefix=kind + ':')}{hint}",
                             file="--only")
        chosen += [i for i in matched if i not in chosen]
    # A measurement follows what it measures (as a card follows its repo): a tier built is a tier measured,
    # so the cards rendered after it can say what it is worth.
    chosen += [a.id for a in artifacts if kind_of(a.kind).measures and a.recipe.get("measures") in chosen
               and a.id not in chosen]
    return chosen


def run_build(ctx: Context) -> list[str]:
    """Build every selected artifact; returns the ids built in this run (others were up to date)."""
    ids = select(ctx)
    with ctx.live():
        built = ensure(ctx, ids)
    restore_recorded(ctx)  # what --only left out is still built: the manifest says so
    ctx.write_manifest()
    return built
