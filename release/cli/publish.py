"""`release publish` (one machine, a job, finish; --local rehearsals), `clean`, `canary` and `status`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..completion import complete_release
from ..distributed.canary import run_canary
from ..distributed.run import JobSummary
from ..errors import InputError
from ..flow import PublishSummary
from ..outcome import ReleaseCommand
from ..pipeline import Context, Options
from ..publishing import PublishRequest, clean_release, publish_release, status_report
from ..tables import print_files, print_status
from .common import (
    JOBS,
    MEMORY_GB,
    FiniteFloat,
    dist_option,
    err,
    from_option,
    handle_errors,
    hub_endpoint_option,
    human,
    only_option,
    out,
)


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--dry-run", is_flag=True,
              help="Build and verify, plan against the remotes, show the diff; change nothing.")
@only_option("Publish", "; hub = every Hub repo")
@click.option("--job", "job_id", default=None, metavar="ID",
              help="Run one job of `release plan NAME --matrix` (for a machine of its own): fetch its inputs from "
                   "the staging branches, build, stage its outputs on its own branch. Main is not touched.")
@click.option("--finish", is_flag=True,
              help="Promote what the jobs staged: one commit per repo on main, tags, collection, Ollama manifests.")
@click.option("--local", is_flag=True,
              help="Rehearse against a local Hub and registry on 127.0.0.1 (no account, no network).")
@hub_endpoint_option()
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--prune-remote", is_flag=True, help="Delete remote files that are not part of the release.")
@from_option("Rebuild this kind and everything made from it, even if inputs are unchanged.")
@click.option("--force", is_flag=True, help="Rebuild every selected artifact.")
@click.option("--jobs", type=JOBS, default=2, show_default=True, help="Parallel build jobs.")
@click.option("--max-memory", "max_memory_gb", type=MEMORY_GB, default=None,
              help="Memory budget for parallel jobs, in GB.")
@click.option("--via-ollama-cli", is_flag=True,
              help="Push Ollama tags with the installed `ollama` binary (create + push), then verify by reading back.")
@click.option("--no-git-tag", "git_tag", is_flag=True, flag_value=False, default=True,
              help="Don't tag release/NAME in the pipelines repo.")
@click.option("--move-tags", is_flag=True,
              help="Move the release's Hub tags and git tag to the new heads (by default an existing tag stays).")
@click.option("--hub-max-wait", type=FiniteFloat(0, 86400, " s"), envvar="RELEASE_HUB_MAX_WAIT", default=900.0,
              show_default=True, help="Longest wait, in seconds, for the Hub to take a commit (busy repo, quota).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def publish(as_json: bool, **given: Any) -> None:
    """Run the whole release: build what changed, verify, publish to the Hub and the registry, tag.

    Idempotent: a rerun with nothing changed sends nothing and makes no commit. Across machines, run
    each job of `release plan NAME --matrix` with --job ID, then --finish once. Credentials and access
    are checked before anything is built (not with --local).
    """
    result = publish_release(PublishRequest(**given), err)
    if result.job is not None:
        print_job(result.job, as_json)
    elif result.summary is not None:
        print_summary(result.ctx, result.summary, as_json, local_hub=result.local_hub)


def print_job(summary: JobSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    for note in summary.notes:
        err.print(note, soft_wrap=True)
    if summary.skipped:
        out.print(f"[green]✓[/] job {summary.job}: nothing to do ({', '.join(summary.branches)})")
        return
    verb = "would stage" if summary.dry_run else "staged"
    out.print(f"[green]✓[/] job {summary.job}: built {', '.join(summary.built) or 'nothing (up to date)'}; "
              f"fetched {summary.fetched_files} files ({human(summary.fetched_bytes)}); {verb} "
              f"{summary.uploaded_files} files ({human(summary.uploaded_bytes)}) on {', '.join(summary.branches)} "
              f"({'; '.join(f'{u}: {what}' for u, what in summary.units.items())})"
              + ("" if summary.dry_run else f" in {summary.commits} commits")
              + (f"; {len(summary.ollama_blobs)} Ollama model blobs ({human(summary.ollama_bytes)})"
                 if summary.ollama_blobs else ""))


def print_summary(ctx: Context, summary: PublishSummary, as_json: bool, local_hub: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    title = "dry run: nothing was changed" if summary.dry_run else f"release {ctx.release.name} published"
    table = Table(title=title)
    for col in ("destination", "sent", "bytes", "unchanged", "commits / manifest", "link"):
        table.add_column(col)
    for r in summary.repos:
        sent = f"{r.sent_files} files" + (" (planned)" if summary.dry_run else "")
        nbytes = r.planned_bytes if summary.dry_run else r.sent_bytes
        table.add_row(r.repo, sent, human(nbytes), str(r.unchanged_files), str(r.commits), r.url)
    for t in summary.tags:
        table.add_row(t.ref, f"{t.sent_blobs} blobs", human(t.planned_bytes if summary.dry_run else t.sent_bytes),
                      f"{t.unchanged_blobs} blobs", t.manifest, t.digest[7:19] if t.digest else "")
    out.print(table)
    if summary.dry_run:
        print_files(out, [(r.repo, r.files) for r in summary.repos] + [(t.ref, t.files) for t in summary.tags])
    for note in summary.notes:
        err.print(f"note: {note}", soft_wrap=True)
    sent = f"bytes to send: {human(summary.bytes_to_send)}" if summary.dry_run else \
        f"commits: {summary.commits}; bytes sent: {human(summary.bytes_sent)}"
    err.print(f"built: {', '.join(summary.built) or 'nothing (up to date)'}; {sent}"
              + (f"; git tag {summary.git_tag}" if summary.git_tag else ""))
    if local_hub:
        err.print(f"local Hub state: {ctx.dist / 'local' / 'hub'} (served at {local_hub} during the run)")
    err.print(f"preview: {ctx.dist / 'preview' / 'index.html'}  manifest: {ctx.dist / 'manifest.json'}")


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@click.option("--staging", is_flag=True, help="Delete every staging branch (release-NAME-*) of every destination repo.")
@hub_endpoint_option()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@handle_errors
def clean(name: str, staging: bool, hub_endpoint: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove what a release across machines leaves on the Hub: with --staging, the staging branches of
    this run and of earlier ones, and the promotion record (run it once the git tag is pushed)."""
    if not staging:
        raise InputError("say what to clean: --staging (the release's staging branches on the Hub)", file="clean")
    release, repos, removed = clean_release(name, hub_endpoint, err, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"release": release.name, "dry_run": dry_run,
                               "branches": [{"repo": r, "branch": b} for r, b in removed]}, indent=2))
        return
    for repo, branch in removed:
        out.print(f"{'would delete' if dry_run else 'deleted'} {repo}@{branch}", soft_wrap=True)
    if not removed:
        out.print(f"[green]✓[/] no staging branch of {release.name} on {', '.join(repos)}")


