"""The artifact manifest: `dist/<release>/manifest.json`, written by plan, build and publish.

Builders add `Artifact`s to the registry; publishers consume them. The manifest is the registry
serialised with provenance (tool version, pipelines commit, input hashes) and, after `plan`, the
remote diff. The schema is versioned; readers refuse an unknown version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .fsutil import atomic_write_text

SCHEMA = "moe-release/manifest/1"

ArtifactKind = str  # one of release.kinds.FLOW (the manifest does not list them)


@dataclass
class FileEntry:
    """One file of an artifact. `path` is relative to the artifact's root and equals its remote path."""

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass
class Destination:
    """Where an artifact goes: a Hub repo (+ folder) or an Ollama registry name:tag."""

    kind: Literal["hub", "ollama"]
    repo: str = ""
    path_in_repo: str = ""
    registry: str = ""
    name: str = ""
    tag: str = ""

    def url(self, hub_endpoint: str = "https://huggingface.co") -> str:
        if self.kind == "hub":
            return f"{hub_endpoint.rstrip('/')}/{self.repo}"
        return f"{self.registry.rstrip('/')}/{self.name}:{self.tag}"


@dataclass
class RemoteFile:
    """The remote diff of one file: what publishing would do with it."""

    path: str
    action: Literal["upload", "unchanged", "delete", "keep"]
    size: int = 0


@dataclass
class Artifact:
    """A typed artifact of the release. `id` is `kind` or `kind:ID` (e.g. `gguf:Q4_K_M`)."""

    id: str
    kind: str
    status: Literal["planned", "built", "published"] = "planned"
    root: str = ""  # folder relative to dist/<release>/ holding the files
    files: list[FileEntry] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    destination: Destination | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # sizes, bpw, histograms, parameter counts …
    remote: list[RemoteFile] | None = None
    needs: list[str] = field(default_factory=list)  # ids it is built from (its kind's `needs`, release/kinds/)

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        dest = data.get("destination")
        remote = data.get("remote")
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data.get("status", "planned"),
            root=data.get("root", ""),
            files=[FileEntry(**f) for f in data.get("files", [])],
            recipe=data.get("recipe", {}),
            destination=Destination(**dest) if dest else None,
            facts=data.get("facts", {}),
            remote=[RemoteFile(**r) for r in remote] if remote is not None else None,
            needs=list(data.get("needs", [])),
        )


class ArtifactRegistry:
    """Artifacts by id, in insertion order; replacing an id keeps its position."""

    def __init__(self, artifacts: list[Artifact] | None = None) -> None:
        self._by_id: dict[str, Artifact] = {}
        for a in artifacts or []:
            self.add(a)

    def add(self, artifact: Artifact) -> Artifact:
        self._by_id[artifact.id] = artifact
        return artifact

    def get(self, artifact_id: str) -> Artifact | None:
        return self._by_id.get(artifact_id)

    def __getitem__(self, artifact_id: str) -> Artifact:
        return self._by_id[artifact_id]

    def __contains__(self, artifact_id: object) -> bool:
        return artifact_id in self._by_id

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def of_kind(self, kind: str) -> list[Artifact]:
        return [a for a in self._by_id.values() if a.kind == kind]


@dataclass
class Manifest:
    release: str
    tool_version: str
    pipelines_git: dict[str, Any]
    inputs: dict[str, str]
    artifacts: ArtifactRegistry
    schema: str = SCHEMA
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "release": self.release,
            "tool_version": self.tool_version,
            "pipelines_git": self.pipelines_git,
            "inputs": self.inputs,
            "artifacts": [a.to_json() for a in self.artifacts],
            "notes": self.notes,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    def write(self, path: Path) -> None:
        atomic_write_text(path, self.dumps())

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read manifest: {exc}", file=str(path)) from exc
        if data.get("schema") != SCHEMA:
            raise InputError(f"unknown schema {data.get('schema')!r}, expected {SCHEMA!r}", file=str(path),
                             field="schema")
        return cls(
            release=data["release"],
            tool_version=data["tool_version"],
            pipelines_git=data.get("pipelines_git", {}),
            inputs=data.get("inputs", {}),
            artifacts=ArtifactRegistry([Artifact.from_json(a) for a in data.get("artifacts", [])]),
            notes=data.get("notes", []),
        )
