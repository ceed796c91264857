"""``twcactl ocsp``: signed OCSP responses from the records (RFC 6960)."""

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
from twcactl.cli.output import emit

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def ocsp() -> None:
    """OCSP: answer status requests from the CA's records."""


@ocsp.command("respond", epilog="""\b
Example:
  openssl ocsp -issuer uca.cer -cert server.cer -reqout req.der -no_nonce
  twcactl ocsp respond --request req.der --out resp.der
  openssl ocsp -respin resp.der -issuer uca.cer -VAfile uca.cer -text
""")
@click.option("--request", "request_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="A DER OCSP request.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The DER response to write.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@ca_passphrase_option
@json_option
def respond(request_file: Path, out: Path, force: bool, ca_passphrase: str | None) -> None:
    """Write a signed OCSP response (good / revoked / unknown) for a request."""
    from twcactl.authority.responder import ocsp_respond
    from twcactl.fsutil import ensure_free, read_input, write_file

    ensure_free([out], force=force)
    data = read_input(request_file, what="OCSP request")
    store = app().open_store()
    try:
        der, status = ocsp_respond(store, data, operator=current_operator(),
                                   passphrase=ca_passphrase_provider(ca_passphrase), name=str(request_file))
    finally:
        store.close()
    write_file(out, der, force=force)
    doc = {"status": status, "out": str(out)}

    def human(console: Console) -> None:
        console.print(f"OCSP response: {status}  ->  {out}")

    emit(doc, human)
