"""``twcactl csr``: make and read certificate signing requests (domain.md §1)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import json_option
from twcactl.cli.output import emit, note, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def csr() -> None:
    """Make, read and check certificate signing requests."""


@csr.command("new", epilog="""\b
Examples:
  twcactl csr new --cn www.twca.com.tw --org TWCA --ou SYSTEM --locality Taipei \\
      --state Taiwan --country TW --key-out www.key --out www.csr --key-passphrase env:KEY_PASS
  twcactl csr new --cn api.twca.com.tw --san api2.twca.com.tw --key-type ec-p256 \\
      --org TWCA --locality Taipei --state Taiwan --country TW --key-out api.key --no-passphrase
""")
@click.option("--cn", required=True, help="Common Name: the site name, e.g. www.twca.com.tw (no https://).")
@click.option("--org", help="O: the company's registered English name.")
@click.option("--ou", "ous", multiple=True, help="OU: organisational unit (repeatable).")
@click.option("--locality", help="L: city, e.g. Taipei.")
@click.option("--state", help="ST: state or province, e.g. Taiwan.")
@click.option("--country", help="C: ISO 3166 two-letter code, e.g. TW.")
@click.option("--san", "sans", multiple=True, metavar="NAME",
              help="A subjectAltName (repeatable): DNS names; for user profiles e-mail addresses. "
                   "For SSL profiles the CN is always included.")
@click.option("--profile", default="ssl", show_default=True,
              type=click.Choice(["ssl", "wildcard", "ev", "user-sign", "user-enc"]),
              help="What the request is for (decides how --san is read).")
@click.option("--key-type", default="rsa2048", show_default=True,
              type=click.Choice(["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"]))
@click.option("--key-out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the new private key (PKCS#8 PEM, mode 0600).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Where to write the CSR (PEM); default stdout.")
@click.option("--key-passphrase", metavar="SOURCE", help="Encrypt the key: env:NAME, file:PATH, fd:N, stdin, pass:TEXT "
              "(default: prompt twice).")
@click.option("--no-passphrase", is_flag=True, help="Write the key unencrypted.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
@json_option
def new(cn: str, org: str | None, ous: tuple[str, ...], locality: str | None, state: str | None,
        country: str | None, sans: tuple[str, ...], profile: str, key_type: str, key_out: Path, out: Path | None,
        key_passphrase: str | None, no_passphrase: bool, force: bool) -> None:
    """Generate a key pair and a CSR for it.

    Every value must be printable ASCII (the manuals' most common mistake is
    a Chinese value); such input is refused before any key is generated.
    """
    from cryptography.hazmat.primitives import serialization

    from twcactl.cli.secrets import get_secret
    from twcactl.csr import build_csr
    from twcactl.errors import StateError, UsageError
    from twcactl.fsutil import write_file
    from twcactl.keys import generate_key, private_key_pem
    from twcactl.models import SSL_PROFILES
    from twcactl.policy import printable_problem

    if no_passphrase and key_passphrase:
        raise UsageError("give --key-passphrase or --no-passphrase, not both.")
    subject: list[tuple[str, str]] = []
    for short, value in (("C", country), ("ST", state), ("L", locality), ("O", org)):
        if value is not None:
            subject.append((short, value))
    subject.extend(("OU", ou) for ou in ous)
    subject.append(("CN", cn))
    for short, value in subject:
        problem = printable_problem(value)
        if problem:
            raise UsageError(f"{short}: {problem}.", hint="every subject value must be English (printable ASCII)")
    if country is not None and len(country) != 2:
        raise UsageError("C must be a two-letter ISO 3166 code, such as TW.")
    for san in sans:
        problem = printable_problem(san)
        if problem:
            raise UsageError(f"--san: {problem}.")
    for target in (key_out, out):
        if target is not None and str(target) != "-" and not force and (target.exists() or target.is_symlink()):
            raise StateError(f"{target} already exists.", hint="use --force to replace it")
    passphrase = None if no_passphrase else get_secret(
        key_passphrase, option="--key-passphrase", what="new key passphrase", new=True)

    if profile in SSL_PROFILES:
        dns_names, emails = [cn, *sans], []
    else:
        dns_names, emails = [], list(sans)
    note(f"Generating a {key_type} key ...")
    key = generate_key(key_type)
    try:
        request = build_csr(key, subject, dns_names=dns_names, emails=emails)
    except ValueError as exc:
        raise UsageError(f"cannot build the CSR: {exc}.") from exc
    pem = request.public_bytes(serialization.Encoding.PEM)
    write_file(key_out, private_key_pem(key, passphrase), mode=0o600, force=force)
    if out is not None and str(out) != "-":
        write_file(out, pem, force=force)

    from twcactl.names import rfc4514

    doc = {
        "subject": rfc4514(request.subject),
        "key_type": key_type,
        "key_file": str(key_out),
        "key_encrypted": passphrase is not None,
        "csr_file": str(out) if out is not None and str(out) != "-" else None,
        "csr": pem.decode("ascii"),
    }

    def human(console: Console) -> None:
        if doc["csr_file"] is None:
            click.echo(pem.decode("ascii"), nl=False)
        else:
            console.print(f"CSR  {doc['csr_file']}  {safe(doc['subject'])}")
            console.print(f"key  {doc['key_file']}  ({key_type}, {'encrypted' if passphrase else 'NOT encrypted'}, 0600)")

    emit(doc, human)


@csr.command("show", epilog="""\b
Examples:
  twcactl csr show www.csr
  twcactl csr show iis-request.txt --json
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@json_option
def show(file: Path) -> None:
    """Parse a CSR (PEM with either header, text around it, CRLF, or DER) and show every field."""
    from twcactl.csr import describe
    from twcactl.fsutil import read_input
    from twcactl.pem import load_csr

    request = load_csr(read_input(file, what="CSR"), name=str(file))
    desc = describe(request)
    doc = {"file": str(file), **desc.to_json()}

    def human(console: Console) -> None:
        console.print(f"CSR  {safe(file)}")
        console.print(f"  subject    {safe(desc.subject_text)}")
        for attr in desc.subject:
            console.print(f"    {attr['name']:<12} {safe(attr['value'])}")
        console.print("  SANs       " + (safe(", ".join(desc.sans)) if desc.sans else "(none)"))
        console.print(f"  key        {desc.key}")
        console.print(f"  signature  {desc.signature_algorithm}: {desc.signature}")
        for ext in desc.extensions:
            console.print(f"  extension  {ext['name']}{' (critical)' if ext['critical'] else ''}")
        for problem in desc.problems:
            console.print(f"  cannot decode {problem['field']}: {safe(problem['reason'])}")

    emit(doc, human)
