"""``twcactl log``: the activity log, newest first, and its verification (domain.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import (
    Column,
    compact_output,
    csv_cell,
    emit,
    note,
    print_table,
    safe,
    serial_labels,
    wide_option,
)

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.store.records import LogEntry


@click.group(invoke_without_command=True, epilog="""\b
Examples:
  twcactl log --account 70759028-01 --limit 20
  twcactl log --action cert.revoke --operator alice --json
  twcactl log --verbose --limit 5          # each entry's details under it
  twcactl log show 42                      # one entry in full
  twcactl log --csv audit.csv              # every column, for a spreadsheet
  twcactl log verify
""")
@click.option("--account", "account_id", metavar="ID")
@click.option("--action", metavar="A", help="e.g. cert.issue, cert.renew, cert.revoke, cert.hold, cert.release, "
              "account.credit, operator.add, ca.config.")
@click.option("--operator", metavar="NAME")
@click.option("--limit", type=click.IntRange(min=1), metavar="N")
@click.option("--verbose", "-v", is_flag=True, help="Each entry's details, one per line, under its summary.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write the entries as CSV here (- for stdout): seq, time, operator, action, account, serial, "
                   "summary, details (JSON).")
@click.option("--force", is_flag=True, help="Replace an existing --csv file.")
@wide_option
@json_option
@click.pass_context
def log(ctx: click.Context, account_id: str | None, action: str | None, operator: str | None,
        limit: int | None, verbose: bool = False, csv_file: Path | None = None, force: bool = False,
        wide: bool = False) -> None:
    """Show the activity log, newest first: one line per change (time, action, operator, a summary).

    --verbose or `log show SEQ` give the details; --csv writes them for a spreadsheet.
    """
    if ctx.invoked_subcommand is not None:
        return
    store = app().open_store()
    try:
        entries = store.log.entries(account=account_id, action=action, operator=operator, limit=limit)
        short = serial_labels(store, [e.serial for e in entries if e.serial], wide=wide)
    finally:
        store.close()
    if csv_file is not None:
        _write_csv(csv_file, entries, force=force)
        if str(csv_file) == "-" and not app().json:  # the CSV is the output (under --json it went to stderr)
            return

    def human(console: Console) -> None:
        if verbose:
            for e in entries:
                _print_entry(console, e)
            console.print(_count(entries))
            return
        compact = compact_output(wide)
        rows = [[str(e.seq), e.time[:16].replace("T", " ") if compact else e.time, e.action, safe(e.operator),
                 short.get(e.serial or "", ""), e.account or "", safe(summary(e))] for e in entries]
        print_table(LOG_COLUMNS, rows, wide=wide, footer=_count(entries))

    emit({"entries": [e.to_json() for e in entries]}, human)


#: ``log``'s columns (issue 28): the summary takes what is left of the line and is the one cell shortened.
LOG_COLUMNS = [Column("SEQ", keep=True), Column("TIME", keep=True), Column("ACTION", keep=True),
               Column("OPERATOR"), Column("SERIAL"), Column("ACCOUNT"), Column("SUMMARY", rest=True, min_width=30)]

#: How a summary words the usual detail keys, in this order (the rest follow as ``key=value``).
_WORDED: tuple[tuple[str, str], ...] = (
    ("cn", "{}"), ("name", "{}"), ("role", "role {}"), ("reason", "{}"), ("profile", "{}"),
    ("renewed", "renews {:.10}"), ("not_after", "until {:.10}"), ("amount", "{:+}"), ("delta", "{:+}"),
    ("balance", "balance {}"), ("key", "{}"), ("old", "{} ->"), ("new", "{}"), ("to", "to {}"),
    ("kind", "{}"), ("number", "#{}"), ("from", "from {}"),
)
#: Details a one-line summary leaves out: file paths and the copies of the record (--verbose shows them).
_QUIET = frozenset({"csr", "record", "result", "identity", "sha256", "cost", "signed_request", "early"})


def summary(entry: LogEntry) -> str:
    """One line for an entry's details, e.g. ``www.twca.com.tw ssl until 2027-12-08 balance 59``: the usual keys
    worded (:data:`_WORDED`), other plain values as ``key=value``, lists joined by commas; nested objects and
    paths are left to --verbose, ``log show`` and --json."""
    details = entry.details or {}
    parts: list[str] = []
    for key, form in _WORDED:
        value = details.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        try:
            parts.append(form.format(value))
        except (ValueError, TypeError):  # a value of another type than usual: as it is
            parts.append(f"{key}={value}")
    worded = {k for k, _f in _WORDED}
    for key in sorted(details):
        value = details[key]
        if key in worded or key in _QUIET or value is None or isinstance(value, dict):
            continue
        if isinstance(value, list):
            if value and all(not isinstance(x, dict | list) for x in value):
                parts.append(f"{key}={','.join(str(x) for x in value)}")
            continue
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _count(entries: list[LogEntry]) -> str:
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}."


def _print_entry(console: Console, e: LogEntry) -> None:
    """An entry in full: its fields, then each detail on its own line (nested values as JSON)."""
    import json

    console.print(f"#{e.seq}  {e.time}  {e.action}  by {safe(e.operator)}")
    if e.account:
        console.print(f"    account  {e.account}")
    if e.serial:
        console.print(f"    serial   {e.serial}")
    for k, v in (e.details or {}).items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
        console.print(f"    {safe(k)}: {safe(text)}")


def _write_csv(path: Path, entries: list[LogEntry], *, force: bool) -> None:
    import csv
    import io
    import json

    from twcactl.fsutil import write_file

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("seq", "time", "operator", "action", "account", "serial", "summary", "details"))
    for e in entries:
        writer.writerow([csv_cell(v) for v in (e.seq, e.time, e.operator, e.action, e.account, e.serial,
                                               summary(e), json.dumps(e.details, ensure_ascii=False,
                                                                      sort_keys=True))])
    data = buffer.getvalue()
    if str(path) == "-":
        click.echo(data, nl=False, err=app().json)
    else:
        write_file(path, data.encode("utf-8"), force=force)
        note(f"CSV written to {path}")


@log.command("show", epilog="""\b
Examples:
  twcactl log show 42
  twcactl log show 42 --json
""")
@click.argument("seq", type=click.IntRange(min=1))
@json_option
def show(seq: int) -> None:
    """Show one activity-log entry in full: its fields and every detail."""
    store = app().open_store()
    try:
        entry = store.log.get(seq)
    finally:
        store.close()
    emit(entry.to_json(), lambda console: _print_entry(console, entry))


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
