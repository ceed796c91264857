"""OCSP answers, and what ``twcactl serve`` answers without changing the books: OCSP, CRLs, CA
certificates; and its own TLS certificate.

:func:`ocsp_respond` answers one request for ``twcactl ocsp respond`` (a manager, one activity-log
entry); :func:`ocsp_answer` is its read-only twin for the server: the same
records and :func:`twcactl.pkix.ocsp.build_response`, but no operator check and no activity-log entry per
request (a responder answers thousands of requests; the hash-chained log records changes, not queries).
The keys are unlocked once when the server starts (:class:`Signers`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp

from twcactl.authority.audit import certificate_state
from twcactl.authority.home import load_ca_key
from twcactl.errors import BusyError, InputError, NotFoundError, StateError, TwcaError, UsageError
from twcactl.fsutil import write_file, write_new_file
from twcactl.issue import build_leaf
from twcactl.pkix import names as names_mod
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.ocsp import OcspStatus, build_response, load_request
from twcactl.pkix.profiles import get_profile
from twcactl.rules.serials import format_serial
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.store import CaRecord, Store

PassphraseProvider = Callable[[], "str | None"]

#: How long the server's own TLS certificate runs, and when it is replaced (a third left).
SERVER_CERT_DAYS = 90
#: How long a delegated OCSP signing certificate runs (replaced with a third left, at start or while serving):
#: short, since id-pkix-ocsp-nocheck tells clients never to check its own revocation (RFC 6960 §4.2.2.2.1).
OCSP_CERT_DAYS = 30
#: Who signs OCSP responses: a delegated OCSP signing certificate (the default) or the CA key itself.
OCSP_SIGNERS = ("delegated", "ca")

Delegate = tuple[x509.Certificate, PrivateKey]

#: How long a signed OCSP answer is reused for the same question while the record reads the same (RFC 5019
#: §2.2 allows pre-produced responses): its thisUpdate is at most this old when it is served.
OCSP_REUSE = dt.timedelta(hours=1)
#: Signed answers kept per server process (about 1 KB each with the delegated certificate).
OCSP_CACHE_ENTRIES = 20_000


class OcspCache:
    """Signed OCSP answers kept for reuse, keyed so that a cached answer never hides a change of the record.

    The key holds what the answer says: CA, serial, CertID hash, the record's state, revocation time and
    reason as read from the store *for this request*, and the signing certificate.  Every request still reads
    the record (one indexed query); the cache only saves building and signing the response.  A revocation,
    hold or release committed by any process therefore changes the key, and the very next request is
    answered afresh: nothing stale is served, not even until nextUpdate.  An answer is reused for at most
    :data:`OCSP_REUSE` after its thisUpdate, never for a request that carries a nonce (which must be echoed),
    and at most :data:`OCSP_CACHE_ENTRIES` are kept (least recently used dropped first).
    """

    def __init__(self, max_entries: int = OCSP_CACHE_ENTRIES, reuse: dt.timedelta = OCSP_REUSE) -> None:
        self.max_entries = max_entries
        self.reuse = reuse
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[object, ...], tuple[bytes, dt.datetime, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], now: dt.datetime) -> tuple[bytes, dt.datetime, dt.datetime] | None:
        """The cached ``(DER, thisUpdate, nextUpdate)`` for ``key`` while younger than the reuse time."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or now >= found[1] + self.reuse:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[object, ...], answer: tuple[bytes, dt.datetime, dt.datetime]) -> None:
        """Keep ``answer`` under ``key`` (dropping the least recently used beyond the bound)."""
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)



def ocsp_status(store: Store, serial_number: int, ca_name: str) -> OcspStatus:
    """The RFC 6960 status of ``serial_number`` as CA ``ca_name``'s records know it.

    ``good`` for a valid record, ``revoked`` (with time and reason) for a revoked or suspended one
    (certificateHold, domain.md §5), ``unknown`` for a serial the CA never issued.
    """
    try:
        record = store.certificates.get(format_serial(serial_number))
    except StateError:
        return OcspStatus("unknown")
    if record.ca_name != ca_name:
        return OcspStatus("unknown")
    return record_status(record.state, record.revoked_at, record.reason)


