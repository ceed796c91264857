"""``twcactl domain``: domain validation of agreed domains (BR §3.2.2.4; issue 26)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def domain() -> None:
    """Validate agreed domains: a random value in DNS or on the web site (BR 3.2.2.4)."""


@domain.command("validate", epilog="""\b
Examples:
  twcactl domain validate 70759028-01 twca.com.tw --method dns-txt
  twcactl domain validate 70759028-01 twca.com.tw --method http-file --json
""")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("name", metavar="DOMAIN")
@click.option("--method", type=click.Choice(["dns-txt", "http-file"]), required=True,
              help="dns-txt: a TXT record at _pki-validation.DOMAIN (BR 3.2.2.4.7); http-file: a file under "
                   "/.well-known/pki-validation/ (BR 3.2.2.4.18).")
@json_option
def validate(account_id: str, name: str, method: str) -> None:
    """Make a random value for an agreed domain; put it where shown, then run `domain check`."""
    from twcactl.authority.domain_validation import start_validation

    store = app().open_store()
    try:
        started = start_validation(store, account_id, name, method=method, operator=current_operator())
    finally:
        store.close()

    def human(console: Console) -> None:
        record = started.record
        console.print(f"Put the value {record.value}")
        console.print(f"  {'in a TXT record at' if method == 'dns-txt' else 'as the file'} {safe(started.where)}")
        console.print(f"  before {record.expires_at}, then: twcactl domain check {account_id} {record.domain}")

    emit(started.to_json(), human)


@domain.command("check", epilog="""\b
Example:
  twcactl domain check 70759028-01 twca.com.tw --json
""")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("name", metavar="DOMAIN")
@json_option
def check(account_id: str, name: str) -> None:
    """Look for the domain's random value now and record the validation (corroborated in public-trust mode)."""
    from twcactl.authority.domain_validation import check_validation, domain_status

    store = app().open_store()
    try:
        record = check_validation(store, account_id, name, operator=current_operator())
        status = domain_status(store, account_id, (record.domain,))[0]
    finally:
        store.close()

    def human(console: Console) -> None:
        console.print(f"{record.domain} validated by {record.method} at {record.validated_at}; "
                      f"reusable until {status['lapses_at']}")

    emit({"validation": record.to_json(), "lapses_at": status["lapses_at"]}, human)
