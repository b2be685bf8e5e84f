"""The release definition `pipelines/<name>/release.toml`: its schema (strict: unknown keys and wrong
types are errors) and the field-level rules that go beyond types.

Paths inside a definition are relative to its own folder, so a copied folder works anywhere; they
never lead out of it (`paths.resolve_inside`). Numbers carry bounds a real release stays far inside,
so a typo (`imatrix_chunks = 10**30`, `split_size_gb = inf`) is an error at `check`, not a crash later.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .bounds import MAX_EXPERTS

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
RelPath = Annotated[str, StringConstraints(min_length=1)]  # a path relative to the pipeline folder
ParamValue = int | float | bool | str | list[str]
Override = Annotated[list[NonEmpty], Field(min_length=2, max_length=2)]  # [regex, ggml type]
# The Hub takes files of at most 50 GB (huggingface.co/docs/hub/storage-limits); the 1 MB floor keeps a
# typo like 1e-9 from asking gguf-split for millions of shards (tests split the demo at 2 MB).
SplitSizeGB = Annotated[float, Field(ge=0.001, le=50, allow_inf_nan=False)]
MAX_IMATRIX_CHUNKS = 10_000  # of 512 tokens each: 5M tokens; calibration sets in use are a few hundred chunks
VramGB = Annotated[float, Field(gt=0, le=4096, allow_inf_nan=False)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DestinationSection(Section):
    """A section that publishes somewhere and gets a card of its own (a Hub repo or Ollama tags): the cards,
    the links and the preview iterate the definition's destinations, so they list no kinds themselves."""


class HubRepoSection(DestinationSection):
    """A destination that is a Hub repo."""

    repo: NonEmpty


class ReleaseSection(Section):
    name: NonEmpty
    title: NonEmpty
    summary: NonEmpty
    owner: NonEmpty  # Hugging Face namespace of every repo of the release
    quantized_by: str = ""  # who made the quantized repos (GGUF, NVFP4 cards' `quantized_by`); default: owner
    license: NonEmpty  # Hub license id (e.g. "apache-2.0", "gemma", "other")
    license_name: str = ""
    license_link: str = ""
    siblings: list[NonEmpty] = []  # other releases (pipeline folder names) compared in the cards
    pipeline_tag: NonEmpty = "text-generation"
    tags: list[NonEmpty] = []  # extra Hub tags for every card
    version_tag: str = ""  # git/Hub tag set after publishing; default: the release name
    git_tagger: str = ""  # "Name <email>" of the git tag (release/gittag.py; default: the workflow's actor)
    private: bool = False  # repos stay private after promotion (repos the release creates are private until then)


class BaseSection(Section):
    repo: NonEmpty  # the unpruned model on the Hub
    revision: NonEmpty  # pinned commit sha
    config: RelPath = "base-config.json"  # the base config.json, recorded so check needs no weights
    path: str = ""  # local copy of the checkpoint (optional; fetched from the Hub when absent)
    path_outside: bool = False  # allow `path` outside the release folder (a checkpoint kept elsewhere)
    generator: Literal["", "tiny-gemma4"] = ""  # demo only: generate `path` locally when absent
    label: NonEmpty = "base"  # the reference model's short label in tables, e.g. "128e"
    parameters: Annotated[int, Field(ge=1, le=10**15)] | None = None  # total parameters of the base (cards)


class PruneSection(Section):
    drop_map: RelPath = "dropmap.json"
    experts_kept: int = Field(ge=1, le=MAX_EXPERTS)  # experts kept per layer (cross-checked with the map)
    label: NonEmpty = "pruned"  # the variant's short label, e.g. "98e v4"
    method: str = ""  # one paragraph: how the drop map was chosen (cards)


class DropmapSection(Section):
    """How `release dropmap NAME` derives [prune] drop_map from calibration text (optional)."""

    recipe: Literal["pooled", "max-class"] = "max-class"
    calibration: RelPath = "calibration"  # folder with one .txt or .jsonl file per task class
    keep_top_per_class: int = Field(default=0, ge=0)  # each class's N best experts are always kept
    class_weights: dict[NonEmpty, float] = {}  # class → weight (default 1)
    max_tokens: int = Field(default=512, gt=0)  # per calibration sample
    # The release makes [prune] drop_map itself: a `dropmap` artifact built by a job of its own (on a GPU
    # runner when there is one) before anything is pruned. The file must then not exist in the folder.
    derive: bool = False


class Bf16Section(HubRepoSection):
    pass


class GgufRecipe(Section):
    """A CD-* mixed recipe: an ftype plus ordered regex → ggml type overrides."""

    base: NonEmpty  # ftype the rest of the tensors follow, e.g. "Q3_K_M"
    embed: str = ""  # ggml type of token_embd, e.g. "q8_0"
    output: str = ""  # ggml type of output (lm_head)
    overrides: list[Override] = []  # ordered; the first matching regex wins
    note: str = ""


