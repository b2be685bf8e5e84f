"""Cards: every card rendered from the definition, scores and the artifacts as they stand (built facts
where built, estimates where planned), plus the static preview of the release family. A card describes
everything else: it is rendered last and never builds what it describes."""

from __future__ import annotations

from ..context import Context, digest
from ..dropmap.summary import CHART_FILE as SELECTION_CHART
from ..dropmap.summary import has_selection
from ..errors import InputError
from ..manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from ..provenance import provenance
from ..quality.chart import CHART_FILE
from ..quality.facts import withheld_in_use
from ..spec.load import Release
from .base import KindBase


def _described(ctx: Context) -> list[tuple]:
    """What the cards say about the other artifacts (not their remote diff)."""
    return [(a.id, a.status, [(f.path, f.size, f.sha256) for f in a.files], a.recipe, a.facts,
             a.destination.__dict__ if a.destination else None)
            for a in ctx.artifacts if a.kind != "card"]


class CardKind(KindBase):
    name = "card"
    selector = "cards"  # type: ignore[assignment]  # `--only cards`: the kind's plural, as the command says it
    help = "the model cards and the family preview"
    describes_all = True

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        d = release.definition
        out: list[Artifact] = []
        for repo_kind in ("bf16", "gguf", "nvfp4"):
            section = getattr(d, repo_kind)
            if section:
                files = [FileEntry("README.md")]
                if repo_kind == "gguf" and release.quality is not None:
                    files.append(FileEntry(CHART_FILE))
                if repo_kind == "bf16" and has_selection(release):
                    files.append(FileEntry(SELECTION_CHART))
                out.append(Artifact(id=f"card:{repo_kind}", kind="card", root=f"cards/{repo_kind}",
                                    files=files, destination=Destination(kind="hub", repo=section.repo,
                                                                         path_in_repo=""),
                                    recipe={"template": f"{repo_kind}.md.j2"}))
        if d.ollama:
            out.append(Artifact(id="card:ollama", kind="card", root="cards/ollama", files=[FileEntry("README.md")],
                                recipe={"template": "ollama.md.j2", "note": "pasted on ollama.com (no push API)"}))
        return out

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        return []

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("cards", ctx.inputs, provenance(ctx.release), _described(ctx),
                      [s.definition.model_dump() for s in ctx.release.siblings])

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..cards import build_preview, render_cards  # lazy: jinja2 and huggingface_hub at start-up

        withheld = withheld_in_use(ctx.release, ctx.artifacts)  # a card cannot link an unpublished tier
        if withheld:
            raise InputError(withheld)
        cards_dir = ctx.dist / "cards"
        built = render_cards(ctx.release, ctx.artifacts, cards_dir, provenance=provenance(ctx.release))
        for a in built:
            a.files = ctx.file_entries(ctx.artifact_dir(a), [f.path for f in a.files])
        index = build_preview(ctx.release, ctx.artifacts, cards_dir, ctx.dist / "preview")
        ctx.say(f"cards: {len(built)} rendered; preview {index}")
        return built

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        from ..cards import check_links  # lazy: jinja2 and huggingface_hub at start-up

        text = (ctx.artifact_dir(a) / "README.md").read_text(encoding="utf-8")
        try:
            check_links(ctx.release, ctx.artifacts, {a.id: text})
        except InputError as exc:
            return [str(p) for p in exc.problems]
        return []


CARD = CardKind()
