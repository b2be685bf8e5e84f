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

Each check is its kind's `verify` (release/kinds/). Results are remembered per artifact content
(state.json), so an unchanged artifact is not re-verified.
"""

from __future__ import annotations

from ..context import Context, digest
from ..errors import VerifyError
from ..kinds import kind_of
from ..manifest import Artifact


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
        problems = kind_of(a.kind).verify(ctx, a)
        if problems:
            failures += [f"{a.id}: {p}" for p in problems]
        else:
            rec[key] = content
            ctx.state._save()
    if failures:
        raise VerifyError("verify gate failed; nothing was published:\n  " + "\n  ".join(failures))
    ctx.say(f"verify: {sum(1 for a in artifacts if a.status == 'built')} artifacts passed")