class GgufSection(HubRepoSection):
    prefix: NonEmpty  # file names are <prefix>-<TIER>.gguf
    model_name: str = ""  # general.name; default: the release title
    baseline: Literal["F16", "BF16"] = "F16"
    publish_baseline: bool = True
    tiers: list[NonEmpty] = []  # standard tiers, `_L`/`_XL` variants and recipe names, in card order
    recipes: dict[NonEmpty, GgufRecipe] = {}
    imatrix: str = ""  # calibration .txt in the pipeline folder, or an existing imatrix file
    imatrix_chunks: int = Field(default=16, ge=1, le=MAX_IMATRIX_CHUNKS)
    split_size_gb: SplitSizeGB = 50.0
    recommended: list[NonEmpty] = []
    notes: dict[NonEmpty, str] = {}  # tier → note in the quant table
    removed: list[NonEmpty] = []  # tiers built earlier and deliberately not shipped (cards explain)


class Nvfp4Section(HubRepoSection):
    format: Literal["compressed-tensors", "modelopt"] = "compressed-tensors"
    ignore: list[NonEmpty] = []  # extra regexes of modules kept BF16 (router, embeddings … always are)
    quantize_attention: bool = True
    quantize_dense_mlp: bool = True


class OllamaMessage(Section):
    role: Literal["system", "user", "assistant"]
    content: str


class OllamaSection(DestinationSection):
    model: NonEmpty  # namespace/model
    registry: NonEmpty = "https://registry.ollama.ai"
    insecure: bool = False  # allow plain http to a non-loopback registry
    tags: dict[NonEmpty, NonEmpty]  # ollama tag → GGUF tier
    latest: NonEmpty  # the tag also pushed as :latest
    template: str = ""  # Go template file
    system: str = ""  # system prompt file
    license: str = ""  # license text file
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    parameters: dict[NonEmpty, ParamValue] = {}
    messages: list[OllamaMessage] = []
    vram_gb: dict[NonEmpty, VramGB] = {}  # per tag, the VRAM the card recommends


class QuickStart(Section):
    """Per-card picks for the quick-start sections."""

    gguf_tier: str = ""  # llama.cpp example tier
    ollama_tags: list[NonEmpty] = []  # tags shown in the Ollama quick start, in order


class CardsSection(Section):
    scores: RelPath = "scores.json"
    when_to_use: str = ""  # what this release is the better pick for (shown on siblings' cards too)
    highlights: list[str] = []  # short bullets under the title
    quick_start: QuickStart = QuickStart()
    extra: dict[Literal["bf16", "gguf", "nvfp4", "ollama"], str] = {}  # free Markdown appended per card


class JobsSection(Section):
    """How `release plan NAME --matrix` cuts the release into jobs for separate machines."""

    tiers_per_job: int = Field(default=3, ge=1, le=64)  # GGUF tiers sharing one download of the baseline
    max_disk_gb: float = Field(default=70.0, gt=0, le=100_000)  # a fan-out job's disk budget
    max_ram_gb: float = Field(default=16.0, gt=0, le=10_000)  # a fan-out job's memory budget
    max_hours: float = Field(default=4.0, gt=0, le=5 * 24)  # a fan-out job's time budget (hosted: 6 h)


class QualitySection(Section):
    """How every quantized artifact is measured against its reference (release/quality/)."""

    text: RelPath = "heldout.txt"  # held-out text in the release folder; never the imatrix calibration text
    max_tokens: int = Field(default=8192, ge=64, le=1_000_000)  # of the text, cut into whole windows
    # A window; its second half is scored (llama-perplexity). Its logits are held at once: 8192 × a 262 144-token
    # vocabulary is 8.6 GB of float32.
    context: int = Field(default=512, ge=16, le=8192)
    max_kld: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)  # nats/token; above: removed
    min_top1: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)  # agreement 0–1; below: removed


class LmEvalRow(Section):
    """One lm-evaluation-harness metric mapped to a benchmark row of scores.json."""

    task: NonEmpty  # the harness's task (or group) name, e.g. "gsm8k"
    metric: Annotated[str, StringConstraints(pattern=r"^[^,]+,[^,]+$")]  # "<metric>,<filter>"
    benchmark: NonEmpty  # the row's name, e.g. "GSM8K"
    label: str = ""  # the row's metric column, e.g. "flex" (default: the metric's name)
    percent: bool = True  # a fraction 0–1 shown as a percentage; false for an unbounded metric


class ReleaseDefinition(Section):
    release: ReleaseSection
    base: BaseSection
    prune: PruneSection
    dropmap: DropmapSection | None = None
    bf16: Bf16Section | None = None
    gguf: GgufSection | None = None
    nvfp4: Nvfp4Section | None = None
    ollama: OllamaSection | None = None
    cards: CardsSection = CardsSection()
    jobs: JobsSection = JobsSection()
    quality: QualitySection | None = None  # absent: measured with the defaults when heldout.txt exists
    lm_eval: list[LmEvalRow] = []  # `release scores import`: task metrics → rows (besides the defaults)

    def sections(self) -> dict[str, DestinationSection]:
        """The destinations this definition sets, by kind, in the definition's order: each gets a card."""
        return {name: s for name in type(self).model_fields if isinstance(s := getattr(self, name), DestinationSection)}

    def hub_sections(self) -> dict[str, HubRepoSection]:
        """The destinations that are Hub repos, by kind."""
        return {name: s for name, s in self.sections().items() if isinstance(s, HubRepoSection)}