@click.command(cls=ReleaseCommand)
@hub_endpoint_option()
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: ollama.com's).")
@click.option("--namespace", default=None, help="Where the scratch repos and model go (default: the token's user).")
@dist_option
@click.option("--keep", is_flag=True, help="Keep the scratch Hub repos (and the workspace) for a look.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def canary(hub_endpoint: str | None, ollama_registry: str | None, namespace: str | None, dist: Path, keep: bool,
           as_json: bool) -> None:
    """Release the bundled demo across machines (plan, prepare, the fan-out at once, finish: one process
    each) into private scratch repos NS/release-canary-<run>-…, verify it, then delete those repos. The
    Ollama model is NS/release-canary, overwritten each run."""
    result = run_canary(hub_endpoint=hub_endpoint, ollama_registry=ollama_registry, namespace=namespace,
                        dist=dist, keep=keep, say=lambda line: err.print(escape(line), soft_wrap=True))
    if not keep:
        shutil.rmtree(result.workspace, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    out.print(f"[green]✓[/] canary {result.run}: {len(result.jobs)} jobs, {result.verified_files} files verified on "
              f"main, {len(result.ollama)} Ollama tags read back; repos private while staged: "
              f"{all(r.get('private_while_staged') for r in result.repos.values() if 'private_while_staged' in r)}; "
              + ("kept: " + ", ".join(result.repos) if keep else
                 f"deleted {sum(1 for r in result.repos.values() if r.get('deleted'))} repos"), soft_wrap=True)


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@hub_endpoint_option()
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--local", is_flag=True, help="The rehearsal Hub and registry of `publish --local` (dist/NAME/local/).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def status(name: str, dist: Path, hub_endpoint: str | None, ollama_registry: str | None, local: bool,
           as_json: bool) -> None:
    """What is published where: per repo its head, files and whether they match what is built here, the
    staging branches jobs left; per Ollama tag its digest; and what a publish would do next. Read-only."""
    report = status_report(name, Options(dist_root=dist, hub_endpoint=hub_endpoint, ollama_registry=ollama_registry),
                           err, local=local)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    print_status(out, report)
