"""``twcactl ca issuer``: several issuing CAs under one root (issue 25; docs/hierarchy.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, ca_passphrase_option, ca_passphrase_provider, current_operator, json_option
from twcactl.cli.output import emit, safe
from twcactl.rules.vocab import KEY_TYPES, REVOKE_REASONS

if TYPE_CHECKING:
    from rich.console import Console


@click.group("issuer")
def issuer() -> None:
    """Issuing CAs under the root: add one, switch to it, retire or revoke the old one."""


@issuer.command("add", epilog="""\b
Examples:
  twcactl ca issuer add uca2                         # a new issuing CA signed by the root, key in a file
  twcactl ca issuer add tls2026 --key-type ec-p384 --years 5
  twcactl ca issuer add uca3 --root-passphrase file:/media/root-pass --ca-passphrase env:CA_PASS
  twcactl ca issuer add hsm1 --key-uri 'pkcs11:token=CA' --ca-passphrase env:TOKEN_PIN
""")
@click.argument("name")
@click.option("--key-type", default="rsa2048", show_default=True, type=click.Choice(KEY_TYPES))
@click.option("--years", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Validity in years (never past the root's).")
@click.option("--key-uri", metavar="URI", help="Make the key on a PKCS#11 token (RFC 7512 URI, pkcs11:token=LABEL).")
@click.option("--pkcs11-module", envvar="TWCACTL_PKCS11_MODULE", metavar="PATH", help="The module for --key-uri.")
@click.option("--root-passphrase", metavar="SOURCE",
              help="The root key's own passphrase (an offline root), when it differs from --ca-passphrase.")
@ca_passphrase_option
@json_option
def add(name: str, key_type: str, years: int, key_uri: str | None, pkcs11_module: str | None,
        root_passphrase: str | None, ca_passphrase: str | None) -> None:
    """Make a new issuing CA signed by the root (needs the root key); `activate` it to issue from it."""
    from twcactl.authority.hierarchy import NewIssuer, add_issuer

    store = app().open_store()
    try:
        add_issuer(store, NewIssuer(name, key_type, years, key_uri, pkcs11_module), operator=current_operator(),
                   passphrase=ca_passphrase_provider(ca_passphrase),
                   root_passphrase=ca_passphrase_provider(root_passphrase) if root_passphrase else None)
        _render(store, name)
    finally:
        store.close()


@issuer.command("list", epilog="""\b
Example:
  twcactl ca issuer list --json
""")
@json_option
def list_() -> None:
    """The CAs of the hierarchy: state (root, active, ready, retired, revoked), validity, certificate counts."""
    store = app().open_store()
    try:
        _render(store, None)
    finally:
        store.close()


@issuer.command("activate", epilog="""\b
Example:
  twcactl ca issuer activate uca2      # new certificates, renewals, cards and ACME orders come from uca2
""")
@click.argument("name")
@json_option
def activate(name: str) -> None:
    """Make NAME the issuing CA of every new certificate."""
    from twcactl.authority.hierarchy import activate_issuer

    store = app().open_store()
    try:
        activate_issuer(store, name, operator=current_operator())
        _render(store, name)
    finally:
        store.close()


@issuer.command("retire", epilog="""\b
Example:
  twcactl ca issuer retire uca        # issues no more; its CRL and OCSP go on
""")
@click.argument("name")
@json_option
def retire(name: str) -> None:
    """Stop NAME issuing; its certificates stay valid, its CRL and OCSP answers go on."""
    from twcactl.authority.hierarchy import retire_issuer

    store = app().open_store()
    try:
        retire_issuer(store, name, operator=current_operator())
        _render(store, name)
    finally:
        store.close()


@issuer.command("revoke", epilog="""\b
Example:
  twcactl ca issuer revoke uca --reason keyCompromise --ca-passphrase file:/media/root-pass
""")
@click.argument("name")
@click.option("--reason", required=True, type=click.Choice(REVOKE_REASONS, case_sensitive=False),
              help="RFC 5280 reason (not certificateHold).")
@ca_passphrase_option
@json_option
def revoke(name: str, reason: str, ca_passphrase: str | None) -> None:
    """Revoke issuing CA NAME: the root signs a new CRL listing it (--ca-passphrase: the root key's)."""
    from twcactl.authority.hierarchy import revoke_issuer

    store = app().open_store()
    try:
        _ca, crl = revoke_issuer(store, name, reason=reason, operator=current_operator(),
                                 passphrase=ca_passphrase_provider(ca_passphrase))
        _render(store, name, crl_entries=len(crl))
    finally:
        store.close()


def _render(store: Any, name: str | None, *, crl_entries: int | None = None) -> None:
    """``{"issuers": [...]}`` (every CA, root first) or, for one command on NAME, ``{"issuer": {...}}``."""
    from twcactl.authority.hierarchy import list_issuers

    views = [v.to_json() for v in list_issuers(store)]
    doc: dict[str, Any] = {"issuers": views} if name is None else {
        "issuer": next(v for v in views if v["name"] == name)}
    if crl_entries is not None:
        doc["issuer_crl_entries"] = crl_entries

    def human(console: Console) -> None:
        for v in views if name is None else [doc["issuer"]]:
            counts = v["certificates"]
            console.print(f"{safe(v['name']):<10} {v['state']:<12} {v['not_before'][:10]} .. {v['not_after'][:10]}  "
                          f"{counts['total']} cert(s), {counts['unexpired']} unexpired, {counts['revoked']} revoked  "
                          f"{safe(v['subject'])}")

    emit(doc, human)
