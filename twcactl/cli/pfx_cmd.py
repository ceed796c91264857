"""``twcactl pfx``: PKCS#12 files (domain.md §7)."""

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
)
from twcactl.cli.output import emit, note, safe
from twcactl.rules.serials import format_serial

if TYPE_CHECKING:
    from cryptography import x509
    from rich.console import Console

    from twcactl.authority.rekey import NewKeyOutcome
    from twcactl.pfx import OpenedPfx, RepackedPfx
    from twcactl.pkix.keys import PrivateKey

NO_CHAIN_WARNING = ("the PFX holds no CA certificates (no CA home issued this certificate and no --chain was given); "
                    "clients may not trust it: export again with --chain cert.zip (or uca.cer and root.cer, a "
                    "directory or a fullchain PEM)")
PASSWORD_HELP = "The PFX password: env:NAME, file:PATH, fd:N, stdin, pass:TEXT (default: none if the file has " \
                "an empty one, else prompt)."


@click.group()
def pfx() -> None:
    """PKCS#12 (PFX) files: export, inspect, split, change the password."""


@pfx.command("export", epilog="""\b
Examples:
  twcactl pfx export --cert www/server.cer --key www.key --out www.pfx --password env:PFX_PASS
  twcactl pfx export --cert server.cer --key server.key --chain uca.cer --chain root.cer \\
      --out server.pfx --name "www.twca.com.tw" --password file:pfx.pass --key-passphrase env:KEY_PASS
  twcactl pfx export --cert server.cer --key www.key --chain www/cert.zip --out www.pfx --password env:PFX_PASS
  twcactl pfx export --cert fullchain.pem --key www.key --out www.pfx --password env:PFX_PASS
""")
@click.option("--cert", "cert_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The certificate (PEM or DER), or a fullchain PEM with the leaf first.")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Its private key (PEM or DER, encrypted or not).")
@click.option("--chain", "chain_files", multiple=True, type=click.Path(path_type=Path),
              help="CA certificates to include (repeatable): files, a fullchain, a cert.zip or a directory; each "
                   "certificate goes in once, issuer first. Default: the CA home's chain when it issued the "
                   "certificate, else the rest of a fullchain --cert.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The PFX file to write.")
@click.option("--password", metavar="SOURCE", help="The new PFX password (at least 6 characters): env:NAME, file:PATH, "
              "fd:N, stdin, pass:TEXT (default: prompt twice).")
@click.option("--key-passphrase", metavar="SOURCE", help="The passphrase of an encrypted --key.")
@click.option("--name", "friendly_name", metavar="FRIENDLY", help="Friendly name (default: the certificate's CN; "
              "'CN (signing)' / 'CN (encryption)' for the halves of a signing and encryption pair).")
