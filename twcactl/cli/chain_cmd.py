"""``twcactl chain``: build and verify certificate chains and cert.zip bundles (domain.md §6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, json_option, parse_time_option
from twcactl.cli.output import emit, note, safe
from twcactl.rules.serials import format_serial

if TYPE_CHECKING:
    from cryptography import x509
    from rich.console import Console

    from twcactl.pkix.chain import ChainPath


@click.group()
@click.pass_context
def chain(ctx: click.Context) -> None:
    """Build and verify certificate chains and cert.zip bundles."""
    from twcactl.pkix.extensions import quiet_library_warnings

    # the libraries' Python warnings (a zero serial) never reach the user; findings report them
    ctx.with_resource(quiet_library_warnings())


def _home_cas() -> list[x509.Certificate]:
    """The CA home's certificates (root first), or none when there is no home."""
    from twcactl.store import Store

    home = app().resolved_home()
    if not Store.exists(home):
        return []
    store = app().open_store()  # the store password too, when the records are on PostgreSQL (issue 14)
    try:
        return [ca.certificate() for ca in store.cas.all()]
    finally:
        store.close()


def _load_leaf(path: Path) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The first certificate of LEAF, and any more it holds (a fullchain.pem)."""
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_certificates

    certs = load_certificates(read_input(path, what="certificate"), name=str(path))
    return certs[0], certs[1:]


def _cert_json(cert: x509.Certificate, **extra: Any) -> dict[str, Any]:
    from twcactl.rules.times import rfc3339

    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format_serial(cert.serial_number), "not_after": rfc3339(cert.not_valid_after_utc), **extra}


@chain.command("build", epilog="""\b
Examples:
  twcactl chain build server.cer --certs bag/ --certs cert.zip --out-dir ./www
  twcactl chain build server.cer --certs intermediates.pem --fullchain fullchain.pem   # nginx, Apache
  twcactl chain build server.cer --certs certs.p7b.pem --zip cert.zip --json
""")
@click.argument("leaf", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--certs", "cert_sources", multiple=True, type=click.Path(path_type=Path),
              help="Candidate CA certificates: a PEM bundle, a DER file, a directory or a zip (repeatable). "
                   "The CA home's certificates are added when there is one.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write server.cer, uca.cer (or uca_1.cer .. uca_N.cer from the root down) and root.cer here.")
@click.option("--zip", "zip_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the same files as a zip archive (cert.zip).")
@click.option("--fullchain", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write the leaf and its intermediates, no root (what nginx and Apache want); - for stdout.")
@click.option("--force", is_flag=True, help="Replace existing files.")
@json_option
def build(leaf: Path, cert_sources: tuple[Path, ...], out_dir: Path | None, zip_file: Path | None,
          fullchain: Path | None, force: bool) -> None:
    """Order certificates from the leaf up to a self-signed root and write the bundle files.

    Issuers are found by name, key identifier and signature; unrelated and
    duplicate certificates are ignored.  An incomplete path names the
    missing issuer (exit 1).  Output names are always the manual's own,
    never names taken from the input.
    """
    from twcactl.errors import PolicyError, UsageError
    from twcactl.fsutil import write_files
    from twcactl.pkix.chain import (
        build_path,
        bundle_files,
        fullchain_pem,
        gather_certificates,
        require_complete,
    )

    if fullchain is not None and str(fullchain) == "-" and app().json:
        raise UsageError("--fullchain - writes to stdout, which --json needs for its document.")
    leaf_cert, extra = _load_leaf(leaf)
    gathered = gather_certificates(list(cert_sources))
    home = _home_cas()
    candidates = [*extra, *(c for _s, c in gathered.certificates), *home]
    path = build_path(leaf_cert, candidates)
    cas = require_complete(path)
    if not cas:
        raise PolicyError(f"{leaf} is self-signed: there is no chain to build.")
    files = bundle_files(leaf_cert, list(reversed(cas)))
    full = fullchain_pem(leaf_cert, cas)
    to_stdout = fullchain is not None and str(fullchain) == "-"
    written = write_files(_bundle_targets(files, full, out_dir=out_dir, zip_file=zip_file,
                                          fullchain=None if to_stdout else fullchain), force=force)
    if to_stdout:
        click.echo(full.decode("ascii"), nl=False)
        return
    for skipped in gathered.skipped:
        note(f"skipped {safe(skipped)}: no certificate in it")
    names = [name for name, _ in files]  # root first
    ordered = list(reversed(list(zip(names, [*reversed(cas), leaf_cert]))))  # leaf first
    _render_build(ordered, path, gathered.skipped, written, home_count=len(home))


def _findings(certs: list[x509.Certificate]) -> list[dict[str, Any]]:
    """What is wrong but not refused, as JSON findings (a zero or negative serial); each also a note."""
    from twcactl.pkix.extensions import serial_findings

    found = serial_findings(certs)
    for f in found:
        note(f"warning: {safe(f.message)}")
    return [f.to_json() for f in found]


def _bundle_targets(files: list[tuple[str, bytes]], full: bytes, *, out_dir: Path | None, zip_file: Path | None,
                    fullchain: Path | None) -> list[tuple[Path, bytes, int]]:
    """The files ``chain build`` writes: the manual's names in ``out_dir``, a cert.zip, a fullchain PEM."""
    from twcactl.pkix.chain import zip_bytes

    targets: list[tuple[Path, bytes, int]] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        targets += [(out_dir / name, data, 0o644) for name, data in files]
    if zip_file is not None:
        targets.append((zip_file, zip_bytes(files), 0o644))
    if fullchain is not None:
        targets.append((fullchain, full, 0o644))
    return targets


