"""``twcactl pfx``: PKCS#12 files (domain.md §7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from cryptography import x509
    from rich.console import Console


@click.group()
def pfx() -> None:
    """PKCS#12 (PFX) files: export a key with its certificate and whole chain."""


@pfx.command("export", epilog="""\b
Examples:
  twcactl pfx export --cert www/server.cer --key www.key --out www.pfx --password env:PFX_PASS
  twcactl pfx export --cert server.cer --key server.key --chain uca.cer --chain root.cer \\
      --out server.pfx --name "www.twca.com.tw" --password file:pfx.pass --key-passphrase env:KEY_PASS
""")
@click.option("--cert", "cert_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The certificate (PEM or DER).")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Its private key (PEM or DER, encrypted or not).")
@click.option("--chain", "chain_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CA certificates to include (repeatable). Default: the CA home's chain when it issued the certificate.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The PFX file to write.")
@click.option("--password", metavar="SOURCE", help="The new PFX password (at least 6 characters): env:NAME, file:PATH, "
              "fd:N, stdin, pass:TEXT (default: prompt twice).")
@click.option("--key-passphrase", metavar="SOURCE", help="The passphrase of an encrypted --key.")
@click.option("--name", "friendly_name", metavar="FRIENDLY", help="Friendly name (default: the certificate's CN).")
@click.option("--legacy", is_flag=True, help="3DES and a SHA-1 MAC, for old Windows and Java.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@json_option
def export(cert_file: Path, key_file: Path, chain_files: tuple[Path, ...], out: Path, password: str | None,
           key_passphrase: str | None, friendly_name: str | None, legacy: bool, force: bool) -> None:
    """Back up a key with its certificate and the whole certification path as a PFX.

    Strong protection by default: AES-256-CBC with PBKDF2-HMAC-SHA256 and a
    SHA-256 MAC.
    """
    from cryptography.hazmat.primitives import hashes

    from twcactl.cli.secrets import get_secret
    from twcactl.errors import StateError
    from twcactl.fsutil import read_input, write_file
    from twcactl.keys import is_encrypted_key, load_private_key
    from twcactl.names import common_name
    from twcactl.pem import load_certificate, load_certificates
    from twcactl.pfx import check_password, export_pfx

    if not force and (out.exists() or out.is_symlink()):
        raise StateError(f"{out} already exists.", hint="use --force to replace it")
    cert = load_certificate(read_input(cert_file, what="certificate"), name=str(cert_file))
    key_data = read_input(key_file, what="key")
    chain: list[x509.Certificate] = []
    for f in chain_files:
        chain.extend(load_certificates(read_input(f, what="chain"), name=str(f)))
    source = "files" if chain_files else "none"
    if not chain_files:
        home_chain = _home_chain(cert)
        if home_chain is not None:
            chain, source = home_chain, "ca-home"
    key_pass = None
    if is_encrypted_key(key_data):
        key_pass = get_secret(key_passphrase, option="--key-passphrase", what=f"passphrase of {key_file}")
    key = load_private_key(key_data, key_pass, name=str(key_file))
    pfx_password = get_secret(password, option="--password", what="new PFX password", new=True)
    check_password(pfx_password)
    name = friendly_name or common_name(cert.subject)
    data = export_pfx(key, cert, chain, password=pfx_password, friendly_name=name, legacy=legacy)
    write_file(out, data, mode=0o600, force=force)
    doc = {
        "file": str(out),
        "friendly_name": name,
        "certificates": 1 + len(chain),
        "chain_source": source,
        "encryption": "pbeWithSHA1And3-KeyTripleDES-CBC" if legacy else "PBES2 AES-256-CBC PBKDF2-HMAC-SHA256",
        "mac": "sha1" if legacy else "sha256",
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }

    def human(console: Console) -> None:
        console.print(f"PFX  {out}  (key + {1 + len(chain)} certificate(s), {doc['encryption']}, MAC {doc['mac']})")
        console.print(f"  friendly name  {safe(name or '')}")
        if source == "none":
            console.print("  note: no chain included; give --chain files for the intermediates and root")

    emit(doc, human)


def _home_chain(cert: x509.Certificate) -> list[x509.Certificate] | None:
    """The CA home's chain (issuer first, root last) when the home issued ``cert``, else None."""
    from cryptography.hazmat.primitives import serialization

    from twcactl.lifecycle import ca_chain_for
    from twcactl.store import Store

    home = app().resolved_home()
    if not Store.exists(home):
        return None
    store = Store.open(home, lock_timeout=app().lock_timeout)
    try:
        record = store.find_certificate_by_der(cert.public_bytes(serialization.Encoding.DER))
        if record is None:
            return None
        return list(reversed(ca_chain_for(store, record)))
    finally:
        store.close()
