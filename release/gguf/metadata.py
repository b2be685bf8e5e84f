"""The release's own `general.*` metadata for its GGUF files, handed to llama.cpp's converter.

Without it the converter fills these keys from whatever the checkpoint folder holds: the sampling keys
from the base's generation_config.json (which contradict the release's Ollama parameters), license and
base model from a copied base model card or nothing, the basename from the folder name.

convert_hf_to_gguf.py reads two sources (gguf-py/gguf/metadata.py `Metadata.load`, llama.cpp 0c1e570):
the `--metadata` override file, keyed by the writer's `general.*` names (`general.base_models` as a list of
dicts), and the model card's YAML header, the only place it reads `license` from. Quantized tiers copy
every key of the F16 conversion (llama_model_quantize), so both reach every tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..spec.load import Release

# Ollama Modelfile parameter → the GGUF key llama.cpp reads as that sampler's default (gguf-py constants.py
# Keys.General.SAMPLING_*). Parameters the GGUF has no key for (num_ctx, stop, typical_p …) are not written.
SAMPLING_KEYS: dict[str, tuple[str, type]] = {
    "temperature": ("general.sampling.temp", float),
    "top_k": ("general.sampling.top_k", int),
    "top_p": ("general.sampling.top_p", float),
    "min_p": ("general.sampling.min_p", float),
    "repeat_penalty": ("general.sampling.penalty_repeat", float),
    "repeat_last_n": ("general.sampling.penalty_last_n", int),
}


@dataclass(frozen=True)
class GgufMetadata:
    """What the converter is given: `overrides` for its --metadata file, `license` for the model card."""

    overrides: dict[str, Any]
    license: str

    def card(self) -> str:
        """A model card holding only the YAML header the converter reads `general.license` from."""
        import json

        # JSON strings are valid YAML scalars, so any license id round-trips unchanged.
        return f"---\nlicense: {json.dumps(self.license)}\n---\n"


def base_model_entry(repo: str) -> dict[str, str]:
    """`general.base_model.N.*` for a Hub repo, named as the converter names a model card's `base_model`
    (gguf Metadata.get_model_id_components / id_to_title): "google/gemma-4-26B-A4B-it" → name
    "Gemma 4 26B A4B It", organization "Google", and the repo's URL."""
    from gguf.metadata import Metadata

    name, org, _basename, _finetune, version, _size = Metadata.get_model_id_components(repo, 0)
    entry = {"name": Metadata.id_to_title(name or repo)}
    if org:
        entry["organization"] = Metadata.id_to_title(org)
    if version:
        entry["version"] = version
    entry["repo_url"] = f"https://huggingface.co/{repo}"
    return entry


def converted_from(release: Release) -> str:
    """The repo the GGUFs are converted from: the pruned BF16 repo of this release (the card's `base_model`
    with `base_model_relation: quantized`), or the base model when the release publishes no BF16 repo."""
    d = release.definition
    return d.bf16.repo if d.bf16 is not None else d.base.repo


def metadata_inputs(release: Release) -> dict[str, Any]:
    """Everything of the definition the metadata is made from (for input hashes: a change reconverts)."""
    d = release.definition
    assert d.gguf is not None
    params = dict(d.ollama.parameters) if d.ollama and d.ollama.parameters else {}
    return {"license": d.release.license, "license_name": d.release.license_name,
            "license_link": d.release.license_link, "base": converted_from(release), "prefix": d.gguf.prefix,
            "sampling": {k: v for k, v in params.items() if k in SAMPLING_KEYS}}


def release_metadata(release: Release) -> GgufMetadata:
    """The release's values: license from [release], the base model the repo the files are converted from
    (`converted_from`: the pruned BF16 repo, as the GGUF card's model tree says), the basename from [gguf]
    prefix, sampling from [ollama] parameters where given (the base's generation_config.json values stay
    for the others)."""
    i = metadata_inputs(release)
    overrides: dict[str, Any] = {
        "general.basename": i["prefix"],
        "general.base_models": [base_model_entry(i["base"])],
        # The converter guesses these from the folder name and config.json's _name_or_path ("pruned",
        # a temporary folder, the base's organisation); null leaves them out (and size_label is then
        # computed from the tensors).
        "general.finetune": None,
        "general.version": None,
        "general.organization": None,
        "general.size_label": None,
    }
    if i["license_name"]:
        overrides["general.license.name"] = i["license_name"]
    if i["license_link"]:
        overrides["general.license.link"] = i["license_link"]
    for name, value in i["sampling"].items():
        key, kind = SAMPLING_KEYS[name]
        overrides[key] = kind(value)
    return GgufMetadata(overrides, i["license"])
