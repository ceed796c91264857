"""``twcactl log``: the activity log, newest first, and its verification (domain.md §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group(invoke_without_command=True, epilog="""\b
Examples:
  twcactl log --account 70759028-01 --limit 20
  twcactl log --action cert.revoke --operator alice --json
  twcactl log verify
""")
@click.option("--account", "account_id", metavar="ID")
@click.option("--action", metavar="A", help="e.g. cert.issue, cert.renew, cert.revoke, cert.hold, cert.release, "
              "account.credit, operator.add, ca.config.")
@click.option("--operator", metavar="NAME")
@click.option("--limit", type=click.IntRange(min=1), metavar="N")
@json_option
@click.pass_context
def log(ctx: click.Context, account_id: str | None, action: str | None, operator: str | None,
        limit: int | None) -> None:
    """Show the activity log, newest first: every change, with time, operator and details."""
    if ctx.invoked_subcommand is not None:
        return
    store = app().open_store()
    try:
        entries = store.log.entries(account=account_id, action=action, operator=operator, limit=limit)
    finally:
        store.close()

    def human(console: Console) -> None:
        import json

        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("SEQ", "TIME", "OPERATOR", "ACTION", "ACCOUNT", "SERIAL", "DETAILS"):
            table.add_column(col, no_wrap=col != "DETAILS")
        for e in entries:
            table.add_row(str(e.seq), e.time, safe(e.operator), e.action, e.account or "", e.serial or "",
                          safe(json.dumps(e.details, ensure_ascii=False, sort_keys=True)))
        console.print(table)
        console.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}.")

    emit({"entries": [e.to_json() for e in entries]}, human)


@log.command("verify", epilog="""\b
Example:
  twcactl log verify --json
""")
@json_option
def verify() -> None:
    """Check the hash chain of the activity log and its recorded head; exit 1 on any finding."""
    from twcactl.authority.audit import verify_log

    store = app().open_store()
    try:
        count, problems = verify_log(store)
    finally:
        store.close()
    doc = {"ok": not problems, "entries": count,
           "findings": [{"seq": p.seq, "message": p.message} for p in problems]}

    def human(console: Console) -> None:
        if not problems:
            console.print(f"Activity log intact: {count} entries, hash chain and head verified.")
        for p in problems:
            console.print(f"  FAIL  entry {p.seq}: {p.message}")
        if problems:
            console.print(f"{len(problems)} problem(s) found.")

    emit(doc, human)
    if problems:
        raise SystemExit(1)
