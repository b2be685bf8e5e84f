"""The verify gate: every artifact about to be published is checked; one failure publishes nothing.

- dropmap: a derived map parses, fits the base and follows from its scores by the recorded recipe
- bf16:   config, index and every copied byte range equal what pruning the base gives (any size); on
          small models, fp32 logits equal the base's with the dropped experts' router logits at −inf
- gguf:   opens with the gguf reader, expected expert count and types, the pruned checkpoint's chat
          template unchanged; Q8_0 runs a forward pass
- nvfp4:  decompresses within the NVFP4 error bound; other tensors byte-identical
- ollama: every manifest references blobs present with the right size and digest
- quality: the figures are finite and in range, and of the files the measured artifact holds now
- card:   every link resolves to this release, its base, or a sibling

Results are remembered per artifact content (state.json), so an unchanged artifact is not re-verified.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import Context, digest
from ..errors import VerifyError
from ..manifest import Artifact

Check = Callable[[Context, Artifact], list[str]]


def _bf16(ctx: Context, a: Artifact) -> list[str]:
    from ..fetch import ensure_base
    from ..prune import verify_pruned

    base = ensure_base(ctx.release, endpoint=ctx.options.hub_endpoint, token=ctx.options.hub_token,
                       hash_cache=ctx.hash_cache)
    try:
        # full: every copied byte range is compared with the base, not just headers and sizes
        verify_pruned(ctx.artifact_dir(a), base, full=True)
    except VerifyError as exc:
        return str(exc).splitlines()[1:] or [str(exc)]
    return _bf16_logits(ctx, a, base)


# Below this size both models fit in memory at fp32 and the logits check takes seconds. Above it the
# byte comparison carries the result of the tiny-model exactness tests to the full-size checkpoint.
LOGITS_CHECK_MAX_BYTES = 2_000_000_000


def _bf16_logits(ctx: Context, a: Artifact, base) -> list[str]:  # type: ignore[no-untyped-def]
    from ..prune.exactness import compare_logits, supported

    if a.size > LOGITS_CHECK_MAX_BYTES or not supported(ctx.release.family):
        return []
    report = compare_logits(base, ctx.artifact_dir(a), ctx.release.drop_map.kept, ctx.release.family)
    if not report.exact:
        return [f"logits differ from the base rerouted over the kept experts (max |Δ| {report.max_abs_diff:.3g})"]
    ctx.say(f"verify: bf16 logits equal the router-masked base's (mask effect {report.mask_effect:.3g})")
    return []


def _gguf(ctx: Context, a: Artifact) -> list[str]:
    from .gguf import verify_gguf

    return verify_gguf(ctx, a)


def _nvfp4(ctx: Context, a: Artifact) -> list[str]:
    from ..nvfp4 import verify_checkpoint

    bf16 = ctx.built("bf16")
    # compressed-tensors' own dequantizer is the oracle; ours is proven bit-identical to it (tests) and
    # about 3x faster, which matters at full size.
    dequantizer = "own" if a.size > LOGITS_CHECK_MAX_BYTES else "auto"
    report = verify_checkpoint(ctx.artifact_dir(a), ctx.artifact_dir(bf16), dequantizer=dequantizer)
    if report.ok:
        ctx.say(f"verify: {report.summary()}")
    return list(report.problems)


def _ollama(ctx: Context, a: Artifact) -> list[str]:
    from .ollama import verify_store_tag

    return verify_store_tag(ctx, a)


def _card(ctx: Context, a: Artifact) -> list[str]:
    from ..cards import check_links
    from ..errors import InputError

    text = (ctx.artifact_dir(a) / "README.md").read_text(encoding="utf-8")
    try:
        check_links(ctx.release, ctx.artifacts, {a.id: text})
    except InputError as exc:
        return [str(p) for p in exc.problems]
    return []


def _dropmap(ctx: Context, a: Artifact) -> list[str]:
    """A derived map parses, fits the base, and follows from the scores beside it by its recipe."""
    from ..errors import InputError
    from ..spec.dropmap import check_against_config, parse_drop_map
    from ..spec.expert_scores import parse_scores

    root = ctx.artifact_dir(a)
    map_file, scores_file = (root / f.path for f in a.files)
    try:
        dm = parse_drop_map(map_file.read_bytes(), a.files[0].path)
        scores = parse_scores(scores_file.read_bytes(), a.files[1].path)
        derived = scores.kept()
    except InputError as exc:
        return [str(p) for p in exc.problems]
    problems = [str(p) for p in check_against_config(dm, ctx.release.base_config, ctx.release.family,
                                                      config_file=ctx.release.definition.base.config,
                                                      base_repo=ctx.release.definition.base.repo)]
    problems += [f"layer {layer}: the map keeps {list(dm.kept.get(layer, ()))}, its scores give {list(kept)}"
                 for layer, kept in sorted(derived.items()) if dm.kept.get(layer) != kept]
    if dm.kept_count != ctx.release.definition.prune.experts_kept:
        problems.append(f"keeps {dm.kept_count} experts per layer, [prune] experts_kept says "
                        f"{ctx.release.definition.prune.experts_kept}")
    return problems


def _quality(ctx: Context, a: Artifact) -> list[str]:
    from ..quality.facts import figure_problems

    return figure_problems(ctx.artifacts, a)


CHECKS: dict[str, Check] = {"dropmap": _dropmap, "bf16": _bf16, "gguf": _gguf, "nvfp4": _nvfp4,
                            "quality": _quality, "ollama": _ollama, "card": _card}


def verify_release(ctx: Context, artifacts: list[Artifact]) -> None:
    """Run the gate on the built artifacts; raise VerifyError naming every failure."""
    failures: list[str] = []
    for a in artifacts:
        if a.status != "built":
            continue
        key = f"verify:{a.id}"
        content = digest(a.id, [(f.path, f.size, f.sha256) for f in a.files])
        rec = ctx.state.data.setdefault("verified", {})
        if rec.get(key) == content:
            continue
        problems = CHECKS[a.kind](ctx, a)
        if problems:
            failures += [f"{a.id}: {p}" for p in problems]
        else:
            rec[key] = content
            ctx.state._save()
    if failures:
        raise VerifyError("verify gate failed; nothing was published:\n  " + "\n  ".join(failures))
    ctx.say(f"verify: {sum(1 for a in artifacts if a.status == 'built')} artifacts passed")
