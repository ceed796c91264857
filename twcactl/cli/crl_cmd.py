"""``twcactl crl``: regenerate the issuing CA's CRL on demand (RFC 5280 §5)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import (
    app,
    ca_passphrase_option,
    ca_passphrase_provider,
    current_operator,
    json_option,
)
from twcactl.cli.output import emit, files_document

if TYPE_CHECKING:
    from rich.console import Console


@click.command("crl", epilog="""\b
Examples:
  twcactl crl                       # regenerate crl/<ca>.crl in the CA home
  twcactl crl --out /srv/www/uca.crl
  twcactl crl --out uca.pem --json  # PEM when the name ends in .pem
  twcactl crl --ca root --ca-passphrase file:/media/root-pass   # the root ceremony: the root's CRL
""")
@click.option("--ca", "ca_name", metavar="NAME",
              help="The CA whose CRL to sign (default: the active issuing CA); root signs the root's CRL with "
                   "the root key, listing revoked issuing CAs (docs/hierarchy.md).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the CRL here: PEM when the name ends in .pem, else DER.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--full", is_flag=True,
              help="Rebuild every entry from the records instead of reusing the previous CRL's.")
@ca_passphrase_option
@json_option
def crl(out: Path | None, force: bool, full: bool, ca_passphrase: str | None, ca_name: str | None) -> None:
    """Regenerate the CRL (it is also regenerated after every revoke, hold and release)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from twcactl.authority.lifecycle import generate_crl
    from twcactl.fsutil import ensure_free, write_file
    from twcactl.rules.times import rfc3339

    ensure_free([out], force=force)
    store = app().open_store()
    try:
        outcome = generate_crl(store, operator=current_operator(), passphrase=ca_passphrase_provider(ca_passphrase),
                               full=full, ca_name=ca_name)
        result = outcome.crl
        path = store.crl_path(ca_name or store.cas.issuing().name)
    finally:
        store.close()
    if out is not None:
        encoding = serialization.Encoding.PEM if out.name.lower().endswith(".pem") else serialization.Encoding.DER
        write_file(out, result.public_bytes(encoding), force=force)
    number = result.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    doc = {
        "number": number,
        "this_update": rfc3339(result.last_update_utc),
        "next_update": rfc3339(result.next_update_utc) if result.next_update_utc else None,
        "entries": len(result),
        "path": str(path),
        "out": str(out) if out else None,
        "files": files_document(outcome.files),
    }

    def human(console: Console) -> None:
        console.print(f"CRL #{number}  {len(result)} entr{'y' if len(result) == 1 else 'ies'}  "
                      f"next update {doc['next_update']}")
        console.print(f"  {path}" + (f"\n  {out}" if out else ""))

    emit(doc, human)