def record_status(state: str, revoked_at: str | None, reason: str | None) -> OcspStatus:
    """The RFC 6960 status of a record of the CA asked about, from its stored ``state``, ``revoked_at``
    (RFC 3339) and ``reason``: ``revoked`` for a revoked or held one, ``good`` otherwise (domain.md §5)."""
    if state in ("revoked", "suspended") and revoked_at:
        return OcspStatus("revoked", parse_rfc3339(revoked_at), reason)
    return OcspStatus("good")

def ocsp_respond(store: Store, request_der: bytes, *, operator: str, passphrase: PassphraseProvider,
                 name: str = "request") -> tuple[bytes, str]:
    """A signed OCSP response (DER) for a DER request, from the records (RFC 6960).

    Returns:
        ``(response DER, status word)`` with status ``good``, ``revoked``,
        ``unknown`` or ``unauthorized`` (another issuer).

    Raises:
        InputError: not an OCSP request (exit 3).  StateError: not a manager (exit 5).
    """
    from twcactl.rules import public_trust as br

    store.operators.require_manager(operator)
    from twcactl.pkix.ocsp import issuer_matches

    request = load_request(request_der, name=name)
    # the CA the request names (issue 25: several issuing CAs), the active one when none does
    ca = next((c for c in store.cas.all() if c.issuer is not None and issuer_matches(request, c.certificate())),
              store.cas.issuing())
    encrypted = store.ca_key_encrypted
    ca_key = load_ca_key(ca, passphrase() if encrypted else None, encrypted=encrypted)
    now = utcnow()
    seen: dict[str, str] = {}

    def lookup(serial_number: int) -> OcspStatus:
        status = ocsp_status(store, serial_number, ca.name)
        seen["status"] = status.status
        return status

    response = build_response(request, issuer_cert=ca.certificate(), issuer_key=ca_key, lookup=lookup, now=now,
                              validity=dt.timedelta(days=br.crl_days(store.settings().crl_days,
                                                                     bool(store.settings().public_trust))))
    status = seen.get("status", "unauthorized")
    with store.transaction():
        store.log.append(operator=operator, action="ocsp.respond", serial=format_serial(request.serial_number),
                         details={"status": status})
    return response.public_bytes(serialization.Encoding.DER), status


@dataclass
class Signers:
    """The keys the server signs OCSP responses with, unlocked once at start.

    Attributes:
        cas: CA name -> (record, certificate, CA key).
        delegated: CA name -> (OCSP signing certificate, its key), when responses are signed by a delegated
            responder (``--ocsp-signer delegated``); empty when the CA key signs (``ca``).
        operator: who issues a fresh OCSP signing certificate while serving (the operator who started it).
        cache: this process's signed answers (:class:`OcspCache`).
    """

    cas: dict[str, tuple[CaRecord, x509.Certificate, PrivateKey]]
    delegated: dict[str, Delegate] = field(default_factory=dict)
    operator: str | None = None
    cache: OcspCache = field(default_factory=OcspCache, repr=False)
    #: the answers produced ahead (:class:`twcactl.authority.ocsp_answers.OcspAnswers`, issue 29), made by
    #: ``ocsp_answers.answers_of`` on first use
    answers: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def unlock(cls, store: Store, passphrase: PassphraseProvider, *, signer: str = "ca",
               operator: str | None = None) -> Signers:
        """Unlock every CA key below the root (the CAs that issue certificates a client asks about) and, for
        ``signer="delegated"``, get each one's OCSP signing certificate (:func:`ocsp_signing_certificate`).

        Raises:
            AuthError: wrong or missing CA passphrase (exit 4).  StateError: a key file missing or too open;
            ``operator`` is not a manager (delegated; exit 5).  UsageError: an unknown ``signer`` (exit 2).
        """
        if signer not in OCSP_SIGNERS:
            raise UsageError(f"--ocsp-signer is one of {', '.join(OCSP_SIGNERS)}, not {signer!r}.")
        secret = passphrase() if store.ca_key_encrypted else None
        found = {}
        for ca in store.cas.all()[1:] or store.cas.all():
            found[ca.name] = (ca, ca.certificate(), load_ca_key(ca, secret))
        signers = cls(found, operator=operator)
        if signer == "delegated":
            if operator is None:
                raise UsageError("a delegated OCSP signer needs the operator who issues it.")
            for name in found:
                signers.delegated[name] = ocsp_signing_certificate(store, name, signers)
        return signers

    def delegates_fresh(self) -> bool:
        """True while no delegated responder is due for replacement (:meth:`responder_for` writes nothing)."""
        return all(_fresh(cert) for cert, _key in self.delegated.values())

    def responder_for(self, store: Store, ca_name: str) -> Delegate | None:
        """The delegated responder of ``ca_name``, replaced first when a third of its life or less is left
        (a long-running server keeps it fresh); None when the CA key signs."""
        current = self.delegated.get(ca_name)
        if current is None or _fresh(current[0]):
            return current
        with self._lock:
            current = self.delegated[ca_name]
            if not _fresh(current[0]):
                current = self.delegated[ca_name] = ocsp_signing_certificate(store, ca_name, self)
        return current