def _render_build(ordered: list[tuple[str, x509.Certificate]], path: ChainPath, skipped: list[str],
                  written: list[Path], *, home_count: int) -> None:
    doc = {
        "complete": True,
        "chain": [_cert_json(cert, file=name) for name, cert in ordered],
        "ignored": len(path.unused),
        "duplicates": path.duplicates,
        "skipped": skipped,
        "files": [str(p) for p in written],
        "ca_home_certificates": home_count,
        "findings": _findings([cert for _name, cert in ordered]),
    }

    def human(console: Console) -> None:
        for name, cert in ordered:
            console.print(f"{name:<11} {safe(cert.subject.rfc4514_string())}")
        console.print(f"{len(ordered)} certificates; {len(path.unused)} unrelated and {path.duplicates} "
                      f"duplicate(s) ignored.")
        for p in written:
            console.print(f"  wrote {safe(p)}")

    emit(doc, human)


def _trust_anchors(root_files: tuple[Path, ...]) -> tuple[list[x509.Certificate], list[x509.Certificate], str]:
    """``(roots, intermediates, source)``: the --root files, else the CA home's root and intermediates.

    Raises:
        UsageError: no --root and no CA home (exit 2).
    """
    from twcactl.errors import UsageError
    from twcactl.pkix.chain import gather_certificates, is_self_signed

    if root_files:
        return [c for _s, c in gather_certificates(list(root_files)).certificates], [], "files"
    home = _home_cas()
    if not home:
        raise UsageError("no trusted root: give --root FILE, or use a CA home (--home).")
    return [c for c in home if is_self_signed(c)], [c for c in home if not is_self_signed(c)], "ca-home"


def _load_crls(paths: tuple[Path, ...]) -> list[x509.CertificateRevocationList]:
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_crls

    return [crl for path in paths for crl in load_crls(read_input(path, what="CRL"), name=str(path))]


@chain.command("verify", epilog="""\b
Examples:
  twcactl --home ./myca chain verify server.cer --hostname www.twca.com.tw
  twcactl chain verify server.cer --root root.cer --untrusted uca.cer --crl uca.crl
  twcactl chain verify user.cer --root root.cer --untrusted cert.zip --purpose email --at 2027-01-01T00:00:00Z
""")
@click.argument("leaf", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--root", "root_files", multiple=True, type=click.Path(path_type=Path),
              help="Trusted roots (repeatable; default: the CA home's root).")
