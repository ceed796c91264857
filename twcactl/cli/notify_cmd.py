"""``twcactl notify``: renewal reminders to technical contacts by e-mail (issue 17; the workflow is
:mod:`twcactl.authority.notify`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.authority.notify import MailConfig
    from twcactl.store import Store


@click.group()
def notify() -> None:
    """Mail technical contacts: renewal reminders (ca config smtp_* names the relay)."""


def mail_settings(store: Store) -> MailConfig:
    """The relay of ``store``'s ``smtp_*`` settings, with the password read from the SOURCE
    ``smtp_password_source`` names (never from config.toml itself).

    Raises:
        StateError / PolicyError: see :func:`twcactl.authority.notify.mail_config`.
        AuthError / InputError: the password SOURCE cannot be read (exit 4 / 3).
    """
    from twcactl.authority.notify import mail_config
    from twcactl.cli.secrets import read_source

    settings = store.settings()
    password = None
    if settings.smtp_user and settings.smtp_password_source:
        password = read_source(settings.smtp_password_source, option="smtp_password_source")
    return mail_config(settings, password)


@notify.command("due", epilog="""\b
Examples:
  twcactl notify due --dry-run          # who would be reminded
  twcactl notify due --json             # nightly, from cron or a systemd timer
\b
Reminders go 60 days before notAfter for SSL certificates (ssl, wildcard, ev)
and 30 days before for the others, once per certificate and window, to the
--contact given at issue.
""")
@click.option("--dry-run", is_flag=True, help="List who would be reminded; send and record nothing.")
@json_option
def due(dry_run: bool) -> None:
    """Remind each technical contact whose certificate entered its reminder window.

    Each reminder is sent once per certificate and window (recorded in the CA
    home), so running this every night repeats nothing.  A certificate without
    an e-mail contact is listed as skipped.  Exit 0 unless a message failed.
    """
    from twcactl.authority.notify import notify_due

    store = app().open_store()
    try:
        config = None if dry_run else mail_settings(store)
        outcome = notify_due(store, operator=current_operator(), config=config, dry_run=dry_run)
    finally:
        store.close()
    doc = {"dry_run": dry_run, "notices": [r.to_json() for r in outcome.results],
           "sent": outcome.count("sent"), "would_send": outcome.count("would-send"),
           "skipped": outcome.count("skipped"), "failed": outcome.count("failed"),
           "already_notified": outcome.already_notified}

    def human(console: Console) -> None:
        for r in outcome.results:
            console.print(f"{r.outcome:<10} {r.serial}  CN={safe(r.cn or '')}  ends {r.not_after:%Y-%m-%d}  "
                          f"to {safe(r.recipient or '-')}" + (f"  ({safe(r.why or r.error or '')})"
                                                              if r.why or r.error else ""))
        console.print(f"{doc['sent']} sent, {doc['would_send']} would send, {doc['skipped']} skipped, "
                      f"{doc['failed']} failed, {doc['already_notified']} already reminded.")

    emit(doc, human)
    if outcome.count("failed"):
        raise SystemExit(6)
