"""``twcactl trust``: put the CA's root into the system, NSS and Java trust stores, as ``mkcert -install`` does
(issue 28)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def trust() -> None:
    """Install the CA's root certificate into trust stores (system, NSS, Java), remove it, or report it."""


def _store_options(func: Any) -> Any:
    for option in reversed((
        click.option("--system", is_flag=True, help="The Debian system store (update-ca-certificates): OpenSSL, "
                     "curl, Python, most command-line tools. The default when no store is named."),
        click.option("--nss", "nss", type=click.Path(path_type=Path, file_okay=False), multiple=True, metavar="DIR",
                     help="An NSS database directory (certutil; Firefox profiles, ~/.pki/nssdb for Chromium). "
                     "Repeatable."),
        click.option("--nss-all", is_flag=True, help="Every NSS database in your home, as mkcert finds them: "
                     "~/.pki/nssdb and each Firefox profile."),
        click.option("--java", "java", type=click.Path(path_type=Path, dir_okay=False), multiple=True,
                     metavar="KEYSTORE", help="A Java keystore (keytool), e.g. $JAVA_HOME/lib/security/cacerts. "
                     "Repeatable."),
        click.option("--java-storepass", metavar="SOURCE", help="The keystore's password: env:NAME, file:PATH, "
                     "fd:N, stdin (default: changeit, a JDK's cacerts)."),
        click.option("--cert", "cert_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="This CA certificate (PEM or DER) instead of the CA home's root."),
        click.option("--root", "root", type=click.Path(path_type=Path, file_okay=False), default=Path("/"),
                     show_default=True, metavar="DIR", help="The root directory of the system store's paths "
                     "(a container image's tree, a chroot): DIR/usr/local/share/ca-certificates, DIR/etc/ssl/certs."),
        click.option("--dry-run", is_flag=True, help="Say what would be written and run; change nothing."),
        json_option,
    )):
        func = option(func)
    return func


_EPILOG = """\b
Examples:
  sudo twcactl trust install                         # the CA home's root into the system store
  twcactl trust install --nss ~/.pki/nssdb --dry-run  # what it would run
  twcactl trust install --nss-all                     # ~/.pki/nssdb and every Firefox profile
  twcactl trust install --java "$JAVA_HOME/lib/security/cacerts" --cert root.cer
  twcactl trust status --system --nss ~/.pki/nssdb --json
  sudo twcactl trust uninstall --system
"""


@trust.command("install", epilog=_EPILOG)
@_store_options
def install(**options: Any) -> None:
    """Install the root (or --cert) as a trusted CA into each named store (default: --system)."""
    _trust("install", **options)


@trust.command("uninstall", epilog=_EPILOG)
@_store_options
def uninstall(**options: Any) -> None:
    """Remove the root (or --cert) from each named store (default: --system)."""
    _trust("uninstall", **options)


@trust.command("status", epilog=_EPILOG)
@_store_options
def status(**options: Any) -> None:
    """Report whether each named store trusts the root (or --cert); exit 1 when one does not."""
    _trust("status", **options)


def _trust(action: str, *, system: bool, nss: tuple[Path, ...], java: tuple[Path, ...], java_storepass: str | None,
           cert_file: Path | None, root: Path, dry_run: bool, nss_all: bool = False) -> None:
    from twcactl.backends.truststores import Target, nss_databases, run_trust
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import UsageError

    if nss_all:
        found = nss_databases(Path.home())
        if not found:
            raise UsageError(f"no NSS database under {Path.home()} (~/.pki/nssdb, Firefox profiles).",
                             hint="create one: mkdir -p ~/.pki/nssdb && certutil -N -d sql:$HOME/.pki/nssdb "
                                  "--empty-password")
        nss = (*nss, *found)

    targets = ([Target("system", root)] if system or not (nss or java) else []) + \
        [Target("nss", d) for d in nss] + [Target("java", k) for k in java]
    cert = _certificate(cert_file)
    storepass = get_secret(java_storepass, option="--java-storepass", what="keystore password") \
        if java_storepass else None
    reports = run_trust(action, cert, targets, dry_run=dry_run, java_storepass=storepass)
    subject = cert.subject.rfc4514_string()
    doc = {"action": action, "dry_run": dry_run, "certificate": {"subject": subject,
           "sha256": cert.fingerprint(_sha256()).hex()}, "stores": [r.to_json() for r in reports]}

    def human(console: Console) -> None:
        console.print(f"{'Would ' + action if dry_run else action.capitalize()}: {safe(subject)}")
        for r in reports:
            state = "trusted" if r.trusted else "not trusted"
            console.print(f"  {r.store:<6} {safe(r.location)}  {r.name}  {state}"
                          + ("  (changed)" if r.changed else ""))
            for step in r.steps:
                console.print(f"         {safe(step)}")

    emit(doc, human)
    if action == "status" and not all(r.trusted for r in reports):
        raise SystemExit(1)


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _certificate(cert_file: Path | None) -> Any:
    """``--cert FILE``, else the CA home's root certificate."""
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_certificate

    if cert_file is not None:
        return load_certificate(read_input(cert_file, what="certificate"), name=str(cert_file))
    store = app().open_store()
    try:
        root = min(store.cas.all(), key=lambda ca: ca.position)
        return root.certificate()
    finally:
        store.close()
