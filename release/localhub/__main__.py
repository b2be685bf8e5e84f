"""`python -m release.localhub --root DIR --port N [--token NAMESPACE=TOKEN …]`: run the stand-in Hub.

Strict like huggingface.co by default: one commit at a time per repository, 128 commits per repository
per hour (`--commit-quota COUNT/SECONDS`, `none` for no quota), a token for every write."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from . import LocalHub
from .limits import DEFAULT_COMMIT_QUOTA


def _quota(text: str) -> tuple[int, float] | None:
    if text == "none":
        return None
    count, sep, window = text.partition("/")
    try:
        quota = (int(count), float(window))
    except ValueError:
        quota = (0, 0.0)
    if not sep or quota[0] < 1 or quota[1] <= 0:
        raise argparse.ArgumentTypeError(f"COUNT/SECONDS (e.g. 128/3600) or none, got {text!r}")
    return quota


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m release.localhub", description=__doc__)
    ap.add_argument("--root", required=True, help="folder holding the hub's state (kept across restarts)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="API port (0: any free port)")
    ap.add_argument("--storage-port", type=int, default=0, help="LFS storage origin port (0: any free port)")
    ap.add_argument("--token", action="append", default=[], metavar="NAMESPACE=TOKEN",
                    help="a token allowed to write to NAMESPACE (repeat; one token may cover several)")
    ap.add_argument("--chunk-size", type=int, default=16 << 20, help="multipart part size in bytes")
    ap.add_argument("--multipart-threshold", type=int, default=64 << 20)
    ap.add_argument("--commit-quota", type=_quota, default=DEFAULT_COMMIT_QUOTA, metavar="COUNT/SECONDS",
                    help="commits per repository per window (default 128/3600; none: no quota)")
    ap.add_argument("--commit-seconds", type=float, default=0.0,
                    help="how long each commit holds its repository (server-side work; default 0)")
    args = ap.parse_args(argv)
    tokens: dict[str, list[str]] = {}
    for item in args.token:
        ns, sep, tok = item.partition("=")
        if not sep or not ns or not tok:
            ap.error(f"--token wants NAMESPACE=TOKEN, got {item.split('=')[0]}=…")
        tokens.setdefault(tok, []).append(ns)
    hub = LocalHub(args.root, tokens, host=args.host, port=args.port, storage_port=args.storage_port,
                   chunk_size=args.chunk_size, multipart_threshold=args.multipart_threshold,
                   commit_quota=args.commit_quota, commit_seconds=args.commit_seconds)
    url = hub.start()
    # Namespaces only: the tokens themselves are never printed.
    print(f"localhub listening on {url} (storage {hub.storage_url}); writable namespaces: "
          f"{', '.join(sorted({ns for v in tokens.values() for ns in v})) or 'none'}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
