"""``twcactl cert``: issue, find, show and export certificates of the local CA (domain.md §3, §6)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import (
    app,
    ca_passphrase_option,
    ca_passphrase_provider,
    current_operator,
    json_option,
    parse_time_option,
)
from twcactl.cli.output import (
    Column,
    csv_cell,
    emit,
    files_document,
    note,
    print_table,
    progress_bar,
    safe,
    serial_labels,
    wide_option,
)
from twcactl.cli.subscriber_secret import keep_subscriber_password, subscriber_password, subscriber_password_option
from twcactl.rules.vocab import PROFILES

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.authority.lifecycle import CsrInput, IssueOutcome
    from twcactl.errors import TwcaError
    from twcactl.store import Store
    from twcactl.store.records import CertRecord

STATUS_CHOICES = ("valid", "expiring", "renewed", "suspended", "revoked", "expired")


@click.group()
def cert() -> None:
    """Issue, find, show and export certificates."""


def _expand_inputs(paths: tuple[Path, ...]) -> tuple[list[Path], set[Path]]:
    """CSR files, with each directory replaced by its visible regular files (sorted), and those found in a
    directory (a stray file there is skipped rather than failing the batch, issue 17)."""
    out: list[Path] = []
    in_dirs: set[Path] = set()
    for p in paths:
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
            out.extend(found)
            in_dirs.update(found)
        else:
            out.append(p)
    return out, in_dirs


@cert.command("issue", epilog="""\b
Examples:
  twcactl cert issue www.csr --account 70759028-01 --years 1 --contact ops@twca.com.tw
  twcactl cert issue requests/ --account 70759028-01 --days 90 --keep-going --json
  twcactl cert issue --pair holder-sign.csr holder-enc.csr --account 70759028-01   # after csr new --pair
  twcactl cert issue requests/ --account 70759028-01 --jobs 2    # check and sign on 2 CPUs
