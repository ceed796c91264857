"""``twcactl card``: PKCS#11 smart cards and PC/SC readers (domain.md §8).

A thin layer: it resolves the module (``--module``, ``$TWCACTL_PKCS11_MODULE``,
the CA home's ``pkcs11_module`` setting, then a search), the PIN SOURCEs and
the CA passphrase, and renders results.  The workflows are in
``twcactl.card``, the device calls in ``twcactl.backends``.  A PIN is read
once, tried once, and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import (
    app,
    ca_passphrase_option,
    ca_passphrase_provider,
    current_operator,
    json_option,
    subject_options,
)
from twcactl.cli.output import emit, files_document, note, safe
from twcactl.cli.subscriber_secret import keep_subscriber_password, subscriber_password, subscriber_password_option
from twcactl.rules.serials import format_serial
from twcactl.rules.settings import Settings
from twcactl.rules.times import rfc3339

if TYPE_CHECKING:
    from cryptography import x509
    from rich.console import Console

    from twcactl.authority.card_issuer import LocalIssuer, LocalRenewer
    from twcactl.backends import TokenInfo, TokenObject
    from twcactl.backends.p11 import P11Token
    from twcactl.card import EnrolmentPlan
    from twcactl.rules.validity import Validity
    from twcactl.store import Store

PROFILE_CHOICES = ("user-sign", "user-enc", "ssl", "wildcard", "ev")
KEY_TYPE_CHOICES = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384")


@click.group()
def card() -> None:
    """PKCS#11 smart cards: enrol, renew, PINs, register certificates."""


def _token_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--token", "token_label", metavar="LABEL",
                     help="The token's label (needed when several tokens are present).")(f)
    f = click.option("--module", "module", metavar="PATH",
                     help="The PKCS#11 module (default $TWCACTL_PKCS11_MODULE; else the first that holds the token of "
                          "the CA home's pkcs11_module setting and the usual OpenSC / SoftHSM2 / opencryptoki / "
                          "p11-kit proxy paths; JSON \"module\" says which).")(f)
    return f


def _pin_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--pin", "pin_source", metavar="SOURCE",
                        help="The card PIN: env:NAME, file:PATH, fd:N, stdin, pass:TEXT (default: prompt).")(f)


def _explicit_module(module: str | None) -> str | None:
    """``--module``, else ``$TWCACTL_PKCS11_MODULE``: the user's own choice, used alone (contract)."""
    return module or os.environ.get("TWCACTL_PKCS11_MODULE") or None


def _configured_module() -> str | None:
    from twcactl.store import read_settings

    # the home may not exist (card commands need no CA): then the defaults apply
    return read_settings(app().resolved_home() / "config.toml").pkcs11_module or None


def _open_token(module: str | None, token_label: str | None) -> P11Token:
    """The token, through ``--module`` / ``$TWCACTL_PKCS11_MODULE`` alone; else the home's configured module
    (root-owned only, exit 5), then the system modules, the first that holds the token (issue 17)."""
    from twcactl.backends.p11 import Pkcs11Module, configured_module_path, find_module, open_token_anywhere

    explicit = _explicit_module(module)
    if explicit:
        return Pkcs11Module(find_module(explicit)).open_token(token_label)
    configured = _configured_module()  # from config.toml: only a root-owned module is loaded (exit 5)
    token = open_token_anywhere(configured_module_path(configured) if configured else None, token_label)
    note(f"PKCS#11 module {token.info.module} holds token {safe(token.info.label)!r}")
    return token


def _pin(source: str | None, *, what: str = "card PIN", option: str = "--pin", new: bool = False) -> str:
    from twcactl.cli.secrets import get_secret

    return get_secret(source, option=option, what=what, new=new)


DEFAULT_PIN_WARNING = ("the card still has the default PIN of the PIN letter: anyone who has the letter can use "
                       "it; change it now: twcactl card change-pin")


def _is_default_pin(pin: str | None) -> bool:
    """True when ``pin`` is the manuals' factory PIN (rules.pin.DEFAULT_PIN), compared in constant time."""
    import hmac

    from twcactl.rules.pin import DEFAULT_PIN

    return pin is not None and hmac.compare_digest(pin.encode("utf-8"), DEFAULT_PIN.encode("ascii"))