def _fresh(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    """True while more than a third of ``cert``'s life is left."""
    left = cert.not_valid_after_utc - (now or utcnow())
    return left > (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3


def ocsp_answer(store: Store, request_der: bytes, signers: Signers) -> tuple[bytes, str, dt.datetime, dt.datetime]:
    """A signed OCSP response (RFC 6960) for a DER request, from the records; nothing is written.

    The CA whose name and key hashes the request carries answers (``unauthorized`` when none does);
    ``good``, ``revoked`` (reason and time; a held certificate answers certificateHold) or ``unknown``;
    the nonce is echoed.  The record is read for every request (one indexed query); a request without a
    nonce may get the answer signed for the same question and the same record state within the last
    :data:`OCSP_REUSE` (:class:`OcspCache`: never one that hides a change of the record).

    Returns:
        ``(response DER, status word, thisUpdate, nextUpdate)``.

    Raises:
        InputError: not an OCSP request (exit 3).
    """
    from twcactl.pkix.ocsp import issuer_matches

    request = load_request(request_der)
    now = utcnow().replace(microsecond=0)
    validity = dt.timedelta(days=min(store.settings().crl_days, 7))
    for ca, cert, key in signers.cas.values():
        if not issuer_matches(request, cert):
            continue
        status = ocsp_status(store, request.serial_number, ca.name)
        delegate = signers.responder_for(store, ca.name)
        cache_key = None if has_nonce(request) else (
            ca.name, request.serial_number, request.hash_algorithm.name, status, validity,
            delegate[0].serial_number if delegate is not None else None)
        if cache_key is not None and (hit := signers.cache.get(cache_key, now)) is not None:
            return hit[0], status.status, hit[1], hit[2]
        def lookup(_serial: int, found: OcspStatus = status) -> OcspStatus:
            return found

        response = build_response(request, issuer_cert=cert, issuer_key=key, now=now, validity=validity,
                                  lookup=lookup, responder=delegate)
        der = response.public_bytes(serialization.Encoding.DER)
        if cache_key is not None:
            signers.cache.put(cache_key, (der, now, now + validity))
        return der, status.status, now, now + validity
    from cryptography.x509 import ocsp

    unauthorized = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    return unauthorized.public_bytes(serialization.Encoding.DER), "unauthorized", now, now


def has_nonce(request: x509_ocsp.OCSPRequest) -> bool:
    """True when ``request`` carries a nonce (RFC 8954): its answer is signed live, never served stored."""
    try:
        request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return False
    return True


def latest_crl(store: Store, ca_name: str) -> tuple[bytes, dt.datetime, int]:
    """The newest CRL of ``ca_name``: ``(DER, thisUpdate, cRLNumber)``.

    Raises:
        NotFoundError: no such CA or no CRL yet (exit 5).
    """
    store.cas.by_name(ca_name)
    latest = store.crls.latest(ca_name)
    if latest is None or not latest.get("der"):
        raise NotFoundError(f"no CRL of {ca_name} yet.")
    return latest["der"], parse_rfc3339(latest["this_update"]), int(latest["number"])


def ca_certificate(store: Store, name: str) -> bytes:
    """The DER certificate of CA ``name`` (the AIA caIssuers URL serves it).

    Raises:
        NotFoundError: no such CA (exit 5).
    """
    return store.cas.by_name(name).der


def ensure_fresh_crl(store: Store, *, operator: str, passphrase: PassphraseProvider) -> bool:
    """Generate the CRL of each CA below the root (the active issuing CA, retired ones whose certificates
    still run: issue 25) when there is none or the newest is past half its life (logged as ``crl.generate``
    by ``operator``, like ``twcactl crl``).  The root's CRL is signed offline (``crl --ca root``).

    Returns:
        True when a CRL was generated.
    """
    from twcactl.authority.lifecycle import generate_crl

    now = utcnow()
    generated = False
    for ca in store.cas.all():
        if ca.issuer is None or ca.revoked_at or ca.certificate().not_valid_after_utc <= now:
            continue
        latest = store.crls.latest(ca.name)
        if latest is not None and latest.get("der"):
            this_update, next_update = parse_rfc3339(latest["this_update"]), parse_rfc3339(latest["next_update"])
            if now < this_update + (next_update - this_update) / 2:
                continue
        generate_crl(store, operator=operator, passphrase=passphrase, ca_name=ca.name)
        generated = True
    return generated


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _reusable(cert_path: Path, key_path: Path, names: Sequence[str], issuer_der: bytes) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    issuer = x509.load_der_x509_certificate(issuer_der)
    left = cert.not_valid_after_utc - utcnow()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return (cert.issuer == issuer.subject and set(sans) == {_san(n) for n in names} and left > lifetime / 3)


def server_certificate(store: Store, names: Sequence[str], *, operator: str,
                       passphrase: PassphraseProvider) -> tuple[Path, Path]:
    """The server's own TLS certificate for ``names`` (DNS names or IP addresses), issued by the issuing CA.

    A CA-internal issuance: no account is charged (the record has no account and cost 0), and it is
    recorded like any certificate (``cert.issue`` in the log with ``"internal": "serve"``), so it shows in
    ``cert list``, the OCSP responder and a revocation.  Kept in ``serve/tls.cer`` and ``serve/tls.key``
    (0600) and reused while more than a third of its :data:`SERVER_CERT_DAYS` days is left.

    Returns:
        ``(certificate chain PEM path, key PEM path)``.

    Raises:
        StateError: ``operator`` is not a manager (exit 5).  AuthError: CA passphrase (exit 4).
    """
    store.operators.require_manager(operator)
    folder = store.home / "serve"
    folder.mkdir(mode=0o700, exist_ok=True)
    cert_path, key_path = folder / "tls.cer", folder / "tls.key"
    ca = store.cas.issuing()
    if _reusable(cert_path, key_path, names, ca.der):
        return cert_path, key_path
    if not names:
        raise InputError("the server certificate needs at least one --name.")
    ca_cert = ca.certificate()
    ca_key = load_ca_key(ca, passphrase() if store.ca_key_encrypted else None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, _sha256())
    now = utcnow()
    not_after = min(now + dt.timedelta(days=SERVER_CERT_DAYS), ca_cert.not_valid_after_utc)
    sans = [_san(n) for n in dict.fromkeys(names)]
    from twcactl.issue import CaUrls

    cert = build_leaf(csr, issuer_cert=ca_cert, issuer_key=ca_key, profile=get_profile("ssl"),
                      serial=x509.random_serial_number(), not_before=now, not_after=not_after,
                      urls=CaUrls(), subject=subject, sans=sans)
    serial = format_serial(cert.serial_number)
    der = cert.public_bytes(serialization.Encoding.DER)
    with store.transaction():
        store.certificates.add(serial=serial, ca_name=ca.name, account_id=None, profile="ssl", cn=names[0],
                               subject=subject.rfc4514_string(),
                               sans=names_mod.sans_json(names_mod.general_names(sans)),
                               not_before=now, not_after=not_after, cost=0, contact=None,
                               note="twcactl serve TLS certificate", renewed_from=None, operator=operator, der=der)
        store.log.append(operator=operator, action="cert.issue", serial=serial, details={
            "internal": "serve", "names": list(names), "cost": 0, "not_after": rfc3339(not_after),
            "record": certificate_state(state="valid", reason=None, revoked_at=None, not_after=not_after,
                                        account=None, der=der)})
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_file(key_path, key_pem, mode=0o600, force=True)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    write_file(cert_path, chain, mode=0o644, force=True)
    os.chmod(key_path, 0o600)
    _write_cert_pem(store, cert)
    return cert_path, key_path


def _reusable_delegate(store: Store, cert_path: Path, key_path: Path, ca_cert: x509.Certificate) -> Delegate | None:
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        record = store.certificates.get(format_serial(cert.serial_number))
    except (ValueError, TypeError, StateError):
        return None
    if (cert.issuer != ca_cert.subject or not _fresh(cert) or record.state != "valid"
            or cert.public_key().public_numbers() != key.public_key().public_numbers()):  # type: ignore[union-attr]
        return None
    return cert, key  # type: ignore[return-value]


def ocsp_signing_certificate(store: Store, ca_name: str, signers: Signers) -> Delegate:
    """The delegated OCSP responder of CA ``ca_name`` (RFC 6960 §4.2.2.2): an EC P-256 certificate issued by
    that CA with extendedKeyUsage id-kp-OCSPSigning and id-pkix-ocsp-nocheck (§4.2.2.2.1), valid
    :data:`OCSP_CERT_DAYS` days.

    Kept in ``serve/ocsp-NAME.cer`` and ``ocsp-NAME.key`` (0600) and reused while more than a third of its
    life is left and its record is valid.  A CA-internal issuance like the server's TLS certificate: recorded
    with no account and cost 0, ``cert.issue`` in the log with ``"internal": "ocsp"`` and its ``record``
    (issue 13, so ``ca check`` replays it), in the name of ``signers.operator``.

    Raises:
        StateError: the operator is not a manager (exit 5).  KeyError: ``ca_name`` is not unlocked.
    """
    ca, ca_cert, ca_key = signers.cas[ca_name]
    folder = store.home / "serve"
    folder.mkdir(mode=0o700, exist_ok=True)
    cert_path, key_path = folder / f"ocsp-{ca_name}.cer", folder / f"ocsp-{ca_name}.key"
    reused = _reusable_delegate(store, cert_path, key_path, ca_cert)
    if reused is not None:
        return reused
    operator = signers.operator or ""
    store.operators.require_manager(operator)
    key = ec.generate_private_key(ec.SECP256R1())
    cn = f"{names_mod.common_name(ca_cert.subject) or ca_name} OCSP Responder"
    subject = x509.Name([attr for attr in ca_cert.subject if attr.oid != x509.NameOID.COMMON_NAME]
                        + [x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    now = utcnow().replace(microsecond=0)
    not_after = min(now + dt.timedelta(days=OCSP_CERT_DAYS), ca_cert.not_valid_after_utc)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(ca_key, _sha256()))
    serial = format_serial(cert.serial_number)
    der = cert.public_bytes(serialization.Encoding.DER)
    with store.transaction():
        store.certificates.add(serial=serial, ca_name=ca.name, account_id=None, profile="ocsp", cn=cn,
                               subject=subject.rfc4514_string(), sans=[], not_before=cert.not_valid_before_utc,
                               not_after=not_after, cost=0, contact=None, note="twcactl serve OCSP signing certificate",
                               renewed_from=None, operator=operator, der=der)
        store.log.append(operator=operator, action="cert.issue", serial=serial, details={
            "internal": "ocsp", "cn": cn, "cost": 0, "not_after": rfc3339(not_after),
            "record": certificate_state(state="valid", reason=None, revoked_at=None, not_after=not_after,
                                        account=None, der=der)})
    write_file(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), mode=0o600, force=True)
    os.chmod(key_path, 0o600)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    _write_cert_pem(store, cert)
    return cert, key


def _write_cert_pem(store: Store, cert: x509.Certificate) -> None:
    """Write ``certs/SERIAL.pem`` of an internal certificate, as issuing does (derived; ``ca check`` rebuilds it
    when this could not be written, so a failure here is not an error)."""
    path = store.cert_path(format_serial(cert.serial_number))
    try:
        with store.files_lock(timeout=5.0):
            write_new_file(path, cert.public_bytes(serialization.Encoding.PEM))
    except (OSError, TwcaError, BusyError):
        pass


def _sha256():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def etag(data: bytes) -> str:
    """A strong ETag for a body: the quoted SHA-256 prefix."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