\b
A batch is checked and signed by --jobs worker processes (default: every
CPU this process may use) and recorded by this one, in request order, in one
transaction: the same certificates, books, log and files as --jobs 1.  A
small batch, or a CA key on a PKCS#11 token, is signed in one process.
""")
@click.argument("csrs", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True), metavar="CSR...|DIR")
@click.option("--account", "account_id", required=True, metavar="ID",
              help="The account that pays and whose domains apply.")
@click.option("--profile", default="ssl", show_default=True, type=click.Choice(list(PROFILES)))
@click.option("--years", type=int, help="Validity in calendar years, 1-100 (default 1; costs N certificate-years).")
@click.option("--days", type=int, help="Validity in days, 1-36500 (costs ceil(D/365) certificate-years).")
@click.option("--contact", metavar="EMAIL", help="The technical contact, kept with the record.")
@click.option("--note", help="A note kept with the record and the ledger.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Also write the certificate (PEM) here; one CSR only.")
@click.option("--keep-going", is_flag=True, help="Issue the good requests of a batch and report the refused ones.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--notify", is_flag=True, help="Mail the --contact the bundle (cert.zip) once issued (ca config smtp_*).")
@click.option("--strict", is_flag=True, help="Public trust: refuse a validity past the CA/Browser Forum maximum "
              "of today (SC-081) instead of capping it.")
@click.option("--pair", is_flag=True, help="Two CSRs, SIGN then ENC (csr new --pair): a user-sign and a user-enc "
              "certificate, issued together or not at all.")
@subscriber_password_option
@click.option("--jobs", type=click.IntRange(min=1), metavar="N",
              help="Worker processes that check and sign a batch (default: the CPUs).")
@ca_passphrase_option
@json_option
def issue(csrs: tuple[Path, ...], account_id: str, profile: str, years: int | None, days: int | None,
          contact: str | None, note: str | None, out: Path | None, keep_going: bool, force: bool,
          ca_passphrase: str | None, notify: bool = False, strict: bool = False, pair: bool = False,
          subscriber_source: str | None = None, jobs: int | None = None) -> None:
    """Issue certificates for CSRs under an account, after the same checks as `csr check`.

    Several CSRs (or a directory of them) are one batch: all or nothing,
    unless --keep-going.
    """
    from twcactl.authority.lifecycle import issue_certificates
    from twcactl.authority.parallel import default_jobs
    from twcactl.errors import UsageError
    from twcactl.fsutil import ensure_free
    from twcactl.rules.validity import Validity

    validity = Validity.from_options(years, days)
    files, in_dirs = _expand_inputs(csrs)
    inputs, failed_reads, skipped = _read_csrs(files, in_dirs, keep_going=keep_going)
    inputs = _pair_inputs(inputs, profile, keep_going) if pair else inputs
    if not inputs and not failed_reads:
        raise UsageError("no CSR files given (the directory is empty)." if not skipped else
                         f"no CSR files given: {len(skipped)} file(s) in the directory are not CSRs.")
    if out is not None and len(files) - len(skipped) != 1:
        raise UsageError("--out takes one CSR; for a batch use the files under the CA home or cert export.")
    ensure_free([out], force=force)
    subscriber = subscriber_password(subscriber_source)  # checked before anything is issued
    store = app().open_store()
    try:
        mail = _issue_mail_config(store, contact, profile, pair) if notify else None  # checked before issuing
        outcome = issue_certificates(
            store, inputs, account_id=account_id, profile=profile, validity=validity, operator=current_operator(),
            passphrase=ca_passphrase_provider(ca_passphrase), contact=contact, note=note, keep_going=keep_going,
            strict=strict, progress=progress_bar(len(inputs)), jobs=jobs or default_jobs())
        keep_subscriber_password(store, [r.serial for r in outcome.issued], subscriber)
        settings = store.settings()
        notices = _send_issue_notices(store, outcome, mail) if mail is not None else None
    finally:
        store.close()
    outcome.failed[:0] = failed_reads
    if out is not None and outcome.issued:
        _copy_out(outcome.issued[0], out, force=force)
    _render_issue(outcome, account_id, settings.renewal_window_days, skipped, notices)
    if outcome.failed:
        raise SystemExit(outcome.failed[0][1].exit_code)


def _pair_inputs(inputs: list[CsrInput], profile: str, keep_going: bool) -> list[CsrInput]:
    """``cert issue --pair SIGN.csr ENC.csr``: the first becomes a user-sign, the second a user-enc certificate,
    one batch (issue 28: a software signing and encryption pair, domain.md §7)."""
    from dataclasses import replace

    from twcactl.errors import UsageError

    if len(inputs) != 2 or keep_going or profile not in ("ssl", "user-sign"):
        raise UsageError("--pair takes exactly two CSRs, the signing one first (csr new --pair writes them), "
                         "without --keep-going or another --profile.")
    return [replace(inputs[0], profile="user-sign"), replace(inputs[1], profile="user-enc")]


def _read_csrs(files: list[Path], in_dirs: set[Path], *, keep_going: bool
               ) -> tuple[list[CsrInput], list[tuple[str, TwcaError]], list[dict[str, str]]]:
    """The CSR files as inputs; with ``keep_going`` an unreadable one is set aside instead of stopping the batch;
    a file found in a directory that is not a CSR at all is skipped, ``{"file", "why"}`` (issue 17)."""
    from twcactl.authority.lifecycle import CsrInput
    from twcactl.csr import not_a_request
    from twcactl.errors import TwcaError
    from twcactl.fsutil import read_input

    inputs: list[CsrInput] = []
    failed_reads: list[tuple[str, TwcaError]] = []
    skipped: list[dict[str, str]] = []
    for f in files:
        try:
            data = read_input(f, what="CSR")
        except TwcaError as exc:
            if not keep_going:
                raise
            failed_reads.append((str(f), exc))
            continue
        why = not_a_request(data) if f in in_dirs else None
        if why is not None:  # reported in the result (_render_issue), not as it is found
            skipped.append({"file": str(f), "why": why})
        else:
            inputs.append(CsrInput(name=str(f), data=data))
    return inputs, failed_reads, skipped


def _copy_out(record: CertRecord, out: Path, *, force: bool) -> None:
    """``--out``: the new certificate's PEM again (from its record: its file may be pending), to a file or to
    stdout ("-"; stderr under --json)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from twcactl.fsutil import write_file

    pem = x509.load_der_x509_certificate(record.der).public_bytes(serialization.Encoding.PEM)
    if str(out) == "-":
        click.echo(pem.decode("ascii"), nl=False, err=app().json)
    else:
        write_file(out, pem, force=force)


def _issue_mail_config(store: Store, contact: str | None, profile: str = "ssl", pair: bool = False) -> Any:
    """``--notify``: the relay settings, checked (and the password resolved) before anything is issued.  A
    personal certificate needs no --contact: its e-mail SAN is mailed (issue 28)."""
    from twcactl.authority.notify import contact_address
    from twcactl.cli.notify_cmd import mail_settings
    from twcactl.errors import UsageError
    from twcactl.rules.vocab import SSL_PROFILES

    if contact_address(contact) is None and profile in SSL_PROFILES and not pair:
        raise UsageError("--notify needs --contact EMAIL: the technical contact the bundle is mailed to.")
    return mail_settings(store)


