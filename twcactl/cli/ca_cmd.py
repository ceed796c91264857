"""``twcactl ca``: create and inspect the local CA home."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, note, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def ca() -> None:
    """Create and inspect the local CA (root and issuing intermediates)."""


@ca.command("init", epilog="""\b
Examples:
  twcactl --home ./myca ca init --org "TWCA Lab" --country TW --ca-passphrase env:CA_PASS
  twcactl --home /tmp/throwaway ca init --no-passphrase --intermediates 2
  twcactl --home ./hsmca ca init --key-uri 'pkcs11:token=CA' --pkcs11-module /usr/lib/softhsm/libsofthsm2.so \
      --ca-passphrase env:TOKEN_PIN      # the CA keys on a PKCS#11 token; the PIN where the passphrase goes
""")
@click.option("--name", default="twcactl Local", show_default=True, help="Base of the CA common names.")
@click.option("--org", help="Subject O of the CA certificates.")
@click.option("--country", help="Subject C of the CA certificates (two letters, e.g. TW).")
@click.option("--key-type", default="rsa2048", show_default=True,
              type=click.Choice(["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"]),
              help="Key type of the intermediate (issuing) CAs.")
@click.option("--root-key-type", default="rsa4096", show_default=True,
              type=click.Choice(["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"]), help="Key type of the root.")
@click.option("--intermediates", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: root -> uca; 2: root -> uca_1 -> uca_2.")
@click.option("--root-years", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--uca-years", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--crl-url", help="CRL distribution point put into issued certificates.")
@click.option("--ocsp-url", help="OCSP responder URL put into issued certificates (AIA).")
@click.option("--ca-passphrase", metavar="SOURCE", help="Passphrase for the CA keys (at least 12 characters): "
              "env:NAME, file:PATH, fd:N, stdin, pass:TEXT (default $TWCACTL_CA_PASSPHRASE_SOURCE, else prompt twice).")
@click.option("--no-passphrase", is_flag=True, help="Store the CA keys unencrypted (throw-away CAs only).")
@click.option("--group-readable", is_flag=True,
              help="Make the home's directories 0750 and the database 0640 (default 0700/0600): the owner's group "
                   "may read, never write; ca/private stays 0700.")
@click.option("--store", "store_url", envvar="TWCACTL_STORE", metavar="URL",
              help="Keep the records in this (empty) PostgreSQL database, postgresql://USER@HOST/DB, shared by "
                   "several nodes (default $TWCACTL_STORE, else the home's own SQLite file).")
@click.option("--store-password", "store_password", metavar="SOURCE",
              help="Password of the --store database: env:NAME, file:PATH, fd:N, stdin "
                   "(default $TWCACTL_STORE_PASSWORD_SOURCE, else libpq's PGPASSFILE).")
@click.option("--key-uri", metavar="URI",
              help="Make the CA keys on a PKCS#11 token, never as files: an RFC 7512 URI such as "
                   "'pkcs11:token=CA' (object=PREFIX sets the key labels); --ca-passphrase gives the token's user PIN.")
@click.option("--pkcs11-module", envvar="TWCACTL_PKCS11_MODULE", metavar="PATH",
              help="The PKCS#11 module for --key-uri (default $TWCACTL_PKCS11_MODULE, the URI's module-path, "
                   "else the usual OpenSC/SoftHSM2/opencryptoki paths).")
@click.option("--public-trust", is_flag=True,
              help="A browser-trusted TLS CA (CA/Browser Forum Baseline Requirements; docs/public-trust.md): needs "
                   "--crl-url http://.../NAME.crl; the CA certificates and CRLs are published beside it.")
@json_option
def init(name: str, org: str | None, country: str | None, key_type: str, root_key_type: str, intermediates: int,
         root_years: int, uca_years: int, crl_url: str | None, ocsp_url: str | None, ca_passphrase: str | None,
         no_passphrase: bool, group_readable: bool, store_url: str | None, store_password: str | None,
         key_uri: str | None, pkcs11_module: str | None, public_trust: bool = False) -> None:
    """Create a CA home: a root CA and one or two issuing intermediates.

    The operator running it ($TWCACTL_OPERATOR, else the login name) is
    recorded as the CA's first manager.
    """
    from twcactl.authority.home import CaInitOptions, ensure_new_home, init_ca
    from twcactl.errors import UsageError

    ctx = app()
    home = ctx.resolved_home()
    if store_password is not None:
        ctx.store_password_source = store_password
    if no_passphrase and ca_passphrase:
        raise UsageError("give --ca-passphrase or --no-passphrase, not both.")
    ensure_new_home(home)  # before the prompt: nobody types a passphrase only to be refused
    passphrase = None if no_passphrase else _init_secret(ca_passphrase, key_uri)
    opts = CaInitOptions(name=name, org=org, country=country, key_type=key_type, root_key_type=root_key_type,
                         intermediates=intermediates, root_years=root_years, uca_years=uca_years,
                         crl_url=crl_url, ocsp_url=ocsp_url, group_readable=group_readable, key_uri=key_uri,
                         pkcs11_module=pkcs11_module if key_uri else None, public_trust=public_trust)
    where = f"on the token {key_uri} (never as files)" if key_uri else f"in {home / 'ca' / 'private'}"
    note(f"Generating {intermediates + 1} CA keys {where} ...")
    store = init_ca(home, opts, passphrase=passphrase, operator=current_operator(), lock_timeout=ctx.lock_timeout,
                    store_url=store_url or "", store_password=ctx.store_password() if store_url else None)
    try:
        _show(store, created=True)
    finally:
        store.close()


def _init_secret(source: str | None, key_uri: str | None) -> str:
    """The new CA keys' passphrase (asked twice), or with ``--key-uri`` the token's user PIN (asked once;
    the URI's ``pin-source``, a file, when no ``--ca-passphrase`` is given: RFC 7512 §2.3).

    Raises:
        UsageError: a bad URI, or a pin-source that is not a file (exit 2).  AuthError: no secret (exit 4).
    """
    from twcactl.backends.p11_uri import parse_pkcs11_uri
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import UsageError

    env = "TWCACTL_CA_PASSPHRASE_SOURCE"
    if not key_uri:
        return get_secret(source, option="--ca-passphrase", what="new CA key passphrase", new=True, env_default=env)
    pin_source = parse_pkcs11_uri(key_uri).pin_source
    if source is None and pin_source:
        path = pin_source.removeprefix("file://") if pin_source.startswith("file://") else (
            pin_source.removeprefix("file:"))
        if not path.startswith("/"):
            raise UsageError("the key URI's pin-source must name a file (file:/PATH); give the PIN with "
                             "--ca-passphrase SOURCE instead.")
        source = f"file:{path}"
    return get_secret(source, option="--ca-passphrase", what="token user PIN", env_default=env)


@ca.command("show", epilog="""\b
Example:
  twcactl --home ./myca ca show --json
""")
@json_option
def show() -> None:
    """Show the CA home: its CA certificates, settings and operators."""
    store = app().open_store()
    try:
        _show(store, created=False)
    finally:
        store.close()


@ca.command("config", epilog="""\b
Examples:
  twcactl ca config                              # every setting
  twcactl ca config renewal_window_days          # one setting
  twcactl ca config renewal_window_days 60       # change it (managers only; logged)
  twcactl ca config crl_url http://crl.example.tw/uca.crl
  twcactl ca config ocsp_url ""                  # clear a URL
""")
@click.argument("key", required=False)
@click.argument("value", required=False)
@json_option
def config(key: str | None, value: str | None) -> None:
    """Read or change CA settings (config.toml): renewal_window_days, refund_window_days,
    crl_days (whole days, at most 36500), crl_url, ocsp_url, ca_issuers_url (http/https), pkcs11_module,
    public_trust (true/false: the CA/Browser Forum rules, docs/public-trust.md), cps_url."""
    from twcactl.authority.settings import change_setting, current_settings

    store = app().open_store()
    try:
        if key is not None and value is not None:
            change_setting(store, key, value, current_operator())
        doc = current_settings(store, key)
    finally:
        store.close()

    def human(console: Console) -> None:
        for k, v in doc.items():
            console.print(f"{k} = {safe(repr(v) if isinstance(v, str) else v)}")

    emit({"settings": doc}, human)


@ca.command("check", epilog="""\b
Examples:
  twcactl ca check
  twcactl ca check --no-repair --json
""")
@click.option("--no-repair", is_flag=True, help="Only report; do not rebuild or remove derived files.")
@json_option
def check(no_repair: bool) -> None:
    """Verify the whole CA home; rebuild missing derived files; exit 1 on any finding.

    Checks every record against its certificate file and hash, files without
    records, each account's ledger against its balance, the CRL against the
    revocation records and its signature, the activity log's hash chain and
    head, and the key files' permissions.
    """
    from twcactl.authority.maintenance import check_home

    # not strict: a home another user could subvert is reported (a finding), not refused
    store = app().open_store(strict=False)
    try:
        report = check_home(store, repair=not no_repair, operator=current_operator())
    finally:
        store.close()
    doc = {"ok": report.ok, "findings": report.findings, "repairs": report.repairs, "checked": report.checked}

    def human(console: Console) -> None:
        for line in report.repairs:
            console.print(f"  repaired  {safe(line)}")
        for line in report.findings:
            console.print(f"  FAIL      {safe(line)}")
        counts = ", ".join(f"{n} {what}" for what, n in report.checked.items())
        console.print(("CA home is sound" if report.ok else f"{len(report.findings)} finding(s)") + f" ({counts}).")

    emit(doc, human)
    if not report.ok:
        raise SystemExit(1)


@ca.command("backup", epilog="""\b
Example:
  twcactl ca backup /backups/twca-$(date +%F).tar.gz
  # restore: twcactl --home NEW_HOME ca restore /backups/twca-2026-11-21.tar.gz
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing FILE.")
@json_option
def backup(file: Path, force: bool) -> None:
    """Write a consistent backup (database via SQLite's online backup, plus the CA files) as one tar.gz.

    CA keys on a PKCS#11 token (ca init --key-uri) are not in it: back the token up with the HSM's own means.
    """
    from twcactl.authority.maintenance import backup_home

    store = app().open_store()
    try:
        counts = backup_home(store, file, force=force)
    finally:
        store.close()
    doc = {"file": str(file), **counts}

    def human(console: Console) -> None:
        console.print(f"Backup {file}: {counts['files']} files, "
                      f"{counts['certificates']} certificate records (mode 600).")

    emit(doc, human)


@ca.command("restore", epilog="""\b
Examples:
  twcactl --home /srv/twca-restored ca restore /backups/twca-2026-11-21.tar.gz
  TWCACTL_STORE='postgresql://twca@db.example.tw/twca' twcactl --home /srv/twca/node1 ca restore backup.tar.gz
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--store", "store_url", envvar="TWCACTL_STORE", metavar="URL",
              help="Restore the records into this empty PostgreSQL database (default $TWCACTL_STORE): the home "
                   "becomes a node of it, as after store migrate --to URL.")
@json_option
def restore(file: Path, store_url: str | None = None) -> None:
    """Unpack a backup into a new (empty) CA home given with --home, then check it.

    With --store URL (or $TWCACTL_STORE) the records then move into that empty PostgreSQL database,
    verified as by `store migrate` (the restoring operator must be one of the backup's managers).
    """
    from twcactl.authority.maintenance import check_home, restore_home
    from twcactl.store import Store

    ctx = app()
    home = ctx.resolved_home()
    _check_store_url(store_url)
    count = restore_home(file, home)
    store = Store.open(home, lock_timeout=ctx.lock_timeout)
    try:
        report = check_home(store)
        moved = _restore_into(store, store_url) if store_url and report.ok else None
    finally:
        store.close()
    doc = {"home": str(home), "files": count, "ok": report.ok, "findings": report.findings, "repairs": report.repairs,
           "store": moved.to_json() if moved is not None else None}

    def human(console: Console) -> None:
        console.print(f"Restored {count} files into {home}; " + ("ca check is clean." if report.ok else
                                                                 f"{len(report.findings)} finding(s):"))
        for line in report.findings:
            console.print(f"  FAIL  {safe(line)}")
        if moved is not None:
            console.print(f"Records moved into {safe(moved.target)} (verified); the home is a node of it.")

    emit(doc, human)
    if not report.ok:
        raise SystemExit(1)


def _check_store_url(url: str | None) -> None:
    """Refuse a bad --store / $TWCACTL_STORE before anything is restored (exit 2)."""
    from twcactl.errors import UsageError
    from twcactl.rules.settings import store_url_problem

    problem = store_url_problem(url) if url else None
    if problem is not None:
        raise UsageError(f"--store (or $TWCACTL_STORE) {problem}.")


def _restore_into(store: Any, url: str) -> Any:
    """``ca restore --store URL``: the restored records moved into the database (issue 28)."""
    from twcactl.authority.store_migration import migrate_store

    return migrate_store(store, url, operator=current_operator(), password=app().store_password())


def _show(store: Any, *, created: bool) -> None:
    from twcactl.pkix.names import rfc4514
    from twcactl.rules.serials import format_serial
    from twcactl.rules.times import rfc3339

    cas = []
    for rec in store.cas.all():
        cert = rec.certificate()
        cas.append({
            "name": rec.name,
            "issuing": rec.issuing,
            "subject": rfc4514(cert.subject),
            "serial": format_serial(cert.serial_number),
            "not_before": rfc3339(cert.not_valid_before_utc),
            "not_after": rfc3339(cert.not_valid_after_utc),
            "path": str(rec.cert_file),
            "key_uri": rec.key_uri,
        })
    doc = {
        "home": str(store.home),
        "schema_version": store.schema_version(),
        "key_encrypted": store.ca_key_encrypted,
        "cas": cas,
        "settings": store.settings().to_mapping(),
        "operators": [{"name": o["name"], "role": o["role"]} for o in store.operators.all()],
    }

    def human(console: Console) -> None:
        console.print(("Created CA home " if created else "CA home ") + safe(doc["home"]))
        for c in cas:
            role = "issuing" if c["issuing"] else ("root" if c["name"] == "root" else "intermediate")
            console.print(f"  {c['name']:<6} {role:<12} {safe(c['subject'])}")
            console.print(f"         serial {c['serial']}  valid until {c['not_after'][:10]}  {safe(c['path'])}")
        on_token = any(c["key_uri"] for c in cas)
        console.print("  keys   " + ("on a PKCS#11 token (--ca-passphrase gives its PIN)" if on_token else
                                     "encrypted (needs --ca-passphrase)" if doc["key_encrypted"] else "NOT encrypted"))
        console.print("  operators " + ", ".join(f"{safe(o['name'])} ({o['role']})" for o in doc["operators"]))
        if created:
            console.print("Next: twcactl account add ID --org NAME --domain DOMAIN --quota N")

    emit(doc, human)
