"""``twcactl store``: where a home's records live (SQLite or PostgreSQL) and moving them (issue 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def store() -> None:
    """Where the CA's records live: the home's SQLite file or a shared PostgreSQL database."""


@store.command("show", epilog="""\b
Example:
  twcactl --home ./node1 store show --json
""")
@json_option
def show() -> None:
    """Show the home's store: its engine, the database (without a password) and its schema version."""
    from twcactl.store.postgres import redact

    opened = app().open_store()
    try:
        doc = {"home": str(opened.home), "engine": "postgresql" if opened.shared else "sqlite",
               "url": redact(opened.store_url) if opened.shared else None,
               "schema_version": opened.schema_version()}
    finally:
        opened.close()

    def human(console: Console) -> None:
        console.print(f"{doc['engine']}  {safe(doc['url'] or str(opened.db_path))}  schema {doc['schema_version']}")

    emit(doc, human)


@store.command("migrate", epilog="""\b
Examples:
  twcactl --home ./myca store migrate --to 'postgresql://twca@db.example.tw/twca'
  twcactl --home ./myca --store-password env:PGPASS store migrate --to sqlite
""")
@click.option("--to", "to", required=True, metavar="URL",
              help="postgresql://USER@HOST/DB (an empty database), or sqlite (this home's own file).")
@json_option
def migrate(to: str) -> None:
    """Move the home's records to another store, verify them there (row counts, balances against
    ledgers, the log chain) and only then switch the home to it (managers only; stop other nodes first).

    The password of the PostgreSQL side is --store-password SOURCE (a global option) or
    $TWCACTL_STORE_PASSWORD_SOURCE, else libpq's PGPASSFILE.
    """
    from twcactl.authority.store_migration import migrate_store

    ctx = app()
    opened = ctx.open_store()
    try:
        report = migrate_store(opened, to, operator=current_operator(), password=ctx.store_password())
    finally:
        opened.close()
    doc = report.to_json()

    def human(console: Console) -> None:
        console.print(f"Moved the records from {safe(report.source)} to {safe(report.target)}: "
                      f"{report.rows.get('certificates', 0)} certificates, {report.accounts} accounts, "
                      f"{report.log_entries} log entries (chain verified); the home now uses the new store.")

    emit(doc, human)