def _default_pin(pin: str | None) -> bool:
    """True (and a warning on stderr) when ``pin``, which the card accepted, is the manuals' default
    (rules.pin.DEFAULT_PIN, issue 17); the PIN itself is never printed."""
    if not _is_default_pin(pin):
        return False
    note(f"warning: {DEFAULT_PIN_WARNING}")
    return True


def _iso(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None


def _token_lines(console: Console, info: TokenInfo) -> None:
    console.print(f"Token  {safe(info.label)}  ({safe(info.manufacturer)} {safe(info.model)}, "
                  f"serial {safe(info.serial)})")
    console.print(f"  module  {safe(info.module)}")
    console.print(f"  slot    {info.slot_id}  {safe(info.slot_description)}")
    words = info.pin.words()
    console.print(f"  PIN     {'; '.join(words) if words else 'ok'}")


# --------------------------------------------------------------------------
# readers


@card.command("readers", epilog="""\b
Examples:
  twcactl card readers
  twcactl card readers --wait-card 30 --json
""")
@click.option("--wait-card", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait up to SECONDS for a card to be inserted (exit 6 if none comes).")
@click.option("--reader", metavar="NAME", help="With --wait-card: wait for this reader only.")
@json_option
def readers(wait_card: float | None, reader: str | None) -> None:
    """List the PC/SC readers, whether a card is in each, and its ATR."""
    from twcactl.backends.pcsc import list_readers, wait_for_card
    from twcactl.errors import DeviceError

    if wait_card is not None:
        note(f"Waiting up to {wait_card:g} s for a card ...")
        found = wait_for_card(wait_card, reader=reader)
    else:
        found = list_readers()
    if not found:
        raise DeviceError("no PC/SC reader found.", hint="plug in the card reader; is pcscd running?")
    doc = {"readers": [r.to_json() for r in found]}

    def human(console: Console) -> None:
        for r in found:
            state = f"card  ATR {r.atr}" if r.card_present else "no card"
            console.print(f"{safe(r.name)}  {state}")

    emit(doc, human)


# --------------------------------------------------------------------------
# status, verify-pin


@card.command("status", epilog="""\b
Examples:
  twcactl card status --token "TWCA Card"
  twcactl card status --module /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so --json
  twcactl card status --pin env:CARD_PIN     # also list the private keys
""")
@_token_options
@click.option("--pin", "pin_source", metavar="SOURCE",
              help="Log in to list the private keys too (only when given: status never asks for a PIN).")
@json_option
def status(module: str | None, token_label: str | None, pin_source: str | None) -> None:
    """Show the token, its PIN flags in plain words, and its keys and certificates."""
    from twcactl.card import pin_warnings

    token = _open_token(module, token_label)
    pin = _pin(pin_source) if pin_source is not None else None
    with token.session(pin) as session:
        objects = session.objects()
    info = token.refresh()
    for warning in pin_warnings(info.pin):
        note(f"warning: {warning}")
    doc = {"token": info.to_json(), "objects": [o.to_json() for o in objects], "logged_in": pin is not None,
           "module": info.module, "pin_is_default": _default_pin(pin)}

    def human(console: Console) -> None:
        _token_lines(console, info)
        if not objects:
            console.print("  no keys or certificates" + ("" if pin else " visible without the PIN"))
        for o in objects:
            console.print(_object_line(o))

    emit(doc, human)


def _object_line(o: TokenObject) -> str:
    kind = {"private-key": "private key", "public-key": "public key", "certificate": "certificate"}[o.kind]
    key = f"{(o.key_type or '?').upper()} {o.key_bits}" if o.key_bits else (o.key_type or "?").upper()
    line = f"  {kind:<12} {safe(o.label)!s:<14} id {o.id or '-'}  {key}"
    if o.kind == "certificate":
        line += f"  {safe(o.subject or '?')}  until {(_iso(o.not_after) or '?')[:10]}  serial {o.serial}"
    if o.kind == "private-key":
        flags = [w for w, on in (("sensitive", o.sensitive), ("never extractable", o.never_extractable)) if on]
        line += f"  ({', '.join(flags) or 'EXTRACTABLE'})"
    return line


@card.command("verify-pin", epilog="""\b
Examples:
  twcactl card verify-pin --token "TWCA Card"
  twcactl card verify-pin --pin env:CARD_PIN --json
""")
@_token_options
@_pin_option
@json_option
def verify_pin(module: str | None, token_label: str | None, pin_source: str | None) -> None:
    """Log in once with the PIN and say whether it is right and what the card reports.

    A wrong PIN is exit 4 with what the card's flags say (a wrong PIN since the last good one,
    final try, locked); it is never retried.
    """
    from twcactl.backends import locked_pin_error
    from twcactl.card import pin_warnings

    token = _open_token(module, token_label)
    if token.info.pin.locked:
        raise locked_pin_error(token.info.pin)
    pin = _pin(pin_source)
    with token.session(pin):
        pass
    info = token.refresh()
    doc = {"ok": True, "token": info.to_json(), "module": info.module, "pin_is_default": _default_pin(pin)}
    for warning_text in pin_warnings(info.pin):
        note(f"warning: {warning_text}")

    def human(console: Console) -> None:
        console.print(f"The PIN is right for {safe(info.label)}.")
        words = info.pin.words()
        console.print(f"  the card reports: {'; '.join(words) if words else 'nothing unusual'}")

    emit(doc, human)


# --------------------------------------------------------------------------
# change-pin, unblock


@card.command("change-pin", epilog="""\b
Examples:
  twcactl card change-pin --token "TWCA Card"          # asks: current PIN, new PIN twice
  twcactl card change-pin --pin env:OLD_PIN --new-pin env:NEW_PIN --json
""")
@_token_options
@click.option("--pin", "pin_source", metavar="SOURCE", help="The current PIN (default: prompt).")
@click.option("--new-pin", "new_pin_source", metavar="SOURCE",
              help="The new PIN, 6 to 16 characters (default: prompt twice).")
@json_option
def change_pin(module: str | None, token_label: str | None, pin_source: str | None, new_pin_source: str | None) -> None:
    """Change the user PIN: current PIN, then the new PIN twice.

    The new PIN is checked before the card is touched (6 to 16 characters,
    not 12345678, not the current PIN), so a typo never costs a try.
    """
    from twcactl.backends import locked_pin_error
    from twcactl.card import check_new_pin

    current = _pin(pin_source, what="current card PIN")
    new = _pin(new_pin_source, what="new card PIN", option="--new-pin", new=True)
    check_new_pin(new, current=current)
    token = _open_token(module, token_label)
    if token.info.pin.locked:
        raise locked_pin_error(token.info.pin)
    token.change_pin(current, new)
    info = token.refresh()
    doc = {"changed": True, "token": info.to_json(), "module": info.module}

    def human(console: Console) -> None:
        console.print(f"PIN changed on {safe(info.label)}. Use the new PIN from now on.")

    emit(doc, human)


@card.command("unblock", epilog="""\b
Examples:
  twcactl card unblock --token "TWCA Card"             # asks: SO PIN, new user PIN twice
  twcactl card unblock --so-pin file:/root/so.pin --new-pin env:NEW_PIN --json
""")
@_token_options
@click.option("--so-pin", "so_pin_source", metavar="SOURCE", help="The security officer's PIN (default: prompt).")
@click.option("--new-pin", "new_pin_source", metavar="SOURCE", help="The holder's new PIN (default: prompt twice).")
@json_option
def unblock(module: str | None, token_label: str | None, so_pin_source: str | None, new_pin_source: str | None) -> None:
    """Set a new user PIN with the SO PIN (C_InitPIN): unlocks a locked card (domain.md §8)."""
    from twcactl.card import check_new_pin

    so_pin = _pin(so_pin_source, what="SO PIN", option="--so-pin")
    new = _pin(new_pin_source, what="new card PIN", option="--new-pin", new=True)
    check_new_pin(new)
    token = _open_token(module, token_label)
    token.unblock(so_pin, new)
    info = token.refresh()
    doc = {"unblocked": True, "token": info.to_json(), "module": info.module}

    def human(console: Console) -> None:
        console.print(f"New PIN set on {safe(info.label)}; the holder can log in with it now.")

    emit(doc, human)


# --------------------------------------------------------------------------
# enroll, import-cert


def _cert_doc(cert: x509.Certificate, *, label: str, id_hex: str, record: Any = None,
              window: int = 30) -> dict[str, Any]:
    from twcactl.rules.times import utcnow

    doc: dict[str, Any] = {"serial": format_serial(cert.serial_number), "subject": cert.subject.rfc4514_string(),
                           "not_before": _iso(cert.not_valid_before_utc), "not_after": _iso(cert.not_valid_after_utc),
                           "label": label, "id": id_hex}
    if record is not None:
        doc["record"] = record.to_json(utcnow(), window)
    return doc


def _csr_paths(csr_out: Path, pair: bool) -> list[Path]:
    if not pair:
        return [csr_out]
    return [csr_out.with_name(f"{csr_out.stem}-sign{csr_out.suffix or '.csr'}"),
            csr_out.with_name(f"{csr_out.stem}-enc{csr_out.suffix or '.csr'}")]


@card.command("enroll", epilog="""\b
Examples:
  twcactl card enroll --account 70759028-01 --cn A123456789-01-YIRU --org TWCA --country TW
  twcactl card enroll --pair --account 70759028-01 --cn A123456789-01-YIRU --org TWCA --country TW \\
      --san yiru@twca.com.tw --pin env:CARD_PIN --ca-passphrase env:CA_PASS --json
  twcactl card enroll --csr-out holder.csr --cn A123456789-01-YIRU --org TWCA --country TW
""")
@_token_options
@_pin_option
@click.option("--account", "account_id", metavar="ID", help="The account that pays (needed unless --csr-out).")
@click.option("--profile", type=click.Choice(PROFILE_CHOICES), default="user-sign", show_default=True,
              help="The certificate's profile (ignored with --pair).")
@click.option("--pair", is_flag=True,
              help="Enrol a signing and an encryption key (user-sign + user-enc): both or neither.")
@click.option("--csr-out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the CSR for an outside CA instead of issuing (with --pair: NAME-sign / NAME-enc).")
@click.option("--years", type=int, help="Validity in calendar years, 1-100 (default 1).")
@click.option("--days", type=int, help="Validity in days, 1-36500.")
@subject_options(cn_help="Common Name, e.g. A123456789-01-YIRU or www.twca.com.tw.", cn_required=True,
                 san_help="subjectAltName (repeatable): e-mail addresses for user profiles, DNS names for SSL ones.")
@click.option("--key-type", type=click.Choice(KEY_TYPE_CHOICES), default="rsa2048", show_default=True,
              help="Key generated on the card (EC only where the token has it).")
@click.option("--label", metavar="TEXT", help="CKA_LABEL of the key and certificate (default: the profile name).")
@click.option("--contact", metavar="EMAIL", help="The holder's e-mail address, kept with the certificates: it gets "
              "the renewal reminders (30 days ahead; default: an e-mail --san).")
@click.option("--allow-default-pin", is_flag=True, help="Make keys even though the card still has the factory PIN "
              "of its PIN letter (refused otherwise: change it first with card change-pin).")
@click.option("--force", is_flag=True, help="Replace existing --csr-out files.")
@subscriber_password_option
@ca_passphrase_option
@json_option
def enroll(module: str | None, token_label: str | None, pin_source: str | None, account_id: str | None,
           profile: str, pair: bool, csr_out: Path | None, years: int | None, days: int | None, cn: str,
           org: str | None, ous: tuple[str, ...], locality: str | None, state: str | None, country: str | None,
           sans: tuple[str, ...], key_type: str, label: str | None, force: bool, ca_passphrase: str | None,
           contact: str | None = None, allow_default_pin: bool = False, subscriber_source: str | None = None) -> None:
    """Generate a key pair on the card, have it certified, and write the certificate next to it.

    The private key is made on the card (sensitive, never extractable) and
    the CSR is signed there.  With --account the local CA issues it after
    the same checks as `cert issue`; with --csr-out the CSR is written for
    an outside CA, and `card import-cert` stores the answer later.
    Refused while the card says its PIN must be changed.
    """
    from twcactl import card as card_mod
    from twcactl.authority.contacts import checked_contact
    from twcactl.csr import subject_options as subject_fields
    from twcactl.errors import UsageError
    from twcactl.fsutil import ensure_free
    from twcactl.rules.validity import Validity

    contact = checked_contact(contact)
    if csr_out is None and account_id is None:
        raise UsageError("give --account ID to issue from the local CA, or --csr-out FILE for an outside CA.")
    if csr_out is not None and account_id is not None:
        raise UsageError("give --account or --csr-out, not both.")
    validity = Validity.from_options(years, days)
    subscriber = subscriber_password(subscriber_source, local=account_id is not None)  # before a key is made
    plan = card_mod.plan_enrolment(subject_fields(cn=cn, org=org, ous=ous, locality=locality, state=state,
                                                  country=country),
                                   sans=sans, profile=profile, pair=pair, key_type=key_type, label=label)
    csr_files = _csr_paths(csr_out, pair) if csr_out is not None else []
    ensure_free(csr_files, force=force)
    store = app().open_store() if account_id is not None else None
    try:
        issuer = None
        if store is not None and account_id is not None:
            from twcactl.authority.card_issuer import prepare_issuer

            issuer = prepare_issuer(store, plan.specs, plan.subject_pairs, plan.sans_for, account_id=account_id,
                                    validity=validity, key_type=key_type, operator=current_operator(),
                                    passphrase=ca_passphrase_provider(ca_passphrase), contact=contact)
        token, pending, default_pin = _enroll_on_card(module, token_label, pin_source, plan, issuer, csr_files,
                                                      force=force, allow_default_pin=allow_default_pin)
        window = (store.settings() if store is not None else Settings()).renewal_window_days
        keep_subscriber_password(store, [rec.serial for _cert, rec in issuer.issued] if issuer else [], subscriber)
    finally:
        if store is not None:
            store.close()
    _render_enrolment(token.refresh(), pending, csr_files, issuer.issued if issuer is not None else [], window,
                      files=issuer.files if issuer is not None else None, default_pin=default_pin)


def _enroll_on_card(module: str | None, token_label: str | None, pin_source: str | None, plan: EnrolmentPlan,
                    issuer: LocalIssuer | None, csr_files: list[Path], *, force: bool, allow_default_pin: bool = False
                    ) -> tuple[P11Token, list[Any], bool]:
    """Make the plan's keys on the card (certified by ``issuer``, or their CSRs written to ``csr_files``);
    the token, the keys made, and whether the PIN is still the default one.

    A card still on the factory PIN of its PIN letter is refused (exit 5) before a key is made unless
    ``allow_default_pin`` (issue 28: anyone holding the letter could use the new key; domain.md §8)."""
    from cryptography.hazmat.primitives import serialization

    from twcactl import card as card_mod
    from twcactl.fsutil import write_file

    token = _open_token(module, token_label)
    card_mod.require_pin_usable(token.info, for_what="a key is made on it")
    pin = _pin(pin_source)
    if not allow_default_pin and _is_default_pin(pin):
        from twcactl.errors import StateError

        raise StateError("the card still has the factory PIN of its PIN letter; no key was made on it.",
                         hint=f"change it first: twcactl card change-pin --token {token.info.label} "
                              "(or give --allow-default-pin to make the keys anyway)")
    with token.session(pin, rw=True) as session:
        note(f"Generating {len(plan.specs)} {plan.specs[0].key_type} key pair(s) on the card ...")
        pending = card_mod.enroll(session, plan.specs, plan.subject, plan.sans_for, issuer)
        try:
            for path, item in zip(csr_files, pending):
                write_file(path, item.csr.public_bytes(serialization.Encoding.PEM), force=force)
        except BaseException:
            card_mod.discard(session, pending)
            raise
    return token, pending, _default_pin(pin)


def _render_enrolment(info: TokenInfo, pending: list[Any], csr_files: list[Path],
                      issued: list[tuple[x509.Certificate, Any]], window: int, *, files: Any = None,
                      default_pin: bool = False) -> None:
    keys = []
    for i, item in enumerate(pending):
        entry: dict[str, Any] = {"profile": item.spec.profile, "label": item.spec.label, "id": item.id_hex,
                                 "key_type": item.spec.key_type}
        if csr_files:
            entry["csr_file"] = str(csr_files[i])
        if issued:
            cert, record = issued[i]
            entry["certificate"] = _cert_doc(cert, label=item.spec.label, id_hex=item.id_hex, record=record,
                                             window=window)
        keys.append(entry)
    doc: dict[str, Any] = {"token": {"label": info.label, "serial": info.serial}, "keys": keys,
                           "module": info.module, "pin_is_default": default_pin}
    if files is not None:
        doc["files"] = files_document(files)

    def human(console: Console) -> None:
        for entry in keys:
            line = f"Key {entry['id']} ({entry['key_type']}, {entry['profile']}) on {safe(info.label)}"
            console.print(line)
            if "certificate" in entry:
                c = entry["certificate"]
                console.print(f"  certificate {c['serial']}  {safe(c['subject'])}  valid until {c['not_after'][:10]}")
            if "csr_file" in entry:
                console.print(f"  CSR {entry['csr_file']}")
        if csr_files:
            console.print("Next: send the CSR to the CA, then: twcactl card import-cert CERT")

    emit(doc, human)


@card.command("import-cert", epilog="""\b
Examples:
  twcactl card import-cert holder.cer --token "TWCA Card"
  twcactl card import-cert issued.pem --pin env:CARD_PIN --json
""")
@click.argument("cert_file", metavar="CERT", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@_token_options
@_pin_option
@click.option("--label", metavar="TEXT", help="CKA_LABEL of the certificate (default: its key's label).")
@json_option
def import_cert(cert_file: Path, module: str | None, token_label: str | None, pin_source: str | None,
                label: str | None) -> None:
    """Write a certificate returned by a CA next to its key on the card (same ID)."""
    from twcactl import card as card_mod
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_certificate

    cert = load_certificate(read_input(cert_file, what="certificate"), name=str(cert_file))
    token = _open_token(module, token_label)
    pin = _pin(pin_source)
    with token.session(pin, rw=True) as session:
        key = card_mod.import_certificate(session, cert, label=label)
    doc: dict[str, Any] = {"token": {"label": token.info.label, "serial": token.info.serial},
                           "module": token.info.module,
                           "certificate": _cert_doc(cert, label=label or key.label, id_hex=key.id)}

    def human(console: Console) -> None:
        console.print(f"Certificate {doc['certificate']['serial']} written next to key {key.id} on "
                      f"{safe(token.info.label)}.")

    emit(doc, human)


# --------------------------------------------------------------------------
# renew


@card.command("renew", epilog="""\b
Examples:
  twcactl card renew --token "TWCA Card"                       # renew every certificate on the card
  twcactl card renew --early --days 365 --pin env:CARD_PIN --json
  twcactl card renew --request-out renewal.p7b                 # for an outside CA
""")
@_token_options
@_pin_option
@click.option("--years", type=int, help="Validity added to the old notAfter, in years (default: the old validity).")
@click.option("--days", type=int, help="Validity added to the old notAfter, in days.")
@click.option("--early", is_flag=True, help="Renew before the renewal window opens.")
@click.option("--request-out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the signed renewal request (PKCS#7 PEM) for an outside CA instead "
                   "(several certificates: NAME-LABEL).")
@click.option("--label", "only_label", metavar="TEXT", help="Renew only the certificate with this label.")
@click.option("--key-type", type=click.Choice(KEY_TYPE_CHOICES), help="New key type (default: as the old key).")
@click.option("--keep-old", is_flag=True, help="Keep the old key and certificate on the card after renewal.")
@click.option("--force", is_flag=True, help="Replace existing --request-out files.")
@ca_passphrase_option
@json_option
def renew(module: str | None, token_label: str | None, pin_source: str | None, years: int | None, days: int | None,
          early: bool, request_out: Path | None, only_label: str | None, key_type: str | None, keep_old: bool,
          force: bool, ca_passphrase: str | None) -> None:
    """Renew the card's certificates with new keys made on the card (domain.md §8).

    Each new CSR is wrapped in a CMS (PKCS#7) renewal request signed with
    the OLD card key, the form of Windows `certreq -renew`; the local CA
    accepts it only when it verifies with the old certificate in its
    records.  All certificates on the card renew, or none: any failure
    deletes the new keys and leaves the old ones usable.
    """
    from twcactl.errors import UsageError
    from twcactl.rules.validity import Validity

    if request_out is not None and (years is not None or days is not None or early):
        raise UsageError("--years, --days and --early are for the local CA; not with --request-out.")
    validity = Validity.from_options(years, days) if years is not None or days is not None else None
    store = None if request_out is not None else app().open_store()
    try:
        if store is not None:
            store.operators.require_manager(current_operator())
        token = _open_token(module, token_label)
        made, request_files, submit = _renew_on_card(
            token, pin_source, store, only_label=only_label, request_out=request_out, force=force,
            validity=validity, early=early, key_type=key_type, keep_old=keep_old, ca_passphrase=ca_passphrase)
        window = (store.settings() if store is not None else Settings()).renewal_window_days
    finally:
        if store is not None:
            store.close()
    _render_renewals(token.info, made, request_files, submit, window=window, old_kept=keep_old or submit is None)


def _renew_on_card(token: P11Token, pin_source: str | None, store: Store | None, *, only_label: str | None,
                   request_out: Path | None, force: bool, validity: Validity | None, early: bool,
                   key_type: str | None, keep_old: bool, ca_passphrase: str | None
                   ) -> tuple[list[Any], list[Path], LocalRenewer | None]:
    """New keys on the card for its certificates, renewed by the local CA (``store``) or written as
    renewal requests next to ``request_out``; returns the renewals, the request files and the renewer."""
    from twcactl import card as card_mod
    from twcactl.fsutil import ensure_free

    card_mod.require_pin_usable(token.info, for_what="a key is made on it")
    pin = _pin(pin_source)
    with token.session(pin, rw=True) as session:
        targets = card_mod.renewal_targets(session.objects(), label=only_label)
        request_files: list[Path] = []
        submit = None
        if request_out is not None:
            request_files = _request_paths(request_out, [t.label for t in targets])
            ensure_free(request_files, force=force)
        else:
            from twcactl.authority.card_issuer import LocalRenewer

            assert store is not None
            submit = LocalRenewer(store, targets, validity=validity, early=early, operator=current_operator(),
                                  passphrase=ca_passphrase_provider(ca_passphrase))
            submit.precheck()
        note(f"Generating {len(targets)} new key pair(s) on the card ...")
        made = card_mod.renew(session, targets, key_type=key_type, submit=submit, keep_old=keep_old)
        if request_files:
            from twcactl.fsutil import write_file
            from twcactl.pkix.cms_request import request_pem

            try:
                for path, item in zip(request_files, made):
                    write_file(path, request_pem(item.request_der), force=force)
            except BaseException:
                for item in made:
                    session.destroy(item.new_id_hex)
                raise
    return made, request_files, submit


def _render_renewals(info: TokenInfo, made: list[Any], request_files: list[Path], submit: LocalRenewer | None, *,
                     window: int, old_kept: bool) -> None:
    entries = []
    for i, item in enumerate(made):
        entry: dict[str, Any] = {"label": item.old.label, "old_serial": item.old.serial, "old_id": item.old.id_hex,
                                 "new_id": item.new_id_hex}
        if request_files:
            entry["request_file"] = str(request_files[i])
        if submit is not None:
            cert, record, renewed = submit.renewed[i]
            entry["certificate"] = _cert_doc(cert, label=item.old.label, id_hex=item.new_id_hex, record=record,
                                             window=window)
            entry["renewed"] = renewed
        entries.append(entry)
    doc: dict[str, Any] = {"token": {"label": info.label, "serial": info.serial}, "renewals": entries,
                           "old_kept": old_kept, "module": info.module}
    if submit is not None:
        doc["files"] = files_document(submit.files)

    def human(console: Console) -> None:
        for entry in entries:
            if "certificate" in entry:
                c = entry["certificate"]
                console.print(f"Renewed {entry['old_serial']} -> {c['serial']}  {safe(c['subject'])}  "
                              f"valid until {c['not_after'][:10]}  (key {entry['new_id']})")
            else:
                console.print(f"Request {entry['request_file']} for {entry['old_serial']}  (new key {entry['new_id']})")
        if request_files:
            console.print("Next: send the request to the CA, then: twcactl card import-cert CERT")

    emit(doc, human)


def _request_paths(request_out: Path, labels: list[str]) -> list[Path]:
    if len(labels) == 1:
        return [request_out]
    suffix = request_out.suffix or ".p7b"
    out = []
    for label in labels:
        clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label) or "key"
        out.append(request_out.with_name(f"{request_out.stem}-{clean}{suffix}"))
    return out


# --------------------------------------------------------------------------
# register


@card.command("register", epilog="""\b
Examples:
  twcactl card register --out-dir ./my-card
  twcactl --home ./myca card register --token "TWCA Card" --out-dir certs --json
""")
@_token_options
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="Where to write <label>-<serial>.cer (PEM) for each certificate on the card: sign-<serial>.cer "
                   "and enc-<serial>.cer for a signing and encryption pair.")
@click.option("--force", is_flag=True, help="Replace existing files.")
@json_option
def register(module: str | None, token_label: str | None, out_dir: Path, force: bool) -> None:
    """Copy the card's certificates to files and link those this CA issued to its records.

    The private keys never leave the card; "moving to another computer" is
    copying the certificates (domain.md §8).  No PIN is needed.
    """
    from cryptography.hazmat.primitives import serialization

    from twcactl.authority.card_issuer import register_file_name
    from twcactl.card import readable_certificates
    from twcactl.fsutil import ensure_free, write_file

    token = _open_token(module, token_label)
    with token.session(None) as session:
        certs, unreadable = readable_certificates(session.objects())
    for o in unreadable:
        note(f"warning: skipping certificate object {o.id or o.label!r}: not a readable X.509 certificate")
    paths = [out_dir / register_file_name(o.label, format_serial(c.serial_number)) for o, c in certs]
    ensure_free(paths, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, window = _register_in_home(token.info, [(c, str(p)) for (_o, c), p in zip(certs, paths)])
    for path, (_o, c) in zip(paths, certs):
        write_file(path, c.public_bytes(serialization.Encoding.PEM), force=force)
    entries = []
    for i, (o, c) in enumerate(certs):
        entry = _cert_doc(c, label=o.label, id_hex=o.id, record=records[i], window=window)
        entry["file"] = str(paths[i])
        entry["issued_here"] = records[i] is not None
        entries.append(entry)
    doc = {"token": {"label": token.info.label, "serial": token.info.serial}, "certificates": entries,
           "module": token.info.module}

    def human(console: Console) -> None:
        if not entries:
            console.print(f"No certificates on {safe(token.info.label)}.")
        for e in entries:
            linked = "linked to this CA's record" if e["issued_here"] else "not issued by this CA"
            console.print(f"{e['file']}  {safe(e['subject'])}  until {e['not_after'][:10]}  ({linked})")

    emit(doc, human)


def _register_in_home(info: TokenInfo, certificates: list[tuple[x509.Certificate, str]]
                      ) -> tuple[list[Any], int]:
    """This CA's records of ``certificates`` (None each when the home holds no CA) and the renewal window."""
    from twcactl.authority.card_issuer import register_card
    from twcactl.store import Store

    if not Store.exists(app().resolved_home()):
        return [None] * len(certificates), Settings().renewal_window_days
    store = app().open_store()
    try:
        found = register_card(store, certificates, token_label=info.label, token_serial=info.serial,
                              operator=current_operator())
    finally:
        store.close()
    return list(found.records), found.renewal_window_days
