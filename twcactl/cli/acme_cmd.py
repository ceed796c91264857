"""``twcactl acme``: External Account Binding keys and the ACME accounts of ``twcactl serve`` (docs/serve.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def acme() -> None:
    """ACME: EAB keys for clients, ACME accounts, deactivation."""


@acme.command("eab", epilog="""\b
Example:
  twcactl acme eab 70759028-01 --json
  certbot register --server https://HOST:8443/acme/directory --eab-kid KID --eab-hmac-key HMAC
  lego --server https://HOST:8443/acme/directory --eab --kid KID --hmac HMAC ...
""")
@click.argument("account_id", metavar="ACCOUNT")
@json_option
def eab(account_id: str) -> None:
    """Issue an EAB key ID and HMAC key bound to ACCOUNT (shown once)."""
    from twcactl.authority.acme import create_eab

    store = app().open_store()
    try:
        grant = create_eab(store, account_id, operator=current_operator())
    finally:
        store.close()

    def human(console: Console) -> None:
        console.print(f"kid:  {grant.kid}\nhmac: {grant.hmac}\n(for account {grant.account_id}; the HMAC key is "
                      "shown only now)")

    emit(grant.to_json(), human)


@acme.command("accounts")
@json_option
def accounts() -> None:
    """List the ACME accounts with their twcactl accounts, and the EAB keys."""
    from twcactl.authority.acme import list_accounts

    store = app().open_store()
    try:
        doc = list_accounts(store)
    finally:
        store.close()

    def human(console: Console) -> None:
        for a in doc["accounts"]:
            console.print(f"{a['id']}  {a['account']}  {a['status']}  kid {a['kid']}")
        for k in doc["eab_keys"]:
            console.print(f"EAB {k['kid']}  {k['account']}  {k['state']}")

    emit(doc, human)


@acme.command("deactivate")
@click.argument("ident", metavar="ID")
@json_option
def deactivate(ident: str) -> None:
    """End an ACME account (its ID) or an unused EAB key (its kid)."""
    from twcactl.authority.acme import deactivate as deactivate_core

    store = app().open_store()
    try:
        doc = deactivate_core(store, ident, operator=current_operator())
    finally:
        store.close()

    def human(console: Console) -> None:
        console.print(f"deactivated: {doc['id'] or doc['kid']}")

    emit(doc, human)
