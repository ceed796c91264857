"""``twcactl cert renew-due``: renew every due certificate in one command (issue 17; the workflow is
:mod:`twcactl.authority.renew_due`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, ca_passphrase_option, ca_passphrase_provider, current_operator, json_option
from twcactl.cli.output import emit, error_document, safe

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.authority.renew_due import DueResult, Progress, RenewDueOutcome


@click.command("renew-due", epilog="""\b
Examples:
  twcactl cert renew-due --within 30 --out-dir /etc/twcactl/live --new-key \\
      --exec 'systemctl reload nginx'
  twcactl cert renew-due --within 60 --account 70759028-01 --dry-run --json
  twcactl cert renew-due --within 30 --out-dir live --pfx-password env:PFX_PASSWORD --json
  twcactl cert renew-due --within 30 --out-dir live --new-key --jobs 2   # keys made on 2 CPUs
\b
Per certificate, DIR/<CN>/ holds key.pem (0600), cert.pem, chain.pem, fullchain.pem
and, with --pfx-password, cert.pfx.  --exec runs after each renewal with TWCACTL_CERT,
TWCACTL_KEY, TWCACTL_CHAIN, TWCACTL_FULLCHAIN, TWCACTL_PFX, TWCACTL_DIR, TWCACTL_CN,
TWCACTL_SERIAL (the new serial) and TWCACTL_RENEWED (the old one) set.
With --new-key, --jobs worker processes make the new keys ahead while the
certificates are renewed one after the other, in the same order as --jobs 1.
""")
@click.option("--within", "within_days", required=True, type=click.IntRange(0, 36_500), metavar="DAYS",
              help="Renew valid certificates ending within DAYS (even before the renewal window opens).")
@click.option("--account", "account_id", metavar="ID", help="Only this account's certificates.")
@click.option("--profile", metavar="P", help="Only certificates of this profile (ssl, wildcard, ev, ...).")
@click.option("--new-key", is_flag=True, help="A fresh key of the old key's type and size (default: the same key, "
              "read from DIR/<CN>/key.pem; a certificate without it is skipped).")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Where DIR/<CN>/ directories are written (needed unless --dry-run).")
@click.option("--pfx-password", metavar="SOURCE", help="Also write DIR/<CN>/cert.pfx under this password.")
@click.option("--exec", "exec_cmd", metavar="CMD", help="A shell command run after each renewal (a deploy hook).")
@click.option("--dry-run", is_flag=True, help="Say what would be renewed; change and write nothing.")
@click.option("--jobs", type=click.IntRange(min=1), metavar="N",
              help="Worker processes that make the --new-key keys ahead (default: the CPUs).")
@ca_passphrase_option
@json_option
def renew_due(within_days: int, account_id: str | None, profile: str | None, new_key: bool, out_dir: Path | None,
              pfx_password: str | None, exec_cmd: str | None, dry_run: bool, ca_passphrase: str | None,
              jobs: int | None = None) -> None:
    """Renew every valid, not yet renewed certificate ending within --within DAYS.

    Each certificate renews once, in its own transaction, under the cert renew
    rules (same CN, validity continuing from the old notAfter, charged like an
    issue); a second run renews nothing.  One outcome per certificate:
    renewed, skipped (with why) or failed (with the error).  Exit 0 only if
    none failed (and every --exec command succeeded).
    """
    from twcactl.authority.parallel import default_jobs
    from twcactl.authority.renew_due import RenewDueRequest, hook_base_environment, shell_hook
    from twcactl.authority.renew_due import renew_due as renew_due_workflow
    from twcactl.cli.secrets import get_secret

    password = get_secret(pfx_password, option="--pfx-password", what="PFX password") if pfx_password else None
    request = RenewDueRequest(within_days=within_days, account=account_id, profile=profile, new_key=new_key,
                              out_dir=out_dir, pfx_password=password, dry_run=dry_run)
    store = app().open_store()
    try:
        sources = (ca_passphrase, pfx_password, app().store_password_source, store.settings().smtp_password_source)
        hook = shell_hook(exec_cmd, hook_base_environment(os.environ, sources)) if exec_cmd else None
        with _progress_bar() as progress:
            outcome = renew_due_workflow(store, request, operator=current_operator(),
                                         passphrase=ca_passphrase_provider(ca_passphrase), hook=hook,
                                         progress=progress, jobs=jobs or default_jobs())
    finally:
        store.close()
    _render(outcome, within_days, dry_run)
    failed = [r for r in outcome.results if r.outcome == "failed" and r.error is not None]
    if failed:
        raise SystemExit(failed[0].error.exit_code if failed[0].error else 1)
    if outcome.hook_failed:
        raise SystemExit(1)


@contextlib.contextmanager
def _progress_bar() -> Iterator[Progress | None]:
    """A rich progress bar on stderr when stderr is a terminal (and not --quiet); else no callback."""
    if app().quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    with RichProgress(console=Console(stderr=True, markup=False, highlight=False), transient=True) as bar:
        task = bar.add_task("renewing", total=None)

        def advance(done: int, total: int, result: DueResult) -> None:
            bar.update(task, completed=done, total=total, description=f"{result.outcome} {result.cn or ''}")

        yield advance


def _document(outcome: RenewDueOutcome, within_days: int, dry_run: bool) -> dict[str, Any]:
    results = []
    for r in outcome.results:
        doc = r.to_json()
        if r.error is not None:
            doc["error"] = error_document(r.error)["error"]
        results.append(doc)
    return {"within_days": within_days, "dry_run": dry_run, "results": results,
            "renewed": outcome.count("renewed"), "would_renew": outcome.count("would-renew"),
            "skipped": outcome.count("skipped"), "failed": outcome.count("failed")}


def _render(outcome: RenewDueOutcome, within_days: int, dry_run: bool) -> None:
    doc = _document(outcome, within_days, dry_run)
    if any(r.pending for r in outcome.results):
        sys.stderr.write("warning: some renewals are committed but their files are pending; see each result\n")

    def human(console: Console) -> None:
        for r in outcome.results:
            line = f"{r.outcome:<12} {r.serial}  CN={safe(r.cn or '')}  ends {r.not_after:%Y-%m-%d}"
            if r.new_serial:
                line += f"  -> {r.new_serial} until {r.new_not_after:%Y-%m-%d}" if r.new_not_after else ""
            console.print(line)
            if r.why:
                console.print(f"  why: {safe(r.why)}")
            if r.error is not None:
                console.print(f"  error: {safe(r.error.message)}")
            if r.directory and r.outcome == "renewed":
                console.print(f"  files: {safe(r.directory)}/")
            for warning in r.warnings:
                console.print(f"  warning: {safe(warning)}")
        from twcactl.rules.words import count

        console.print(f"{doc['renewed']} renewed, {doc['would_renew']} would renew, {doc['skipped']} skipped, "
                      f"{doc['failed']} failed (within {count(within_days, 'day')}).")

    emit(doc, human)
