"""Push, pull and verify Ollama tags over the registry protocol (ollama.com or any OCI registry).

Split by concern: `transport` (connections, retries, signed-token auth), `blobs` (the `RegistryClient`:
blob and manifest requests, resumable uploads), `tags` (whole tags: push, verify, plan, pull).

Guarantees:
- Every blob is checked with HEAD first; a blob the repository already has is never sent again, so a
  rerun of a finished publish sends no blob bytes and no manifest that is already there.
- A failed part (5xx, 429, connection reset) is retried with backoff after asking the upload session
  how far it got; a session the registry dropped is restarted from zero.
- No manifest is sent before a HEAD has confirmed every blob it names (digest and size), and every
  manifest is read back (docker v2 Accept) and compared byte for byte afterwards.
- Tokens and the signing key never appear in logs or errors.
"""

from .blobs import MAX_PART, MIN_PART, RegistryClient, part_size
from .tags import (
           PlanEntry,
           PushResult,
           plan_tags,
           pull_tag,
           push_blobs,
           push_tags,
           put_manifests,
           remote_tags,
           verify_tags,
)
from .transport import RETRY_STATUS, Response

__all__ = ["MAX_PART", "MIN_PART", "RETRY_STATUS", "PlanEntry", "PushResult", "RegistryClient", "Response", "part_size",
           "plan_tags", "pull_tag", "push_blobs", "push_tags", "put_manifests", "remote_tags", "verify_tags"]
