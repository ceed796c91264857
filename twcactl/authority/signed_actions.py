"""Signed actions: every change an operator makes is authorized by their signature (issue 27).

With ``operator_auth required`` (:func:`twcactl.rules.operator_auth.auth_required`) the command that opened
the store installs an :class:`ActionAuthority` as the activity log's signer (:func:`install`).  When a
workflow appends its log entries (inside its transaction), the authority

1. checks the operator's credential: the certificate the operator is bound to (``operator add --cert``)
   was issued by one of this CA's certificates, is inside its validity and is not revoked or suspended
   here (RFC 5280 §6 path validation against the CA's own certificates; the operator's certificate is
   typically issued by this CA, so its status is its record's state);
2. signs the canonical statement of those entries (:func:`twcactl.rules.operator_auth.statement`: what the
   log will say) with the operator's key -- on their card (PKCS#11, RFC 7512 URI) or, for an automation
   operator, in a key file -- and checks the signature against the certificate (a wrong key is refused);
3. returns the signature, stored with the first of the entries.

Signing takes effect once an active manager is bound to a certificate (a new CA has no operator
certificate yet: its first manager issues one and binds it, the bootstrap), and ``ca config operator_auth
required`` is refused until then, so a CA cannot lock itself out.

Any refusal raises inside the transaction, so nothing the workflow did is kept: a missing or wrong
signature or credential is exit 4 (:class:`AuthError`), a role that may not do it exit 5 (the log's role
check, :meth:`twcactl.store.log.LogRepository.append_many`).  :func:`signature_problems` checks every
stored signature offline (``log verify``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from twcactl.errors import AuthError, DeviceError, InputError, NotFoundError, StateError, UsageError
from twcactl.pkix.keys import PrivateKey, load_private_key
from twcactl.rules.operator_auth import SIGNED_ACTIONS, SUBSCRIBER_PREFIX, auth_required, statement
from twcactl.rules.times import utcnow
from twcactl.store import Store
from twcactl.store.interface import LogItem
from twcactl.store.records import RawLogEntry

if TYPE_CHECKING:
    from twcactl.backends.p11_uri import Pkcs11Uri

#: The version of the signature document stored with a log entry.
SIGNATURE_VERSION = 1

KEY_HINT = ("sign with your key: --operator-key pkcs11:token=LABEL;id=%01... (your card) or a key file, "
            "or set TWCACTL_OPERATOR_KEY")

#: Loads the operator's private key when the first signature is needed (a card asks for its PIN then).
KeyLoader = Callable[[], PrivateKey]


def cert_sha256(der: bytes) -> str:
    """The SHA-256 of a DER certificate, lower-case hex (how an operator's certificate is named)."""
    return hashlib.sha256(der).hexdigest()


def load_operator_certificate(data: bytes, *, name: str) -> x509.Certificate:
    """An operator certificate from PEM or DER bytes.

    Raises:
        InputError: not a certificate (exit 3).
    """
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InputError(f"{name} is not a certificate.") from exc


def _issuer_of(store: Store, cert: x509.Certificate) -> x509.Certificate | None:
    """The CA certificate of this home that issued ``cert`` (its signature verifies), None when none did."""
    for ca in store.cas.all():
        ca_cert = x509.load_der_x509_certificate(ca.der)
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca_cert
    return None


def credential_problem(store: Store, cert: x509.Certificate, *, now: dt.datetime | None = None) -> str | None:
    """Why ``cert`` cannot prove an operator's identity now, or None when it can.

    Checks (RFC 5280 §6.1, one step): issued by one of this CA's certificates, inside its validity, and not
    revoked or suspended when this CA has its record (domain.md §5 status words).
    """
    now = now or utcnow()
    if _issuer_of(store, cert) is None:
        return "is not issued by this CA"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return f"is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
    try:
        record = store.certificates.get(format(cert.serial_number, "x"))
    except NotFoundError:
        return None
    if record.state != "valid":
        return f"is {record.state}" + (f" ({record.reason})" if record.reason else "")
    return None


def check_operator_credential(store: Store, operator: str) -> x509.Certificate:
    """The certificate ``operator`` signs with, checked now (:func:`credential_problem`).

    Raises:
        StateError: ``operator`` is not an active operator of this CA (exit 5).
        AuthError: no certificate is bound to it, or the certificate cannot prove it (exit 4).
    """
    if store.operators.role(operator) is None:
        raise StateError(f"operator {operator} is not registered in this CA home (or was removed).")
    der = store.operators.certificate(operator)
    if der is None:
        raise AuthError(f"operator {operator} has no certificate; operator_auth is required.",
                        hint="a manager binds one: twcactl operator add NAME --role ROLE --cert FILE --update")
    cert = x509.load_der_x509_certificate(der)
    problem = credential_problem(store, cert)
    if problem is not None:
        raise AuthError(f"the certificate of operator {operator} {problem}.")
    return cert


def sign_statement(key: PrivateKey, data: bytes) -> bytes:
    """``key``'s signature over ``data``: RSA PKCS#1 v1.5 or ECDSA, both with SHA-256."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def signature_valid(cert: x509.Certificate, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with ``cert``'s public key (as :func:`sign_statement`)."""
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass
class ActionAuthority:
    """The activity log's signer for one command (see the module docstring).

    Attributes:
        store: the open home.
        operator: who runs the command (``$TWCACTL_OPERATOR``).
        key: loads the operator's private key; None when no ``--operator-key`` was given.
    """

    store: Store
    operator: str
    key: KeyLoader | None
    _loaded: PrivateKey | None = None

    def __call__(self, items: list[LogItem]) -> str | None:
        """Sign ``items`` (the entries of one append) when any is a change; see the module docstring.

        Raises:
            AuthError: no key, a key that does not match the certificate, or a credential that cannot
                prove the operator (exit 4).
            StateError: the operator is not registered (exit 5).
        """
        if not any(item[1] in SIGNED_ACTIONS for item in items):
            return None
        if not self.store.operators.any_bound_manager():
            return None  # bootstrap: a new CA's first manager binds a certificate before anyone can sign
        others = sorted({item[0] for item in items} - {self.operator})
        if others:
            raise AuthError(f"operator {self.operator} cannot sign for {', '.join(others)}.")
        cert = check_operator_credential(self.store, self.operator)
        if self.key is None:
            raise AuthError(f"operator_auth is required: {self.operator}'s change must be signed.", hint=KEY_HINT)
        if self._loaded is None:
            self._loaded = self.key()
        data = statement(items)
        signature = sign_statement(self._loaded, data)
        if not signature_valid(cert, signature, data):
            raise AuthError(f"the operator key does not match the certificate of operator {self.operator}.",
                            hint="use the key of the certificate you were registered with")
        der = cert.public_bytes(Encoding.DER)
        return json.dumps({"v": SIGNATURE_VERSION, "entries": len(items), "cert": base64.b64encode(der).decode(),
                           "sig": base64.b64encode(signature).decode()}, sort_keys=True, separators=(",", ":"))


def install(store: Store, *, operator: str, key: KeyLoader | None) -> bool:
    """Make ``store``'s activity log signed by ``operator`` when ``operator_auth`` requires it.

    Returns:
        True when signing is required (and installed).
    """
    try:
        settings = store.settings()
    except InputError:  # unreadable settings: fail closed, every change must be signed
        store.log.signer = ActionAuthority(store, operator, key)
        return True
    if not auth_required(settings.operator_auth, settings.public_trust):
        return False
    store.log.signer = ActionAuthority(store, operator, key)
    store.operators.credential_check = lambda name: _check_before(store, name)
    return True


def _check_before(store: Store, operator: str) -> None:
    """The credential check run where the role is checked, before any transaction (once signing is in force)."""
    if store.operators.any_bound_manager():
        check_operator_credential(store, operator)


def load_key_file(path: str) -> PrivateKey:
    """An automation operator's key file (PEM or DER, unencrypted; issue 27: a CI job's key).

    Raises:
        InputError: unreadable or not a private key (exit 3).  AuthError: an encrypted key (exit 4).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read the operator key {path}.") from exc
    return load_private_key(data, None, name=path)


def _token_session(uri_text: str, pin: str | None, module: str | None) -> tuple[Any, Pkcs11Uri]:
    from twcactl.backends.p11 import Pkcs11Module, find_module
    from twcactl.backends.p11_uri import parse_pkcs11_uri

    uri = parse_pkcs11_uri(uri_text)
    if not uri.token or not (uri.id_hex or uri.object):
        raise UsageError("a pkcs11: operator key or certificate must name the token and the object "
                         "(token=...;id=... or token=...;object=LABEL).")
    while _OPEN_SESSIONS:  # one operator key per command; an earlier command's session is done
        _OPEN_SESSIONS.pop().close()
    session = Pkcs11Module(find_module(uri.module_path or module)).open_token(uri.token).session(pin)
    _OPEN_SESSIONS.append(session)  # the key signs through this session until the process ends
    return session, uri


def _object_id(session: Any, uri: Pkcs11Uri, kind: str) -> str:
    """The CKA_ID of the ``kind`` object ``uri`` names (by id, else by label)."""
    if uri.id_hex:
        return uri.id_hex
    found = [o for o in session.objects() if o.kind == kind and o.label == uri.object]
    if len(found) != 1:
        raise DeviceError(f"the token {uri.token!r} holds {len(found)} {kind} objects labelled {uri.object!r}.",
                          hint="name the key by its id: pkcs11:token=...;id=...")
    return str(found[0].id)


def load_token_key(uri_text: str, pin: str | None, module: str | None) -> PrivateKey:
    """The operator's key on their card or token, named by an RFC 7512 URI (``token`` and ``id`` or ``object``).

    Raises:
        UsageError: a URI without token or object (exit 2).  PinError / AuthError: PIN (exit 4).
        DeviceError: no module, token or key (exit 6).
    """
    if pin is None:
        raise AuthError("the operator key on the card needs its PIN.",
                        hint="give it with $TWCACTL_OPERATOR_PIN_SOURCE (env:NAME, file:PATH, fd:N)")
    session, uri = _token_session(uri_text, pin, module)
    return session.private_key(_object_id(session, uri, "private-key"))  # type: ignore[no-any-return]


def read_token_certificate(uri_text: str, module: str | None) -> bytes:
    """The DER certificate a PKCS#11 URI names on a card (read without the PIN): ``operator add --cert
    pkcs11:...`` registers an operator from their card.

    Raises:
        UsageError: a URI without token or object (exit 2).  DeviceError: no module, token or certificate (exit 6).
    """
    session, uri = _token_session(uri_text, None, module)
    wanted = _object_id(session, uri, "certificate")
    for obj in session.objects():
        if obj.kind == "certificate" and obj.id == wanted and obj.der:
            return bytes(obj.der)
    raise DeviceError(f"the token {uri.token!r} holds no certificate with that id.")


_OPEN_SESSIONS: list[Any] = []


# ----- log verify -----


def _bound_certificates(entries: Iterable[RawLogEntry]) -> dict[str, set[str]]:
    """operator name -> the SHA-256s of the certificates the log says it was bound to (operator.add/update)."""
    bound: dict[str, set[str]] = {}
    for entry in entries:
        if entry.action in ("operator.add", "operator.update"):
            details = json.loads(entry.details)
            if details.get("cert_sha256"):
                bound.setdefault(str(details["name"]), set()).add(str(details["cert_sha256"]))
    return bound


def _authorized_otherwise(entry: RawLogEntry) -> bool:
    """True for entries no operator signs: a subscriber's (their password), an ACME account's (its JWS and the
    signed EAB hand-out, RFC 8555 §7.3.4) and ``serve``'s own certificates (its TLS and OCSP signing ones)."""
    if entry.operator.startswith((SUBSCRIBER_PREFIX, "acme:")):
        return True
    return entry.action == "cert.issue" and '"internal":' in entry.details


def signature_problems(store: Store) -> tuple[int, list[tuple[int, str]]]:
    """Check every signature stored in the activity log, offline (``log verify``; issue 27).

    Each signature must be well formed, its certificate issued by this CA and bound to the entry's operator
    by an ``operator.add`` / ``operator.update`` entry, and it must verify over the statement re-built from
    the entries it covers, so one changed byte of a signed entry shows.  Entries of
    :data:`~twcactl.rules.operator_auth.SIGNED_ACTIONS` written while ``ca config operator_auth required``
    was in force (as the log itself says) must be signed.

    Returns:
        ``(signatures checked, [(seq, message), ...])``.
    """
    entries = list(store.log.raw())
    bound = _bound_certificates(entries)
    problems: list[tuple[int, str]] = []
    checked = 0
    covered_until = 0
    required = False
    for index, entry in enumerate(entries):
        was_required = required
        if entry.action == "ca.config":  # takes effect from the next entry on
            details = json.loads(entry.details)
            if details.get("key") == "operator_auth":
                required = details.get("new") == "required"
        if entry.signature is None:
            if was_required and entry.seq > covered_until and entry.action in SIGNED_ACTIONS \
                    and not _authorized_otherwise(entry):
                problems.append((entry.seq, f"entry {entry.seq} ({entry.action}) is not signed, but operator_auth "
                                            "was required"))
            continue
        checked += 1
        try:
            doc = json.loads(entry.signature)
            count = int(doc["entries"])
            der = base64.b64decode(doc["cert"], validate=True)
            signature = base64.b64decode(doc.get("sig", ""), validate=True)
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((entry.seq, f"entry {entry.seq}: the signature is not readable ({exc})"))
            continue
        covered = entries[index:index + count]
        covered_until = entry.seq + count - 1
        items = [(e.operator, e.action, e.account, e.serial, json.loads(e.details)) for e in covered]
        if "jws" in doc:  # a remote RA request (issue 27): the operator signed the command, not the statement
            from twcactl.authority.remote_ra import request_signature_problem

            problem = request_signature_problem(doc, entry.operator)
            if problem is None and cert_sha256(der) not in bound.get(entry.operator, set()):
                problem = f"signed with a certificate never bound to operator {entry.operator}"
            if problem is not None:
                problems.append((entry.seq, f"entry {entry.seq} ({entry.action}): {problem}"))
            continue
        if cert_sha256(der) not in bound.get(entry.operator, set()):
            problems.append((entry.seq, f"entry {entry.seq}: signed with a certificate never bound to operator "
                                        f"{entry.operator}"))
        elif _issuer_of(store, cert) is None:
            problems.append((entry.seq, f"entry {entry.seq}: the signing certificate is not issued by this CA"))
        elif len(covered) != count or not signature_valid(cert, signature, statement(items)):
            problems.append((entry.seq, f"entry {entry.seq} ({entry.action}): the operator's signature does not "
                                        "match the entry (it was changed after it was signed)"))
    return checked, problems