@click.option("--untrusted", "untrusted_files", multiple=True, type=click.Path(path_type=Path),
              help="Intermediates to build the path with: file, directory or zip (repeatable).")
@click.option("--purpose", type=click.Choice(["server", "client", "email", "any"]),
              help="What the leaf must be good for (default: from its extended key usage).")
@click.option("--hostname", metavar="NAME", help="A DNS name or IP address the leaf must match (server purpose).")
@click.option("--at", "at_text", metavar="TIME", help="Validate at this time (RFC 3339, e.g. 2027-01-01T00:00:00Z).")
@click.option("--crl", "crl_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CRLs (PEM or DER) to check revocation against (repeatable).")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="A private key (PEM or DER) that must be the leaf's: the pair a server will be installed with.")
@click.option("--key-passphrase", metavar="SOURCE", help="The passphrase of an encrypted --key.")
@json_option
def verify(leaf: Path, root_files: tuple[Path, ...], untrusted_files: tuple[Path, ...], purpose: str | None,
           hostname: str | None, at_text: str | None, crl_files: tuple[Path, ...], key_file: Path | None = None,
           key_passphrase: str | None = None) -> None:
    """Validate a certificate's path to a trusted root, its purpose, host name and revocation, and with --key
    that the key is the leaf's (domain.md §6: a complete path and a matching key).

    A failure names the certificate and the reason (exit 1).
    """
    from twcactl.pkix.chain import gather_certificates
    from twcactl.pkix.verify import verify_chain
    from twcactl.rules.times import rfc3339

    at = parse_time_option(at_text, "--at")
    leaf_cert, extra = _load_leaf(leaf)
    key_doc = _check_key(key_file, key_passphrase, leaf_cert, leaf)
    untrusted = [*extra, *(c for _s, c in gather_certificates(list(untrusted_files)).certificates)]
    roots, more_untrusted, roots_source = _trust_anchors(root_files)
    result = verify_chain(leaf_cert, roots=roots, untrusted=[*untrusted, *more_untrusted], purpose=purpose,
                          hostname=hostname, at=at, crls=_load_crls(crl_files))
    doc = {
        "ok": True,
        "purpose": result.purpose,
        "hostname": result.hostname,
        "at": rfc3339(result.at),
        "roots": roots_source,
        "chain": [_cert_json(c) for c in result.chain],
        "revocation": [r.to_json() for r in result.revocation],
        "findings": [f.to_json() for f in result.findings],
        "key": key_doc,
    }
    for finding in result.findings:
        note(f"warning: {safe(finding.message)}")

    def human(console: Console) -> None:
        console.print(f"OK  {safe(leaf_cert.subject.rfc4514_string())}  for {result.purpose}"
                      + (f" ({safe(hostname)})" if hostname else "") + f"  at {doc['at']}")
        for depth, cert in enumerate(result.chain):
            console.print(f"  {depth}  {safe(cert.subject.rfc4514_string())}")
        if key_doc is not None:
            console.print(f"  key {safe(key_doc['file'])} matches the leaf")
        if result.revocation:
            for r in result.revocation:
                console.print(f"  revocation  {safe(r.subject)}: {r.status}")
        else:
            console.print("  revocation not checked (give --crl FILE)")

    emit(doc, human)


def _check_key(key_file: Path | None, key_passphrase: str | None, leaf: Any, leaf_file: Path) -> dict[str, Any] | None:
    """``--key``: the key must be the leaf's (exit 1 when it is not; issue 28); ``{"file", "matches"}`` or None."""
    if key_file is None:
        return None
    from twcactl.cli.pfx_cmd import matching_key
    from twcactl.fsutil import read_input

    data = read_input(key_file, what="private key")
    matching_key(data, key_passphrase, leaf, key_file=key_file, cert_file=leaf_file)
    return {"file": str(key_file), "matches": True}
