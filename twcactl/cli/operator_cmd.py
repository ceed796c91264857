"""``twcactl operator``: who may change the CA (manager) and who may only query (auditor) (domain.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, ca_passphrase_option, ca_passphrase_provider, current_operator, json_option
from twcactl.cli.output import emit, safe
from twcactl.rules.vocab import KEY_TYPES, ROLES

KEY_TYPE_CHOICES = tuple(KEY_TYPES)

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def operator() -> None:
    """Operators and their roles: manager (query and change), ra (certificates) or auditor (query only).

    The current operator is $TWCACTL_OPERATOR, else the login name.  With
    `ca config operator_auth required` each change is signed with the
    operator's key (--operator-key or $TWCACTL_OPERATOR_KEY) and checked
    against the certificate bound with `operator add --cert`.
    """


@operator.command("add", epilog="""\b
Examples:
  twcactl operator add bob --role manager --cert bob.pem
  twcactl operator add rita --role ra --cert rita.pem       # an RA desk operator (certificates only)
  twcactl operator add carol --role auditor
  twcactl operator add bob --role auditor --update          # change a role (or bind a new --cert)
""")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--cert", "cert_file", metavar="FILE|URI",
              help="The operator's certificate, issued by this CA (a PEM or DER file, or on their card: "
                   "pkcs11:token=LABEL;object=user-sign): its key signs their changes.")
@click.option("--update", is_flag=True, help="Change the role of an existing operator.")
@json_option
def add(name: str, role: str, cert_file: str | None, update: bool) -> None:
    """Register an operator (managers only; every change is logged)."""
    from twcactl.authority.operators import OperatorGrant, add_operator, set_operator_role

    grant = OperatorGrant(name, role, _cert_der(cert_file) if cert_file else None)
    store = app().open_store()
    try:
        workflow = set_operator_role if update else add_operator
        operators = workflow(store, grant, by=current_operator())
    finally:
        store.close()
    _render(operators)


@operator.command("enroll", epilog="""\b
Examples:
  twcactl operator enroll rita --role ra --token RITA-CARD --pin env:CARD_PIN \\
      --account 70759028-01 --cn A123456789-02-RITA --org TWCA --country TW
  export TWCACTL_OPERATOR_KEY="pkcs11:token=RITA-CARD;object=user-sign"   # then rita signs with her card
""")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--token", "token_label", metavar="LABEL", help="The operator's card (token label).")
@click.option("--module", metavar="PATH", help="PKCS#11 module (default $TWCACTL_PKCS11_MODULE, else pkcs11_module).")
@click.option("--pin", "pin_source", metavar="SOURCE", help="The card's PIN (default: prompt).")
@click.option("--account", "account_id", required=True, metavar="ID", help="The account that pays.")
@click.option("--cn", required=True, help="The operator's personal subject, e.g. A123456789-02-RITA.")
@click.option("--org", help="O: the organisation.")
@click.option("--country", help="C: ISO 3166 two-letter code.")
@click.option("--years", type=int, help="Validity in calendar years, 1-100 (default 1).")
@click.option("--key-type", type=click.Choice(KEY_TYPE_CHOICES), default="rsa2048", show_default=True)
@ca_passphrase_option
@json_option
def enroll(name: str, role: str, token_label: str | None, module: str | None, pin_source: str | None,
           account_id: str, cn: str, org: str | None, country: str | None, years: int | None, key_type: str,
           ca_passphrase: str | None) -> None:
    """Make the operator's key on their card, certify it (profile user-sign, as `card enroll` does), write the
    certificate to the card and bind it to the operator (managers only; logged)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from twcactl import card as card_mod
    from twcactl.authority.card_issuer import prepare_issuer
    from twcactl.authority.operators import OperatorGrant, bind_operator
    from twcactl.cli.card_cmd import _enroll_on_card
    from twcactl.csr import subject_options as subject_fields
    from twcactl.rules.validity import Validity

    grant = OperatorGrant(name, role)  # the name and role are checked before the card is touched
    plan = card_mod.plan_enrolment(subject_fields(cn=cn, org=org, ous=(), locality=None, state=None, country=country),
                                   sans=(), profile="user-sign", pair=False, key_type=key_type, label=None)
    store = app().open_store()
    try:
        issuer = prepare_issuer(store, plan.specs, plan.subject_pairs, plan.sans_for, account_id=account_id,
                                validity=Validity.from_options(years, None), key_type=key_type,
                                operator=current_operator(), passphrase=ca_passphrase_provider(ca_passphrase))
        _enroll_on_card(module, token_label, pin_source, plan, issuer, [], force=False)
        der = issuer.issued[0][0].public_bytes(Encoding.DER)
        operators = bind_operator(store, OperatorGrant(grant.name, grant.role, der), by=current_operator())
    finally:
        store.close()
    _render(operators)


@operator.command("set-role", epilog="""\b
Example:
  twcactl operator set-role rita manager
""")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@json_option
def set_role(name: str, role: str) -> None:
    """Change an operator's role (managers only; logged; the last manager stays a manager)."""
    from twcactl.authority.operators import OperatorGrant, set_operator_role

    store = app().open_store()
    try:
        operators = set_operator_role(store, OperatorGrant(name, role), by=current_operator())
    finally:
        store.close()
    _render(operators)


@operator.command("remove", epilog="""\b
Example:
  twcactl operator remove rita
""")
@click.argument("name")
@json_option
def remove(name: str) -> None:
    """Remove an operator: it can no longer act or sign (managers only; logged; never the last manager)."""
    from twcactl.authority.operators import remove_operator

    store = app().open_store()
    try:
        operators = remove_operator(store, name, by=current_operator())
    finally:
        store.close()
    _render(operators)


def _cert_der(spec: str) -> bytes:
    """The DER of ``--cert``: a file, or the certificate object on a card (``pkcs11:`` URI, no PIN needed)."""
    import os

    from cryptography.hazmat.primitives.serialization import Encoding

    from twcactl.authority.signed_actions import load_operator_certificate, read_token_certificate
    from twcactl.backends.p11_uri import is_pkcs11_uri
    from twcactl.errors import InputError

    if is_pkcs11_uri(spec):
        return read_token_certificate(spec, os.environ.get("TWCACTL_PKCS11_MODULE"))
    try:
        data = Path(spec).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {spec}.") from exc
    return load_operator_certificate(data, name=spec).public_bytes(Encoding.DER)


@operator.command("list", epilog="""\b
Example:
  twcactl operator list --json
""")
@json_option
def list_() -> None:
    """List the operators and their roles."""
    store = app().open_store()
    try:
        operators = store.operators.all()
    finally:
        store.close()
    _render(operators)


def _render(operators: list[dict[str, object]]) -> None:
    rows = [{"name": o["name"], "role": o["role"], "created_at": o["created_at"], "created_by": o["created_by"],
             "active": bool(o.get("active", 1)), "cert_sha256": o.get("cert_sha256")}
            for o in operators]

    def human(console: Console) -> None:
        for o in rows:
            console.print(f"{safe(o['name']):<20} {o['role']:<8} added {o['created_at']} by {safe(o['created_by'])}")

    emit({"operators": rows}, human)