@click.option("--legacy", is_flag=True, help="3DES and a SHA-1 MAC, for old Windows and Java.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@json_option
def export(cert_file: Path, key_file: Path, chain_files: tuple[Path, ...], out: Path, password: str | None,
           key_passphrase: str | None, friendly_name: str | None, legacy: bool, force: bool) -> None:
    """Back up a key with its certificate and the whole certification path as a PFX.

    Strong protection by default: AES-256-CBC with PBKDF2-HMAC-SHA256 and a
    SHA-256 MAC.
    """
    from twcactl.cli.secrets import get_secret
    from twcactl.fsutil import ensure_free, read_input, write_file
    from twcactl.pfx import check_password, default_friendly_name, export_pfx
    from twcactl.pkix.leaf import read_bundle, split_leaf

    ensure_free([out], force=force)
    cert, rest = split_leaf(read_bundle([cert_file]), name=str(cert_file))  # a fullchain: leaf first
    key_data = read_input(key_file, what="key")
    chain, source = _export_chain(cert, rest, chain_files)
    key = matching_key(key_data, key_passphrase, cert, key_file=key_file, cert_file=cert_file)
    pfx_password = get_secret(password, option="--password", what="new PFX password", new=True)
    check_password(pfx_password)
    name = friendly_name or default_friendly_name(cert)
    data = export_pfx(key, cert, chain, password=pfx_password, friendly_name=name, legacy=legacy)
    write_file(out, data, mode=0o600, force=force)
    _render_export(out, cert, chain, source, name=name, legacy=legacy)


def _export_chain(cert: x509.Certificate, rest: list[x509.Certificate],
                  chain_files: tuple[Path, ...]) -> tuple[list[x509.Certificate], str]:
    """The CA certificates to include, each once, and where they came from: ``files`` (--chain, with the rest of
    a fullchain --cert), ``ca-home``, ``cert`` (the rest of a fullchain --cert) or ``none``."""
    from twcactl.pfx import chain_for_export
    from twcactl.pkix.leaf import read_bundle

    if chain_files:
        return chain_for_export(cert, [*rest, *read_bundle(list(chain_files))]), "files"
    home_chain = _home_chain(cert)
    if home_chain is not None:
        return home_chain, "ca-home"
    return chain_for_export(cert, rest), ("cert" if rest else "none")


def matching_key(key_data: bytes, key_passphrase: str | None, cert: x509.Certificate, *, key_file: Path,
                  cert_file: Path) -> PrivateKey:
    """The private key in ``key_data`` (its passphrase asked only when it is encrypted); it must be ``cert``'s."""
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import PolicyError
    from twcactl.pfx import key_matches
    from twcactl.pkix.keys import is_encrypted_key, load_private_key

    key_pass = None
    if is_encrypted_key(key_data):
        key_pass = get_secret(key_passphrase, option="--key-passphrase", what=f"passphrase of {key_file}")
    key = load_private_key(key_data, key_pass, name=str(key_file))
    if not key_matches(key, cert):
        raise PolicyError(f"the private key in {key_file} does not belong to the certificate in {cert_file}.",
                          hint="give the key the CSR was made with")
    return key


def _render_export(out: Path, cert: x509.Certificate, chain: list[x509.Certificate], source: str, *,
                   name: str | None, legacy: bool) -> None:
    from cryptography.hazmat.primitives import hashes

    doc: dict[str, Any] = {
        "file": str(out),
        "friendly_name": name,
        "certificates": 1 + len(chain),
        "chain_source": source,
        "encryption": "pbeWithSHA1And3-KeyTripleDES-CBC" if legacy else "PBES2 AES-256-CBC PBKDF2-HMAC-SHA256",
        "mac": "sha1" if legacy else "sha256",
        "subject": cert.subject.rfc4514_string(),
        "serial": format_serial(cert.serial_number),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "warnings": [],
    }
    if source == "none":  # issue 17: written, but never silently without its chain
        doc["warnings"] = [NO_CHAIN_WARNING]
        note(f"warning: {NO_CHAIN_WARNING}")

    def human(console: Console) -> None:
        console.print(f"PFX  {out}  (key + {1 + len(chain)} certificate(s), {doc['encryption']}, MAC {doc['mac']})")
        console.print(f"  friendly name  {safe(name or '')}")

    emit(doc, human)


def _home_chain(cert: x509.Certificate) -> list[x509.Certificate] | None:
    """The CA home's chain (issuer first, root last) when the home issued ``cert``, else None."""
    from cryptography.hazmat.primitives import serialization

    from twcactl.authority.lifecycle import ca_chain_for
    from twcactl.store import Store

    home = app().resolved_home()
    if not Store.exists(home):
        return None
    store = app().open_store()  # the store password too, when the records are on PostgreSQL (issue 14)
    try:
        record = store.certificates.find_by_der(cert.public_bytes(serialization.Encoding.DER))
        if record is None:
            return None
        return list(reversed(ca_chain_for(store, record)))
    finally:
        store.close()


def _open(path: Path, source: str | None) -> tuple[bytes, OpenedPfx, str | None]:
    """Read and open a PFX: structure checked before any password is asked; the empty password needs none."""
    from twcactl.cli.secrets import get_secret
    from twcactl.fsutil import read_input
    from twcactl.pfx import open_pfx
    from twcactl.pkix.pkcs12_info import mac_matches, parse_pfx

    data = read_input(path, what="PFX")
    structure = parse_pfx(data, name=str(path))
    password: str | None = None
    if source is not None or mac_matches(structure, None) is not True:
        password = get_secret(source, option="--password", what=f"password of {path}")
    return data, open_pfx(data, password, name=str(path)), password


def _cert_json(entry: object) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes

    from twcactl.rules.times import rfc3339

    cert = entry.certificate  # type: ignore[attr-defined]
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format_serial(cert.serial_number),
        "not_before": rfc3339(cert.not_valid_before_utc),
        "not_after": rfc3339(cert.not_valid_after_utc),
        "friendly_name": entry.friendly_name,  # type: ignore[attr-defined]
        "local_key_id": entry.local_key_id,  # type: ignore[attr-defined]
        "is_key_certificate": entry.is_key_certificate,  # type: ignore[attr-defined]
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def _key_json(opened: OpenedPfx) -> dict[str, Any] | None:
    from twcactl.pkix.keys import describe_public_key

    if opened.key is None:
        return None
    kind, bits, curve = describe_public_key(opened.key.public_key())
    key_cert = opened.key_certificate
    return {
        "type": kind, "bits": bits, "curve": curve,
        "friendly_name": opened.key_friendly_name, "local_key_id": opened.key_local_key_id,
        "certificate": key_cert.certificate.subject.rfc4514_string() if key_cert else None,
        "certificate_serial": format_serial(key_cert.certificate.serial_number) if key_cert else None,
    }


@pfx.command("show", epilog="""\b
Examples:
  twcactl pfx show www.pfx --password env:PFX_PASS
  twcactl pfx show truststore.p12 --json      # a Java trust store with an empty password
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--password", metavar="SOURCE", help=PASSWORD_HELP)
@json_option
def show(file: Path, password: str | None) -> None:
    """Show a PFX: the key, every certificate and the protection (schemes, MAC, iterations).

    The structure is read before the password is used, so a damaged file
    (exit 3) is told apart from a wrong password (exit 4), and absurd
    iteration counts are refused before any work.
    """
    from twcactl.pkix.keys import key_label

    _data, opened, _pw = _open(file, password)
    structure = opened.structure
    doc: dict[str, Any] = {
        "file": str(file),
        "key": _key_json(opened),
        "key_count": opened.key_count,
        "certificates": [_cert_json(e) for e in opened.certificates],
        "protection": structure.to_json(),
    }

    def human(console: Console) -> None:
        prot = structure.to_json()
        console.print(f"PFX  {safe(file)}")
        if opened.key is not None:
            key_cert = opened.key_certificate
            owner = safe(key_cert.certificate.subject.rfc4514_string()) if key_cert else "no certificate in the file"
            console.print(f"  key           {key_label(opened.key.public_key())}  for {owner}")
        else:
            console.print("  key           none (certificate-only file, e.g. a trust store)")
        for e in opened.certificates:
            c = _cert_json(e)
            mark = "  (the key's)" if e.is_key_certificate else ""
            console.print(f"  certificate   {safe(c['subject'])}{mark}")
            console.print(f"                issuer {safe(c['issuer'])}")
            console.print(f"                serial {c['serial']}  valid {c['not_before']} .. {c['not_after']}")
            if c["friendly_name"] or c["local_key_id"]:
                console.print(f"                friendly name {safe(c['friendly_name'] or '-')}  "
                              f"local key ID {c['local_key_id'] or '-'}")
        _protection_lines(console, prot)

    emit(doc, human)


def _rewrite_options(command: Callable[..., None]) -> Callable[..., None]:
    """FILE and the options of every command that writes a PFX again under a new password (``pfx rekey``,
    ``pfx change-password``), in the order their help lists them."""
    for decorator in reversed((
        click.argument("file", type=click.Path(path_type=Path, dir_okay=False)),
        click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                     help="The new PFX (never FILE, unless --in-place)."),
        click.option("--password", metavar="SOURCE", help=PASSWORD_HELP),
        click.option("--new-password", metavar="SOURCE",
                     help="The new password, at least 6 characters (default: prompt twice)."),
        click.option("--legacy", is_flag=True,
                     help="Downgrade on purpose to 3DES and a SHA-1 MAC, for old Windows and Java."),
        click.option("--in-place", is_flag=True, help="Replace FILE itself (atomically)."),
    )):
        command = decorator(command)
    return command


@pfx.command("rekey", epilog="""\b
Examples:
  twcactl pfx rekey old.pfx --out new.pfx --password env:OLD_PASS --new-password env:NEW_PASS
  twcactl pfx rekey www.pfx --in-place --password file:old.pass --new-password file:new.pass
  twcactl pfx rekey www.pfx --out www-2026.pfx --new-key --revoke-old --password env:P --new-password env:P2
""")
@_rewrite_options
@click.option("--new-key", is_flag=True, help="A fresh key pair and a replacement certificate from the CA home "
              "(the cert renew rules), in a new PFX.")
@click.option("--revoke-old", is_flag=True, help="With --new-key: revoke the old certificate as superseded.")
@click.option("--early", is_flag=True, help="With --new-key: renew outside the renewal window.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@ca_passphrase_option
@json_option
def rekey(file: Path, out: Path | None, password: str | None, new_password: str | None, legacy: bool,
          in_place: bool, new_key: bool, revoke_old: bool, early: bool, force: bool,
          ca_passphrase: str | None) -> None:
    """Change a PFX's password: same key, certificates and friendly names, AES-256 unless --legacy.

    A wrong old password writes nothing (exit 4); a file holding several
    keys is refused rather than losing one.  With --new-key it is a re-key
    in the PKI sense: a new key pair and a replacement certificate.
    """
    from twcactl.errors import UsageError

    if revoke_old and not new_key:
        raise UsageError("--revoke-old goes with --new-key.")
    if early and not new_key:
        raise UsageError("--early goes with --new-key.")
    target = _rekey_target(file, out, in_place=in_place, force=force)
    _data, opened, old_password = _open(file, password)
    new_pw = _new_password_provider(new_password)
    outcome = None
    if new_key:  # the core writes the file: staged before its commit, renamed after (issue 12)
        result, outcome = _rekey_with_new_key(opened, old_password, new_pw, legacy=legacy, early=early,
                                              revoke_old=revoke_old, ca_passphrase=ca_passphrase, name=str(file),
                                              target=target, force=force or in_place)
    else:
        result = _write_new_password(opened, old_password, new_pw, legacy=legacy, name=str(file), target=target,
                                     force=force or in_place)
    _render_rekey(file, target, result, outcome, in_place=in_place)


@pfx.command("change-password", epilog="""\b
Examples:
  twcactl pfx change-password www.pfx --out www-new.pfx --password env:OLD_PASS --new-password env:NEW_PASS
  twcactl pfx change-password www.pfx --in-place --password file:old.pass --new-password file:new.pass
\b
The manuals' "change the PFX password". A new key pair and certificate (a re-key in the PKI sense)
is `twcactl pfx rekey FILE --new-key`.
""")
@_rewrite_options
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@json_option
def change_password_cmd(file: Path, out: Path | None, password: str | None, new_password: str | None, legacy: bool,
                        in_place: bool, force: bool) -> None:
    """Change a PFX's password: the same key, certificates and friendly names, AES-256 unless --legacy.

    The same as `pfx rekey` without --new-key; no CA home is needed. A wrong
    old password writes nothing (exit 4); a file holding several keys is
    refused rather than losing one (exit 1).
    """
    target = _rekey_target(file, out, in_place=in_place, force=force)
    _data, opened, old_password = _open(file, password)
    result = _write_new_password(opened, old_password, _new_password_provider(new_password), legacy=legacy,
                                 name=str(file), target=target, force=force or in_place)
    _render_rekey(file, target, result, None, in_place=in_place)


def _write_new_password(opened: Any, old_password: str | None, new_password: Any, *, legacy: bool, name: str,
                        target: Path, force: bool) -> Any:
    """The password change shared by ``pfx rekey`` and ``pfx change-password``: repack, warn, write 0600."""
    from twcactl.fsutil import write_file
    from twcactl.pfx import change_password

    result = change_password(opened, old_password=old_password, new_password=new_password, legacy=legacy, name=name)
    if result.same_password:
        note("warning: the new password is the same as the old one.")
    write_file(target, result.data, mode=0o600, force=force)
    return result


def _rekey_target(file: Path, out: Path | None, *, in_place: bool, force: bool) -> Path:
    """Where ``pfx rekey`` writes, checked before anything is renewed: a new key with nowhere to go would be lost."""
    from twcactl.errors import InputError, UsageError
    from twcactl.fsutil import ensure_free

    if in_place and out is not None and not _same_file(out, file):
        raise UsageError("give --out or --in-place, not both.")
    if in_place:
        target = file
    elif out is None:
        raise UsageError("give --out FILE (or --in-place to replace the input).")
    else:
        target = out
        if _same_file(out, file):
            raise UsageError("--out is the input file; use --in-place to replace it.")
        ensure_free([out], force=force)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise InputError(f"cannot write in {directory}.")
    return target


def _new_password_provider(source: str | None) -> Callable[[], str]:
    """The new PFX password, read from SOURCE (or prompted twice) only when the core asks for it."""
    from twcactl.cli.secrets import get_secret

    def provide() -> str:
        return get_secret(source, option="--new-password", what="new PFX password", new=True)

    return provide


def _rekey_with_new_key(opened: OpenedPfx, old_password: str | None, new_password: Callable[[], str], *,
                        legacy: bool, early: bool, revoke_old: bool, ca_passphrase: str | None,
                        name: str, target: Path, force: bool) -> tuple[RepackedPfx, NewKeyOutcome]:
    from twcactl.authority.rekey import rekey_with_new_key

    store = app().open_store()
    try:
        return rekey_with_new_key(store, opened, old_password=old_password, new_password=new_password, legacy=legacy,
                                  early=early, revoke_old=revoke_old, operator=current_operator(),
                                  passphrase=ca_passphrase_provider(ca_passphrase), name=name, target=target,
                                  force=force)
    finally:
        store.close()


def _render_rekey(file: Path, target: Path, result: RepackedPfx, outcome: NewKeyOutcome | None, *,
                  in_place: bool) -> None:
    written = result.protection.to_json()
    replaced = None if outcome is None else {
        "serial": outcome.serial, "renewed": outcome.renewed, "old_revoked": outcome.revoked,
        "balance_before": outcome.balance_before, "balance_after": outcome.balance_after,
        "refund": outcome.refund.to_json() if outcome.refund else None}
    warnings = outcome.warnings if outcome is not None else []
    for warning in warnings:  # after the commit: the records stand, exit 0 (issue 12)
        note(f"warning: {warning}")
    if outcome is not None and outcome.file is not None:
        target = Path(outcome.file)
    doc: dict[str, Any] = {
        "file": str(target), "source": str(file), "in_place": in_place, "warnings": list(warnings),
        "certificates": result.certificates,
        "key": result.has_key,
        "protection": written,
        "was": result.was.to_json(),
        "new_key": replaced,
    }

    def human(console: Console) -> None:
        console.print(f"Wrote {safe(target)}  ({written['certificate_encryption']['scheme']}, MAC "
                      f"{written['mac']['algorithm'] if written['mac'] else 'none'})")
        console.print(f"  was  {result.was.certificate_protection.scheme}")
        if replaced:
            console.print(f"  new key and certificate {replaced['serial']} (replaces {replaced['renewed']}"
                          + (", revoked as superseded)" if replaced["old_revoked"] else ")"))
            if outcome is not None and outcome.refund is not None:
                console.print(f"  {outcome.refund.sentence()}")

    emit(doc, human)


def _iterations(protection: dict[str, Any]) -> str:
    return f", {protection['iterations']} iterations" if protection["iterations"] else ""


def _protection_lines(console: Console, prot: dict[str, Any]) -> None:
    """The schemes, iteration counts and MAC of ``pfx show``; a note when any part is legacy."""
    cp, kp, mac = prot["certificate_encryption"], prot["key_encryption"], prot["mac"]
    console.print(f"  certificates  {cp['scheme']}" + _iterations(cp))
    if kp is not None:
        console.print(f"  key           {kp['scheme']}" + _iterations(kp))
    console.print(f"  MAC           {mac['algorithm']}, {mac['iterations']} iterations" if mac
                  else "  MAC           none")
    if any(p and p.get("legacy") for p in (cp, kp)):
        console.print("  note: legacy encryption; `twcactl pfx rekey` writes AES-256 instead")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


@pfx.command("split", epilog="""\b
Examples:
  twcactl pfx split www.pfx --out-dir ./www --password env:PFX_PASS --key-passphrase env:KEY_PASS
  twcactl pfx split www.pfx --out-dir ./www --password env:PFX_PASS --no-passphrase
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--out-dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for key.pem (mode 0600), cert.pem and chain.pem.")
@click.option("--password", metavar="SOURCE", help=PASSWORD_HELP)
@click.option("--key-passphrase", metavar="SOURCE",
              help="Encrypt key.pem with this passphrase (default: prompt twice).")
@click.option("--no-passphrase", is_flag=True, help="Write key.pem unencrypted.")
@click.option("--force", is_flag=True, help="Replace existing files.")
@json_option
def split(file: Path, out_dir: Path, password: str | None, key_passphrase: str | None, no_passphrase: bool,
          force: bool) -> None:
    """Split a PFX into key.pem (encrypted PKCS#8 unless --no-passphrase), cert.pem and chain.pem.

    A certificate-only PFX (a Java trust store) gives chain.pem alone.
    """
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import UsageError
    from twcactl.fsutil import write_files
    from twcactl.pfx import split_pfx

    if key_passphrase is not None and no_passphrase:
        raise UsageError("give --key-passphrase or --no-passphrase, not both.")
    _data, opened, _pw = _open(file, password)
    passphrase = None
    if opened.key is not None and not no_passphrase:
        passphrase = get_secret(key_passphrase, option="--key-passphrase", what="new passphrase for key.pem", new=True)
    files = split_pfx(opened, key_passphrase=passphrase)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets: list[tuple[Path, bytes, int]] = []
    if files.key_pem is not None:
        targets.append((out_dir / "key.pem", files.key_pem, 0o600))
    if files.cert_pem is not None:
        targets.append((out_dir / "cert.pem", files.cert_pem, 0o644))
    if files.chain_pem is not None:
        targets.append((out_dir / "chain.pem", files.chain_pem, 0o644))
    written = write_files(targets, force=force)
    doc = {"file": str(file), "files": [str(p) for p in written], "key_encrypted": passphrase is not None
           if files.key_pem is not None else None, "certificates": len(opened.certificates)}

    def human(console: Console) -> None:
        console.print(f"Split {safe(file)}")
        for p in written:
            console.print(f"  {safe(p)}")
        if files.key_pem is not None and passphrase is None:
            console.print("  note: key.pem is not encrypted")

    emit(doc, human)
