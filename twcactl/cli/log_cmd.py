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


def _parse_head(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[tuple[int, str]]:
    heads = []
    for text in values:
        seq, _, digest = text.partition(":")
        if not (seq.isdigit() and len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest)):
            raise click.BadParameter(f"{text!r} is not SEQ:HASH (a sequence number and 64 hex digits).")
        heads.append((int(seq), digest.lower()))
    return heads


@log.command("verify", epilog="""\b
Examples:
  twcactl log verify --json
  twcactl log verify --expect-head 1200:5d41...c0de   # a head exported earlier (twcactl log head)
""")
@click.option("--expect-head", "expected", multiple=True, metavar="SEQ:HASH", callback=_parse_head,
              help="A head exported earlier (twcactl log head): entry SEQ must still have HASH. Repeatable.")
@json_option
def verify(expected: list[tuple[int, str]]) -> None:
    """Check the hash chain of the activity log and its recorded head; exit 1 on any finding."""
    from twcactl.authority.audit import log_head, verify_log

    store = app().open_store()
    try:
        count, problems = verify_log(store, expected=expected)
        head = log_head(store)
    finally:
        store.close()
    doc = {"ok": not problems, "entries": count,
           "findings": [{"seq": p.seq, "message": p.message} for p in problems], "head": head.to_json()}

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


@log.command("head", epilog="""\b
Examples:
  twcactl log head --json > /mnt/offsite/twca-head-$(date +%F).json
  twcactl log head --seq 1200 --json      # compare with the copy exported then
""")
@click.option("--seq", type=click.IntRange(min=1), metavar="N", help="The hash of entry N instead of the newest.")
@json_option
def head(seq: int | None) -> None:
    """Print the newest entry of the activity log's hash chain (read-only), to keep a copy outside the home.

    Anyone holding the database could rewrite the whole chain consistently; a head exported elsewhere
    (another machine, a ticket, a signed mail) proves later that the log up to it was not rewritten:
    twcactl log verify --expect-head SEQ:HASH.
    """
    from twcactl.authority.audit import log_head

    store = app().open_store()
    try:
        found = log_head(store, seq)
    finally:
        store.close()

    def human(console: Console) -> None:
        console.print(f"{found.seq}:{found.hash}")

    emit(found.to_json(), human)
