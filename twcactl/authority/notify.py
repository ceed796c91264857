"""Notices to technical contacts by e-mail (issue 17; domain.md §3-§4).

The manuals tell the technical contact when a certificate is issued, with the bundle to install
(``cert.zip``: root, intermediates, server certificate; domain.md §3 and §6), and remind the owner
before the certificate ends: two months ahead for SSL, one month for the others (domain.md §4).

* :func:`send_issue_notices` mails the bundle after ``cert issue --notify`` committed; a mail
  failure never fails the committed issue (it is reported: post-commit honesty, issue 13).
* :func:`notify_due` mails each contact whose certificate entered its reminder window, once per
  certificate and window: each notice is recorded in the store (schema version 5, ``notices``) and
  in the activity log right after the relay accepted it, so a nightly run does not repeat.

Mail goes through the standard library's :mod:`smtplib` and :mod:`email` to the relay named by the
``smtp_*`` settings (:class:`twcactl.rules.settings.Settings`).  A password is sent only over
STARTTLS, or in clear only to a loopback address (the relay on this machine).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from cryptography import x509

from twcactl.authority.lifecycle import ca_chain_for
from twcactl.errors import AuthError, DeviceError, PolicyError, StateError, TwcaError
from twcactl.pkix.chain import ZIP_NAME, bundle_files, leaf_file_name, zip_bytes
from twcactl.rules import windows
from twcactl.rules.settings import Settings
from twcactl.rules.times import rfc3339, utcnow
from twcactl.rules.words import count
from twcactl.store import Store
from twcactl.store.records import CertRecord

#: Seconds one SMTP conversation step may take before the relay counts as unreachable.
SMTP_TIMEOUT = 30.0


class MailError(DeviceError):
    """The mail relay could not be reached or refused the conversation (exit 6: an outside service is missing,
    like a reader or a token)."""


class MailAuthError(AuthError):
    """The mail relay refused the login (exit 4)."""


@dataclass(frozen=True)
class MailConfig:
    """Where and how notices are sent: the ``smtp_*`` settings with the password resolved.

    Attributes:
        host / port / starttls / user / sender: the settings ``smtp_host``, ``smtp_port``,
            ``smtp_starttls``, ``smtp_user``, ``smtp_from``.
        password: the secret ``smtp_password_source`` named (resolved by the CLI), or None.
    """

    host: str
    port: int
    starttls: bool
    user: str
    sender: str
    password: str | None = field(default=None, repr=False)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``); names are not resolved, so a
    DNS answer cannot turn a remote relay into a "local" one."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def mail_config(settings: Settings, password: str | None) -> MailConfig:
    """The relay settings checked before anything is sent (or issued, for ``cert issue --notify``).

    Args:
        settings: the home's settings.
        password: the secret named by ``smtp_password_source`` (None when it is unset).

    Raises:
        StateError: no ``smtp_host`` or ``smtp_from``, or ``smtp_user`` without a password source (exit 5).
        PolicyError: a password would go in clear (``smtp_starttls false``) to a host that is not a
            loopback address (exit 1).
    """
    if not settings.smtp_host:
        raise StateError("no mail relay is configured (smtp_host is empty).",
                         hint="twcactl ca config smtp_host HOST (and smtp_from ADDRESS)")
    if not settings.smtp_from:
        raise StateError("no sender address is configured (smtp_from is empty).",
                         hint="twcactl ca config smtp_from ca@example.com")
    if settings.smtp_user and password is None:
        raise StateError("smtp_user is set but smtp_password_source is empty.",
                         hint="twcactl ca config smtp_password_source env:SMTP_PASSWORD")
    if settings.smtp_user and not settings.smtp_starttls and not is_loopback(settings.smtp_host):
        raise PolicyError(f"the SMTP password would be sent in clear to {settings.smtp_host}; without STARTTLS a "
                          "password goes only to a loopback relay.",
                          hint="twcactl ca config smtp_starttls true, or relay through localhost")
    return MailConfig(host=settings.smtp_host, port=settings.smtp_port, starttls=settings.smtp_starttls,
                      user=settings.smtp_user, sender=settings.smtp_from,
                      password=password if settings.smtp_user else None)


def contact_address(contact: str | None) -> str | None:
    """The e-mail address in a record's ``contact`` (``ops@x`` or ``Name <ops@x>``), None when there is none."""
    if not contact:
        return None
    _name, address = parseaddr(contact)
    local, at, domain = address.rpartition("@")
    if not (at and local and "." in domain) or any(c.isspace() or ord(c) < 0x20 for c in address):
        return None
    return address