def _send_issue_notices(store: Store, outcome: IssueOutcome, mail: Any) -> list[dict[str, object]]:
    """``--notify`` after the commit: one result per certificate; a mail failure is reported, never raised."""
    import sys

    from twcactl.authority.notify import send_issue_notices

    results = send_issue_notices(store, outcome.issued, operator=current_operator(), config=mail)
    for r in results:
        if r.outcome == "failed":
            sys.stderr.write(f"warning: {r.serial} is issued, but its notice to {r.recipient} failed: {r.error}\n")
    return [r.to_json() for r in results]


def _render_issue(outcome: IssueOutcome, account_id: str, window: int, skipped: list[dict[str, str]],
                  notices: list[dict[str, object]] | None = None) -> None:
    from twcactl.rules.times import utcnow

    now = utcnow()
    doc = {
        "certificates": [r.to_json(now, window) for r in outcome.issued],
        "failed": [{"file": name, "error": err.message, "code": err.exit_code} for name, err in outcome.failed],
        "skipped": skipped,
        "account": {"id": account_id, "balance": outcome.balance_after, "was": outcome.balance_before},
        "files": files_document(outcome.files),
        "notes": list(outcome.notes),  # issue 16: a validity capped by the CA/Browser Forum is never silent
    }
    _notes(outcome.notes)
    if notices is not None:  # cert issue --notify (issue 17)
        doc["notices"] = notices

    def human(console: Console) -> None:
        for n in notices or []:
            console.print(f"Notice {n['outcome']} to {safe(n['recipient'] or '-')} for {n['serial']}")
        for r in outcome.issued:
            console.print(f"Issued {r.serial}  CN={safe(r.cn or '')}  valid until {r.not_after:%Y-%m-%d}")
        if outcome.issued:
            console.print(f"  account {account_id} balance {outcome.balance_after} certificate-years "
                          f"(was {outcome.balance_before})")
            if len(outcome.issued) == 1:
                pending = " (pending: twcactl ca check writes it)" if outcome.files.pending else ""
                console.print(f"  files   {outcome.issued[0].path}{pending}")
                console.print(_next_hint(outcome.issued[0]))
        for name, err in outcome.failed:
            console.print(f"Refused {safe(name)}: {safe(err.message)}")
        for item in skipped:
            console.print(f"Skipped {safe(item['file'])}: {safe(item['why'])}")

    emit(doc, human)


def _cert_human(verb: str, record: CertRecord, extra: list[str] | None = None):  # type: ignore[no-untyped-def]
    def human(console: Console) -> None:
        console.print(f"{verb} {record.serial}  CN={safe(record.cn or '')}  valid until {record.not_after:%Y-%m-%d}")
        for line in extra or []:
            console.print("  " + line)

    return human


@cert.command("renew", epilog="""\b
Examples:
  twcactl cert renew 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --csr www-2027.csr
  twcactl cert renew 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --csr www.csr --days 30 --early --json
  twcactl cert renew 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --request renewal.p7b   # signed by the old key
""")
@click.argument("serial")
@click.option("--csr", "csr_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="The new CSR (same CN).")
@click.option("--request", "request_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="A CMS renewal request: the new CSR signed with the old certificate's key.")
@click.option("--years", type=int, help="Validity added to the old notAfter, in years (default: the old validity).")
@click.option("--days", type=int, help="Validity added to the old notAfter, in days.")
@click.option("--early", is_flag=True, help="Renew before the renewal window opens.")
@click.option("--note", help="A note for the new record.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Also write the new certificate (PEM) here.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--strict", is_flag=True, help="Public trust: refuse a renewal the CA/Browser Forum maximum would "
              "shorten instead of capping it.")
@subscriber_password_option
@ca_passphrase_option
@json_option
def renew(serial: str, csr_file: Path | None, request_file: Path | None, years: int | None, days: int | None,
          early: bool, note: str | None, out: Path | None, force: bool, ca_passphrase: str | None,
          strict: bool = False, subscriber_source: str | None = None) -> None:
    """Renew a valid certificate: same CN, validity continuing from the old notAfter.

    Allowed from the renewal window (ca config renewal_window_days, default
    30 days before notAfter) unless --early; costs like an issue. Once per
    certificate: a renewed one is refused (exit 5), naming its successor.
    """
    from twcactl.authority.lifecycle import renew_certificate
    from twcactl.errors import UsageError
    from twcactl.fsutil import ensure_free
    from twcactl.rules.times import utcnow
    from twcactl.rules.validity import Validity

    if (csr_file is None) == (request_file is None):
        raise UsageError("give exactly one of --csr or --request.")
    validity = Validity.from_options(years, days) if years is not None or days is not None else None
    ensure_free([out], force=force)
    item, signer_der = _renewal_input(csr_file, request_file)
    subscriber = subscriber_password(subscriber_source)
    store = app().open_store()
    try:
        outcome = renew_certificate(store, _lookup(store, serial).serial, item, validity=validity, early=early,
                                    operator=current_operator(), passphrase=ca_passphrase_provider(ca_passphrase),
                                    note=note, signer_der=signer_der, strict=strict)
        keep_subscriber_password(store, [outcome.certificate.serial], subscriber)
        window = store.settings().renewal_window_days
    finally:
        store.close()
    if out is not None:
        _copy_out(outcome.certificate, out, force=force)
    record = outcome.certificate
    doc = {"certificate": record.to_json(utcnow(), window), "renewed": outcome.renewed,
           "account": {"id": record.account, "balance": outcome.balance_after, "was": outcome.balance_before},
           "files": files_document(outcome.files), "charge": outcome.charge,
           "notes": _notes([outcome.note] if outcome.note else [])}
    lines = _cert_human("Renewed", record, [
        f"replaces {outcome.renewed}",
        f"account {record.account} balance {outcome.balance_after} certificate-years (was {outcome.balance_before})",
        f"file    {record.path}"])

    def human(console: Console) -> None:
        lines(console)
        console.print(_next_hint(record))  # issue 17: the same hint as cert issue

    emit(doc, human)


def _notes(lines: list[str]) -> list[str]:
    """Write each note on stderr and return them (issue 16: a capped validity is never silent)."""
    for line in lines:
        note(line)
    return list(lines)


def _renewal_input(csr_file: Path | None, request_file: Path | None) -> tuple[CsrInput, bytes | None]:
    """The new CSR of a renewal and, for a CMS request (signed by the old key), the signer's certificate DER."""
    from cryptography.hazmat.primitives import serialization

    from twcactl.authority.lifecycle import CsrInput
    from twcactl.fsutil import read_input

    if request_file is not None:
        from twcactl.pkix.cms_request import verify_renewal_request

        renewal = verify_renewal_request(read_input(request_file, what="renewal request"), name=str(request_file))
        return (CsrInput(name=str(request_file), data=renewal.csr.public_bytes(serialization.Encoding.DER)),
                renewal.signer.public_bytes(serialization.Encoding.DER))
    assert csr_file is not None
    return CsrInput(name=str(csr_file), data=read_input(csr_file, what="CSR")), None


@cert.command("revoke", epilog="""\b
Examples:
  twcactl cert revoke 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --reason keyCompromise
  twcactl cert revoke 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --reason superseded \\
      --invalidity-date 2026-11-01T00:00:00Z --json
""")
@click.argument("serial")
@click.option("--reason", required=True, metavar="REASON",
              help="RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
                   "cessationOfOperation, privilegeWithdrawn.")
@click.option("--invalidity-date", metavar="TIME", help="When the key is known or suspected to have been compromised "
              "(RFC 3339).")
@click.option("--all-with-key", is_flag=True, help="Also revoke, in the same transaction and for the same reason, "
              "every other valid or suspended certificate with the same key (listed as same_key).")
@ca_passphrase_option
@json_option
def revoke(serial: str, reason: str, invalidity_date: str | None, all_with_key: bool,
           ca_passphrase: str | None) -> None:
    """Revoke a certificate for good and regenerate the CRL.

    A suspended certificate may be revoked; a revoked one is final (only its
    reason may be changed to keyCompromise). Within the refund window
    (default 30 days after issue) the certificate-years are refunded, unless
    it was renewed: its time went to the successor (see refund in --json).
    keyCompromise blocks the key: it is never certified again. Other
    certificates with the same key are listed (same_key).
    """
    from twcactl.authority.lifecycle import revoke_certificate
    from twcactl.pkix.crl import parse_reason

    canonical = parse_reason(reason)
    when = parse_time_option(invalidity_date, "--invalidity-date")
    _state_change(serial, "Revoked", lambda store, s, op, pp: revoke_certificate(
        store, s, reason=canonical, operator=op, passphrase=pp, invalidity_date=when, all_with_key=all_with_key),
        ca_passphrase)


@cert.command("hold", epilog="""\b
Examples:
  twcactl cert suspend 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9   # certificateHold; undo: cert resume
  twcactl cert hold 4b1e9d0c                # the same command; a unique serial prefix (8+ hex digits) will do
""")
@click.argument("serial")
@ca_passphrase_option
@json_option
def hold(serial: str, ca_passphrase: str | None) -> None:
    """Suspend a certificate (certificateHold on the CRL) until it is resumed.

    `cert suspend` is the manuals' word; `cert hold` is the same command.
    """
    from twcactl.authority.lifecycle import hold_certificate

    _state_change(serial, "Suspended", lambda store, s, op, pp: hold_certificate(
        store, s, operator=op, passphrase=pp), ca_passphrase)


@cert.command("release", epilog="""\b
Examples:
  twcactl cert resume 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9   # resume a suspended certificate
  twcactl cert release 4b1e9d0c          # the same command; a unique serial prefix (8+ hex digits) will do
""")
@click.argument("serial")
@ca_passphrase_option
@json_option
def release(serial: str, ca_passphrase: str | None) -> None:
    """Resume a suspended certificate: valid again and absent from the next CRL.

    `cert resume` is the manuals' word; `cert release` is the same command.
    """
    from twcactl.authority.lifecycle import release_certificate

    _state_change(serial, "Resumed", lambda store, s, op, pp: release_certificate(
        store, s, operator=op, passphrase=pp), ca_passphrase)


# The manuals' words (issue 17): the same command objects under both names.
cert.add_command(hold, "suspend")
cert.add_command(release, "resume")


def _state_change(serial: str, verb: str, action: Any, ca_passphrase: str | None) -> None:
    from twcactl.rules.times import utcnow

    store = app().open_store()
    try:
        outcome = action(store, _lookup(store, serial).serial, current_operator(),
                         ca_passphrase_provider(ca_passphrase))
        record = outcome.certificate
        window = store.settings().renewal_window_days
        crl = store.crls.latest(record.ca_name)
        crl_path = str(store.crl_path(record.ca_name))
    finally:
        store.close()
    doc = {"certificate": record.to_json(utcnow(), window), "reason": record.reason,
           "crl": {"path": crl_path, "number": crl["number"] if crl else None},
           "files": files_document(outcome.files)}
    extra = [f"status  {doc['certificate']['status']}" + (f" ({record.reason})" if record.reason else "")]
    if getattr(outcome, "refund", None) is not None:  # issue 12: what the revocation refunded, and why
        doc["refund"] = outcome.refund.to_json()
        extra.append(outcome.refund.sentence())
    if verb == "Revoked":  # issue 12: the other certificates with this key (revoked too with --all-with-key)
        now = utcnow()
        doc["same_key"] = [other.to_json(now, window) for other in outcome.same_key]
        extra.extend(f"same key  {other.serial} {other.status(now, window)}" for other in outcome.same_key)
    if crl and crl_path in outcome.files.written:
        extra.append(f"CRL #{crl['number']} written to {crl_path}")
    emit(doc, _cert_human(verb, record, extra))


def _next_hint(record: CertRecord) -> str:
    """The "Next:" line of ``cert issue`` and ``cert renew``: export the manuals' bundle."""
    return f"Next: twcactl cert export {record.serial} --out-dir ./{_dir_hint(record)}"


def _dir_hint(record: CertRecord) -> str:
    label = (record.cn or record.serial).split(".")[0]
    return "".join(ch for ch in label if ch.isalnum() or ch in "-_") or record.serial


def _lookup(store: Store, serial_text: str) -> CertRecord:
    """The record a SERIAL argument names: the whole serial or a unique prefix of 8+ hex digits (issue 17)."""
    from twcactl.authority.lookup import resolve_serial

    return resolve_serial(store, serial_text)


@cert.command("show", epilog="""\b
Examples:
  twcactl cert show 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --json
  twcactl cert show 4b1e9d0c          # a unique prefix of 8+ hex digits
  twcactl cert show www/server.cer    # a certificate file (PEM or DER): its record when the home issued it
""")
@click.argument("serial", metavar="SERIAL|FILE")
@json_option
def show(serial: str) -> None:
    """Show one certificate: status, subject, SANs, validity, thumbprints, contact, note, renewals and history.

    SERIAL is the whole serial or a unique prefix of at least 8 hex digits; FILE a certificate (PEM or DER),
    shown with its record when this CA home issued it, else from the file alone.
    """
    if serial == "-" or Path(serial).is_file() or "/" in serial or Path(serial).suffix.lower() in _CERT_SUFFIXES:
        return _show_file(Path(serial))  # a missing file is exit 3 there, like any input file
    store = app().open_store()
    try:
        doc = _record_document(store, _lookup(store, serial))
    finally:
        store.close()
    emit(doc, lambda console: _render_show(console, doc))


#: File name endings that make ``cert show`` read a file rather than look a serial up.
_CERT_SUFFIXES = (".cer", ".crt", ".pem", ".der")


def _record_document(store: Store, record: CertRecord) -> dict[str, Any]:
    """``cert show``'s JSON of a record: the certificate, its history, chain, contact, note, renewals, thumbprints."""
    from twcactl.rules.times import utcnow

    return {
        "certificate": record.to_json(utcnow(), store.settings().renewal_window_days),
        "history": [e.to_json() for e in reversed(store.log.entries(serial=record.serial))],
        "chain": [{"name": ca.name, "subject": ca.certificate().subject.rfc4514_string()}
                  for ca in store.cas.chain(record.ca_name)],
        "contact": record.contact,
        "note": record.note,
        "renewed_from": record.renewed_from,
        "renewed_by": store.certificates.renewals_of(record.serial),
        # the thumbprints the manuals show (Windows' certificate dialog: SHA-1; browsers: SHA-256), lowercase hex
        "sha256": hashlib.sha256(record.der).hexdigest(),
        "sha1": hashlib.sha1(record.der).hexdigest(),  # a thumbprint, not a signature
    }


def _show_file(path: Path) -> None:
    """``cert show FILE`` (issue 28): the record of the certificate in the file when this home issued it (JSON as
    for a serial, plus ``file`` and ``in_home``), else what the file itself says (``in_home`` false)."""
    from cryptography.hazmat.primitives import serialization

    from twcactl.errors import NotFoundError
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_certificate

    cert = load_certificate(read_input(path, what="certificate"), name=str(path))
    der = cert.public_bytes(serialization.Encoding.DER)
    doc: dict[str, Any] | None = None
    try:
        store = app().open_store()
    except NotFoundError:  # no CA home here: the file alone
        store = None
    if store is not None:
        try:
            record = store.certificates.find_by_der(der)
            doc = _record_document(store, record) if record is not None else None
        finally:
            store.close()
    if doc is None:
        doc = {"certificate": _file_facts(cert), "sha256": hashlib.sha256(der).hexdigest(),
               "sha1": hashlib.sha1(der).hexdigest(), "in_home": False, "file": str(path)}
        emit(doc, lambda console: _render_file(console, doc or {}))
        return
    doc.update({"in_home": True, "file": str(path)})
    emit(doc, lambda console: _render_show(console, doc or {}))


def _file_facts(cert: Any) -> dict[str, Any]:
    """A certificate no record describes: the fields ``cert show`` prints, with a status judged by time only."""
    from cryptography import x509

    from twcactl.pkix.names import general_names, sans_json
    from twcactl.rules.serials import format_serial
    from twcactl.rules.times import rfc3339, utcnow

    try:
        sans = sans_json(general_names(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value))
    except x509.ExtensionNotFound:
        sans = []
    now = utcnow()
    status = ("not yet valid" if now < cert.not_valid_before_utc else
              "expired" if now > cert.not_valid_after_utc else "valid")
    return {"serial": format_serial(cert.serial_number), "status": status, "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(), "sans": sans, "not_before": rfc3339(cert.not_valid_before_utc),
            "not_after": rfc3339(cert.not_valid_after_utc)}


def _render_file(console: Console, doc: dict[str, Any]) -> None:
    c = doc["certificate"]
    console.print(f"Certificate {c['serial']}  {c['status']}  (from {safe(doc['file'])}; not issued by this CA home)")
    console.print(f"  subject     {safe(c['subject'])}")
    console.print(f"  SANs        {safe(', '.join(c['sans']))}")
    console.print(f"  validity    {c['not_before']} .. {c['not_after']}")
    console.print(f"  issuer      {safe(c['issuer'])}")
    console.print(f"  SHA-256     {_thumbprint(doc['sha256'])}")
    console.print(f"  SHA-1       {_thumbprint(doc['sha1'])}")


def _thumbprint(hex_digest: str) -> str:
    """``AB:CD:...``, the form ``openssl x509 -fingerprint`` prints."""
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def _render_show(console: Console, doc: dict[str, Any]) -> None:
    """Everything of the ``cert show`` JSON in words (issue 17: renewed from / by, contact, note, thumbprints)."""
    c = doc["certificate"]
    console.print(f"Certificate {c['serial']}  {c['status']}")
    console.print(f"  subject     {safe(c['subject'])}")
    console.print(f"  SANs        {safe(', '.join(c['sans']))}")
    console.print(f"  profile     {c['profile']}   account {c['account']}")
    console.print(f"  validity    {c['not_before']} .. {c['not_after']}")
    console.print(f"  issuer      {safe(c['issuer'])}")
    console.print(f"  file        {c['path']}")
    if c.get("paid_until"):  # issue 16: a subscription of short certificates
        console.print(f"  paid until  {c['paid_until']}   next free re-issue from {c.get('reissue_from') or '-'}")
    console.print(f"  SHA-256     {_thumbprint(doc['sha256'])}")
    console.print(f"  SHA-1       {_thumbprint(doc['sha1'])}")
    console.print(f"  contact     {safe(doc['contact'] or '-')}")
    console.print(f"  note        {safe(doc['note'] or '-')}")
    console.print(f"  renewed from {doc['renewed_from'] or '-'}")
    console.print(f"  renewed by  {', '.join(doc['renewed_by']) or '-'}")
    for h in doc["history"]:
        console.print(f"  {h['time']}  {h['action']:<14} by {safe(h['operator'])}")


@cert.command("list", epilog="""\b
Examples:
  twcactl cert list --account 70759028-01 --status expiring
  twcactl cert list --cn '*.twca.com.tw' --limit 20 --json
  twcactl cert list --sort expiry --limit 10          # the ten that end soonest
  twcactl cert list --csv report.csv
""")
@click.option("--cn", "cn_glob", metavar="GLOB", help="CN glob, case-insensitive (e.g. 'www*').")
@click.option("--domain", metavar="D", help="CN equal to D or under it.")
@click.option("--account", "account_id", metavar="ID")
@click.option("--status", type=click.Choice(STATUS_CHOICES))
@click.option("--expiring-within", type=click.IntRange(min=0), metavar="DAYS",
              help="Valid, not yet renewed, and ending within DAYS.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N")
@click.option("--sort", "sort", type=click.Choice(["newest", "expiry"]), default="newest", show_default=True,
              help="newest: the latest notAfter first; expiry: the soonest notAfter first.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write a CSV report of the rows here.")
@click.option("--force", is_flag=True, help="Replace an existing --csv file.")
@wide_option
@json_option
def list_(cn_glob: str | None, domain: str | None, account_id: str | None, status: str | None,
          expiring_within: int | None, limit: int | None, sort: str, csv_file: Path | None, force: bool,
          wide: bool = False) -> None:
    """List certificates, newest expiry first (--sort expiry: soonest first), filtered by CN, domain, account,
    status or expiry.

    On a terminal the serials are shortened to a unique prefix (accepted wherever a serial is) and only the
    columns that fit are shown, CN, status, expiry and account always whole; --wide shows everything.
    """
    from twcactl.rules.times import utcnow

    now = utcnow()
    store = app().open_store()
    try:
        window = store.settings().renewal_window_days
        records = store.certificates.find(now=now, status=status, expiring_within=expiring_within,
                                          account=account_id, cn_glob=cn_glob, domain=domain, limit=limit,
                                          soonest_first=sort == "expiry")
        short = serial_labels(store, [s for r in records for s in (r.serial, r.renewed_by) if s], wide=wide)
    finally:
        store.close()
    rows = [r.to_json(now, window) for r in records]
    if csv_file is not None:
        _write_csv(csv_file, records, now, window, force=force)

    def human(_console: Console) -> None:
        table = [[short[r.serial], safe(r.cn or ""), row["status"], row["not_after"][:10], r.account or "",
                  r.profile, short.get(r.renewed_by or "", ""), safe(r.note or "")] for r, row in zip(records, rows)]
        print_table(LIST_COLUMNS, table, wide=wide, footer=f"{len(rows)} certificate(s).")

    emit({"certificates": rows, "count": len(rows)}, human)


#: ``cert list``'s columns: the ones people read first are kept whole (issue 28).
LIST_COLUMNS = [Column("SERIAL", keep=True), Column("CN", keep=True), Column("STATUS", keep=True),
                Column("NOT AFTER", keep=True), Column("ACCOUNT", keep=True), Column("PROFILE"),
                Column("RENEWED BY"), Column("NOTE", wrap=True)]


CSV_COLUMNS = ("serial", "cn", "account", "profile", "status", "not_before", "not_after", "revoked_at", "reason",
               "contact", "note", "renewed_by")


_csv_cell = csv_cell  # the name tests/test_units.py knows


def _write_csv(path: Path, records: list[CertRecord], now: Any, window: int, *, force: bool) -> None:
    import csv
    import io

    from twcactl.fsutil import write_file
    from twcactl.rules.times import rfc3339

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([_csv_cell(v) for v in (
            r.serial, r.cn, r.account, r.profile, r.status(now, window), rfc3339(r.not_before),
            rfc3339(r.not_after), r.revoked_at, r.reason, r.contact, r.note, r.renewed_by)])
    data = buffer.getvalue().encode("utf-8")
    if str(path) == "-":
        click.echo(data.decode("utf-8"), nl=False, err=app().json)
    else:
        write_file(path, data, force=force)
        note(f"CSV report written to {path}")


@cert.command("export", epilog="""\b
Example:
  twcactl cert export 4b1e9d0c7a2f5e8136c0d94a7be25f1380c6d2a9 --out-dir ./www
  # then: openssl verify -CAfile www/root.cer -untrusted www/uca.cer www/server.cer
""")
@click.argument("serial")
@click.option("--out-dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for root.cer, uca.cer (or uca_1.cer, uca_2.cer), server.cer and cert.zip.")
@click.option("--force", is_flag=True, help="Replace existing files.")
@json_option
def export(serial: str, out_dir: Path, force: bool) -> None:
    """Write the certificate bundle of the manuals: root.cer, uca.cer, server.cer and cert.zip (all PEM).

    A personal certificate's leaf is sign.cer (user-sign) or enc.cer (user-enc) instead of server.cer.
    """
    from twcactl.authority.lifecycle import ca_chain_for
    from twcactl.pkix.chain import bundle_files, leaf_file_name, write_bundle
    from twcactl.pkix.pem import load_certificate

    store = app().open_store()
    try:
        record = _lookup(store, serial)
        chain = ca_chain_for(store, record)
    finally:
        store.close()
    leaf = load_certificate(record.der, name=f"certificate {record.serial}")
    written = write_bundle(out_dir, bundle_files(leaf, chain, leaf_name=leaf_file_name(record.profile)), force=force)
    doc = {"serial": record.serial, "files": [str(p) for p in written], "zip": str(written[-1])}

    def human(console: Console) -> None:
        console.print(f"Exported {record.serial}  CN={safe(record.cn or '')}")
        for p in written:
            console.print(f"  {p}")

    emit(doc, human)


@cert.command("set-contact", epilog="""\b
Examples:
  twcactl cert set-contact 4b1e9d0c ops@twca.com.tw
  twcactl cert set-contact 4b1e9d0c "Yi-Ru Chen <yiru@twca.com.tw>" --json
  twcactl cert set-contact 4b1e9d0c ""           # clear it (a personal certificate's e-mail SAN is used then)
""")
@click.argument("serial")
@click.argument("address", metavar="ADDR")
@json_option
def set_contact(serial: str, address: str) -> None:
    """Set the technical contact who gets a certificate's notices and renewal reminders (logged).

    Reminders go 60 days before notAfter for server certificates, 30 for personal and card ones
    (twcactl notify due). Without a contact, a personal certificate's e-mail SAN is used.
    """
    from twcactl.authority.contacts import set_contact as change
    from twcactl.rules.times import utcnow

    store = app().open_store()
    try:
        record, old = change(store, serial, address, operator=current_operator())
        window = store.settings().renewal_window_days
    finally:
        store.close()
    doc = {"certificate": record.to_json(utcnow(), window), "contact": record.contact, "was": old}
    line = f"contact {safe(record.contact or '-')} (was {safe(old or '-')})"
    emit(doc, _cert_human("Contact set for", record, [line]))


def _register_renew_due() -> None:
    """``cert renew-due`` lives in its own module (issue 17)."""
    from twcactl.cli.renew_due_cmd import renew_due

    cert.add_command(renew_due)


_register_renew_due()