def default_contact(record: CertRecord) -> str | None:
    """Where a certificate's notices go: its recorded contact (``cert issue --contact``, ``card enroll
    --contact``, ``cert set-contact``), else, for a personal certificate (any profile but the server ones),
    the first e-mail address of its SAN, rfc822Name (issue 28: the holder is the one to remind).

    Returns:
        An e-mail address, or None when the certificate names none.
    """
    recorded = contact_address(record.contact)
    if recorded is not None or record.contact or record.profile in windows.SERVER_PROFILES or not record.der:
        return recorded
    try:
        sans = x509.load_der_x509_certificate(record.der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    return next((a for a in (contact_address(e) for e in sans.get_values_for_type(x509.RFC822Name)) if a), None)


def _header_text(text: str) -> str:
    """Certificate text made safe for a header: control characters become spaces (CN is untrusted)."""
    return "".join(" " if ord(c) < 0x20 or c == "\x7f" else c for c in text)


def _message(config: MailConfig, to: str, subject: str, body: str, now: dt.datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = _header_text(subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2])
    message.set_content(body)
    return message


def issue_message(config: MailConfig, record: CertRecord, bundle: bytes, to: str, now: dt.datetime) -> EmailMessage:
    """The notice of issue with the bundle attached (``cert.zip``; domain.md §3, §6)."""
    cn = record.cn or record.serial
    body = (f"The certificate for {cn} was issued.\n\n"
            f"  serial     {record.serial}\n  subject    {record.subject}\n"
            f"  valid      {rfc3339(record.not_before)} to {rfc3339(record.not_after)}\n"
            f"  account    {record.account or '-'}\n\n"
            f"The attached {ZIP_NAME} holds root.cer (the root), the intermediate certificate(s) (uca.cer, or\n"
            "uca_1.cer and uca_2.cer) and server.cer (the server certificate).  Install them in that order,\n"
            "then check that the certificate path is complete and that the server holds the private key.\n"
            "Back up the key with the certificate (a PFX) right after installing.\n")
    message = _message(config, to, f"Certificate issued: {cn} ({record.serial})", body, now)
    message.add_attachment(bundle, maintype="application", subtype="zip", filename=ZIP_NAME)
    return message


def reminder_message(config: MailConfig, record: CertRecord, to: str, window_days: int,
                     now: dt.datetime) -> EmailMessage:
    """The renewal reminder of a certificate inside its ``window_days`` window (domain.md §4)."""
    cn = record.cn or record.serial
    days_left = max(0, (record.not_after - now).days)
    body = (f"The certificate for {cn} ends on {record.not_after:%Y-%m-%d} ({count(days_left, 'day')} from now).\n\n"
            f"  serial     {record.serial}\n  subject    {record.subject}\n  account    {record.account or '-'}\n\n"
            "Renew it before then; the renewed certificate's validity continues from this one's end date,\n"
            "so nothing is lost by renewing early:\n"
            f"  twcactl cert renew {record.serial} --csr NEW.csr\n"
            "or, for every due certificate at once:\n"
            f"  twcactl cert renew-due --within {window_days} --out-dir DIR\n"
            f"(This reminder is sent once, {count(window_days, 'day')} before the end date.)\n")
    return _message(config, to, f"Certificate expiring: {cn} on {record.not_after:%Y-%m-%d} ({record.serial})",
                    body, now)


class MailSession:
    """One SMTP conversation with the relay (``with MailSession(config) as mail: mail.send(message)``)."""

    def __init__(self, config: MailConfig, *, timeout: float = SMTP_TIMEOUT) -> None:
        self._config = config
        self._timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> MailSession:
        config = self._config
        try:
            smtp = smtplib.SMTP(config.host, config.port, timeout=self._timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"cannot reach the mail relay {config.host}:{config.port}: {exc}.",
                            hint="check smtp_host and smtp_port (twcactl ca config)") from exc
        try:
            smtp.ehlo()
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.user:
                smtp.login(config.user, config.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise MailAuthError(f"the mail relay {config.host} refused the login of {config.user}.",
                                hint="check smtp_user and the secret smtp_password_source names") from exc
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            smtp.close()
            what = "STARTTLS" if config.starttls else "the greeting"
            raise MailError(f"the mail relay {config.host}:{config.port} failed {what}: {exc}.",
                            hint="set smtp_starttls false only for a relay on this machine") from exc
        self._smtp = smtp
        return self

    def send(self, message: EmailMessage) -> None:
        """Hand one message to the relay.

        Raises:
            MailError: the relay refused it or the connection broke (exit 6).
        """
        assert self._smtp is not None
        try:
            self._smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"the mail relay refused the message to {message['To']}: {exc}.") from exc

    def __exit__(self, *exc: object) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()


#: Opens a mail session; tests and servers may pass another (e.g. one that fails).
SessionFactory = Callable[[MailConfig], MailSession]


@dataclass
class NoticeResult:
    """One notice: to whom, about which certificate, and what happened.

    ``outcome`` is ``sent``, ``would-send`` (dry run), ``skipped`` (``why``: no usable contact) or
    ``failed`` (``error``: the relay's refusal; nothing recorded, so the next run tries again).
    """

    serial: str
    cn: str | None
    recipient: str | None
    kind: str
    window_days: int
    not_after: dt.datetime
    outcome: str
    why: str | None = None
    error: str | None = None
    message_id: str | None = None

    def to_json(self) -> dict[str, object]:
        """The result as a JSON object."""
        doc: dict[str, object] = {"serial": self.serial, "cn": self.cn, "recipient": self.recipient,
                                  "kind": self.kind, "window_days": self.window_days,
                                  "not_after": rfc3339(self.not_after), "outcome": self.outcome}
        for key in ("why", "error", "message_id"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return doc


@dataclass
class NotifyOutcome:
    """What :func:`notify_due` did: one result per certificate due a reminder, and how many were already
    reminded in their window (not listed)."""

    results: list[NoticeResult] = field(default_factory=list)
    already_notified: int = 0

    def count(self, outcome: str) -> int:
        """How many results have ``outcome``."""
        return sum(1 for r in self.results if r.outcome == outcome)


def _record_sent(store: Store, result: NoticeResult, operator: str, now: dt.datetime) -> None:
    """Record one accepted notice: the ``notices`` row and a ``notice.sent`` log entry, in one transaction."""
    assert result.recipient is not None and result.message_id is not None
    with store.transaction():
        store.notices.record(serial=result.serial, kind=result.kind, window_days=result.window_days,
                             recipient=result.recipient, message_id=result.message_id, operator=operator, when=now)
        store.log.append(operator=operator, action="notice.sent", serial=result.serial, details={
            "kind": result.kind, "window_days": result.window_days, "to": result.recipient})


def _due_reminders(store: Store, now: dt.datetime, outcome: NotifyOutcome) -> list[tuple[CertRecord, int]]:
    """The valid, not renewed certificates inside their reminder window and not yet reminded in it."""
    horizon = max(windows.SERVER_REMINDER_DAYS, windows.OTHER_REMINDER_DAYS)
    due: list[tuple[CertRecord, int]] = []
    for record in store.certificates.find(now=now, expiring_within=horizon):
        if not windows.reminder_due(record.profile, record.not_after, now):
            continue
        window = windows.reminder_window_days(record.profile)
        if store.notices.sent(record.serial, "reminder", window):
            outcome.already_notified += 1
            continue
        due.append((record, window))
    return due


def notify_due(store: Store, *, operator: str, config: MailConfig | None, dry_run: bool = False,
               now: dt.datetime | None = None, session: SessionFactory = MailSession) -> NotifyOutcome:
    """Mail each technical contact whose certificate entered its reminder window (60 days for SSL, 30 for
    the others; domain.md §4), once per certificate and window.

    Each notice is recorded (``notices`` and the activity log) right after the relay accepted it, so a run
    that stops halfway repeats nothing it sent, and a message the relay refused is tried again next run.
    A certificate without a usable contact is listed as ``skipped``.

    Args:
        store: the open CA home.
        operator: who runs it (a manager, unless ``dry_run``).
        config: the relay (:func:`mail_config`); may be None only with ``dry_run``.
        dry_run: list what would be sent; send and record nothing.
        now: the time judged at (default: now).
        session: opens the SMTP conversation.

    Raises:
        StateError: the operator is not a manager (exit 5).
        MailError / MailAuthError: the relay could not be reached or refused the login (exit 6 / 4);
            nothing was recorded for the notices not sent.
    """
    now = now or utcnow()
    if not dry_run:
        store.operators.require_manager(operator)
    outcome = NotifyOutcome()
    todo: list[tuple[CertRecord, NoticeResult]] = []
    for record, window in _due_reminders(store, now, outcome):
        to = default_contact(record)
        result = NoticeResult(record.serial, record.cn, to, "reminder", window, record.not_after,
                              "would-send" if dry_run else "pending")
        if to is None:
            result.outcome, result.why = "skipped", ("no contact was given (twcactl cert set-contact)"
                                                     if not record.contact else "the contact is not an e-mail address")
        elif not dry_run:
            todo.append((record, result))
        outcome.results.append(result)
    if todo:
        assert config is not None, "notify_due needs a MailConfig unless dry_run"
        with session(config) as mail:
            for record, result in todo:
                assert result.recipient is not None
                if _send(mail, reminder_message(config, record, result.recipient, result.window_days, now), result):
                    _record_sent(store, result, operator, now)
    return outcome


def _send(mail: MailSession, message: EmailMessage, result: NoticeResult) -> bool:
    """Hand one notice to the relay; ``result`` says ``sent`` (with the Message-ID) or ``failed`` (the relay's
    error).  Returns True when sent."""
    try:
        mail.send(message)
    except MailError as exc:
        result.outcome, result.error = "failed", exc.message
        return False
    result.outcome, result.message_id = "sent", str(message["Message-ID"])
    return True


def send_issue_notices(store: Store, records: Sequence[CertRecord], *, operator: str, config: MailConfig,
                       now: dt.datetime | None = None, session: SessionFactory = MailSession) -> list[NoticeResult]:
    """Mail each new certificate's technical contact its bundle (``cert.zip``), after the issue committed.

    Never raises for the mail: the certificates are issued and charged whatever happens here, so a
    relay that cannot be reached or refuses a message makes ``failed`` results (post-commit honesty,
    issue 13); the caller reports them and exits 0.  A sent notice is recorded (kind ``issued``).

    Returns:
        One result per record: ``sent``, ``skipped`` (no usable contact) or ``failed`` (``error``).
    """
    now = now or utcnow()
    results: list[NoticeResult] = []
    todo: list[tuple[CertRecord, NoticeResult]] = []
    for record in records:
        to = default_contact(record)
        result = NoticeResult(record.serial, record.cn, to, "issued", 0, record.not_after, "pending")
        if to is None:
            result.outcome, result.why = "skipped", "no e-mail address was given with --contact"
        else:
            todo.append((record, result))
        results.append(result)
    if not todo:
        return results
    try:
        with session(config) as mail:
            for record, result in todo:
                assert result.recipient is not None
                leaf = x509.load_der_x509_certificate(record.der)
                bundle = zip_bytes(bundle_files(leaf, ca_chain_for(store, record),
                                                leaf_name=leaf_file_name(record.profile)))
                if not _send(mail, issue_message(config, record, bundle, result.recipient, now), result):
                    continue
                try:
                    _record_sent(store, result, operator, now)
                except TwcaError as exc:  # sent; only the record of it is missing (a busy home)
                    result.error = f"sent, but not recorded: {exc.message}"
    except (MailError, MailAuthError) as exc:
        for _record, result in todo:
            if result.outcome == "pending":
                result.outcome, result.error = "failed", exc.message
    return results
