"""Smart-card workflows over the PKCS#11 adapter (domain.md §8).

Pure logic: no click, no printing, no environment.  Sessions and keys come
from ``twcactl.backends.p11``; certificates come back from a callable the
CLI supplies (the local CA, or nothing when a CSR / request is written for
an outside CA).  Every workflow that generates keys deletes them again when
anything after the generation fails, so a failed enrolment or renewal
leaves the card as it was: the old key and certificate stay usable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from twcactl.backends import TokenInfo, TokenObject
from twcactl.errors import PolicyError, StateError, TwcaError, UsageError
from twcactl.pkix.cms_request import build_renewal_request
from twcactl.pkix.parse_errors import X509_EXTENSION_ERRORS, X509_LOAD_ERRORS
from twcactl.rules.pin import must_change_message, new_pin_problem
from twcactl.rules.pin import pin_warnings as pin_warnings  # re-exported: card status, verify-pin
from twcactl.rules.serials import format_serial

if TYPE_CHECKING:
    from twcactl.backends.p11 import TokenECPrivateKey, TokenRSAPrivateKey

    TokenKey = TokenRSAPrivateKey | TokenECPrivateKey

class SessionLike(Protocol):
    """What the workflows need from an open token session (``P11Session``)."""

    def objects(self) -> list[TokenObject]: ...
    def private_key(self, id_hex: str) -> TokenKey: ...
    def generate_key_pair(self, key_type: str, *, label: str, encryption: bool = False,
                          id_hex: str | None = None) -> TokenKey: ...
    def write_certificate(self, cert: x509.Certificate, *, label: str, id_hex: str) -> None: ...
    def destroy(self, id_hex: str, *, kinds: Sequence[str] = ...) -> int: ...


def check_new_pin(new_pin: str, *, current: str | None = None) -> None:
    """Check a new user PIN before the card is touched, so a typo never costs a try.

    The rules and their wording live in :func:`twcactl.rules.pin.new_pin_problem`
    (domain.md §8: 6 to 16 characters, not the PIN letter's default, not the
    current PIN).  A token with a narrower range refuses the PIN itself
    (CKR_PIN_LEN_RANGE, exit 1, never retried).

    Raises:
        PolicyError: a rule is broken (exit 1); the message never contains the PIN.
    """
    problem = new_pin_problem(new_pin, current=current)
    if problem is not None:
        raise PolicyError(problem)


def require_pin_usable(info: TokenInfo, *, for_what: str) -> None:
    """Refuse key work while the token wants its PIN changed (domain.md §8: change it at first use).

    Raises:
        StateError: the token's USER_PIN_TO_BE_CHANGED flag is set (exit 5).
    """
    if info.pin.to_be_changed:
        message, hint = must_change_message(for_what)
        raise StateError(message, hint=hint)


# --------------------------------------------------------------------------
# Enrolment


@dataclass(frozen=True)
class KeySpec:
    """One key to enrol: the profile its certificate gets, its label, key type, and whether it decrypts."""

    profile: str
    label: str
    key_type: str = "rsa2048"
    encryption: bool = False


@dataclass
class PendingKey:
    """A key generated on the token and its CSR, waiting for a certificate."""

    spec: KeySpec
    id_hex: str
    csr: x509.CertificateSigningRequest


def build_token_csr(key: object, subject: x509.Name,
                    sans: Sequence[x509.GeneralName]) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for ``subject`` and ``sans`` signed on the token (SHA-256)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def generate_pending(session: SessionLike, specs: Sequence[KeySpec], subject: x509.Name,
                     sans_for: Callable[[KeySpec], Sequence[x509.GeneralName]]) -> list[PendingKey]:
    """Generate one key pair per spec on the token and a CSR for each; all or none.

    Raises:
        whatever the token raises; keys made before the failure are deleted first.
    """
    pending: list[PendingKey] = []
    try:
        for spec in specs:
            key = session.generate_key_pair(spec.key_type, label=spec.label, encryption=spec.encryption)
            # Recorded before the CSR is built, so a failing build still deletes the key.
            item = PendingKey(spec=spec, id_hex=key.id_hex, csr=None)  # type: ignore[arg-type]
            pending.append(item)
            item.csr = build_token_csr(key, subject, sans_for(spec))
    except BaseException:
        discard(session, pending)
        raise
    return pending


def discard(session: SessionLike, pending: Sequence[PendingKey]) -> None:
    """Delete the keys (and any certificate already written) of ``pending``; errors are swallowed
    so the original failure is the one reported."""
    for item in pending:
        try:
            session.destroy(item.id_hex)
        except TwcaError:  # best effort cleanup (DeviceError) while another error propagates
            continue


def _write_returned(session: SessionLike, keys: Sequence[tuple[x509.CertificateSigningRequest, str, str]],
                    certificates: Sequence[x509.Certificate]) -> None:
    """Write each returned certificate next to the key its CSR was made with (same CKA_ID and label),
    after checking that every certificate is for its key: nothing is written unless all match.

    Args:
        keys: ``(csr, label, id_hex)`` per key generated on the card, in request order.

    Raises:
        PolicyError: a different number of certificates, or one for another key (exit 1).
    """
    if len(certificates) != len(keys):
        raise PolicyError(f"{len(certificates)} certificate(s) came back for {len(keys)} key(s).")
    for (csr, _label, _id), cert in zip(keys, certificates):
        if _spki(cert.public_key()) != _spki(csr.public_key()):
            raise PolicyError("a certificate that came back is not for the key generated on the card.")
    for (_csr, label, id_hex), cert in zip(keys, certificates):
        session.write_certificate(cert, label=label, id_hex=id_hex)


def install(session: SessionLike, pending: Sequence[PendingKey], certificates: Sequence[x509.Certificate]) -> None:
    """Write each certificate next to its key (same CKA_ID and label); checks each matches its key.

    Raises:
        PolicyError: a certificate's public key is not the pending key's (exit 1).
    """
    _write_returned(session, [(item.csr, item.spec.label, item.id_hex) for item in pending], certificates)


def enroll(session: SessionLike, specs: Sequence[KeySpec], subject: x509.Name,
           sans_for: Callable[[KeySpec], Sequence[x509.GeneralName]],
           issue: Callable[[Sequence[PendingKey]], Sequence[x509.Certificate]] | None) -> list[PendingKey]:
    """Generate keys on the card, make their CSRs and, with ``issue``, install the certificates.

    ``issue`` gets every pending key at once (a ``--pair`` is both or
    neither) and returns one certificate per key, in order.  Without it the
    keys stay on the card with no certificate, for ``card import-cert``.
    Any failure after the keys exist deletes them (and certificates already
    written), then re-raises.
    """
    pending = generate_pending(session, specs, subject, sans_for)
    if issue is None:
        return pending
    try:
        install(session, pending, issue(pending))
    except BaseException:
        discard(session, pending)
        raise
    return pending


#: The two keys of a personal holder (domain.md §7): a signing and an encryption certificate, both or neither.
_PAIR = (("user-sign", "sign", False), ("user-enc", "enc", True))


@dataclass(frozen=True)
class EnrolmentPlan:
    """What ``card enroll`` puts on the card, decided before the card is touched.

    Attributes:
        specs: the keys to make, in order (one, or the signing + encryption pair).
        subject_pairs: the subject as ``(short name, value)`` pairs, C first, CN last.
        subject: the same as an ``x509.Name``.
        sans: the subjectAltName values as given (e-mail addresses or DNS names, by profile).
    """

    specs: tuple[KeySpec, ...]
    subject_pairs: tuple[tuple[str, str], ...]
    subject: x509.Name
    sans: tuple[str, ...]

    @property
    def cn(self) -> str:
        """The subject's CN (``card enroll`` requires one)."""
        return next((v for n, v in self.subject_pairs if n == "CN"), "")

    def sans_for(self, spec: KeySpec) -> list[x509.GeneralName]:
        """The SAN entries of ``spec``'s request: for the SSL profiles the CN then each SAN as a DNS name
        (duplicates dropped), for the personal profiles each SAN as an e-mail address (domain.md §2, §7)."""
        from twcactl.rules.vocab import SSL_PROFILES

        if spec.profile in SSL_PROFILES:
            return [x509.DNSName(n) for n in dict.fromkeys((self.cn, *self.sans))]
        return [x509.RFC822Name(s) for s in self.sans]


def plan_enrolment(subject: Mapping[str, Sequence[str]], *, sans: Sequence[str], profile: str, pair: bool,
                   key_type: str, label: str | None) -> EnrolmentPlan:
    """Which keys, which profiles, which subject and SANs an enrolment makes (domain.md §7-§8).

    Args:
        subject: short name -> values, as :func:`twcactl.csr.subject_options` gives them (a CN is expected).
        sans: subjectAltName values, printable ASCII.
        profile: the certificate profile of a single key (a ``vocab.PROFILES`` name); with ``pair`` it
            must be left at ``user-sign``.
        pair: enrol ``user-sign`` and ``user-enc`` keys (labels ``LABEL sign`` / ``LABEL enc``).
        key_type: a ``vocab.KEY_TYPES`` name, for every key.
        label: CKA_LABEL of the key and its certificate (default: the profile name).

    Raises:
        UsageError: ``pair`` with another profile, a subject value or SAN that is not printable
            ASCII, a C that is not two letters, or a subject cryptography refuses (exit 2).
    """
    from twcactl.csr import RequestSpec
    from twcactl.policy.checks import printable_problem

    if pair and profile != "user-sign":
        raise UsageError("--pair enrols user-sign and user-enc; do not give another --profile.")
    spec = RequestSpec().override(subject=subject)
    spec.check_values()
    pairs = tuple(spec.subject)
    built = subject_from_options(pairs)
    for san in sans:
        problem = printable_problem(san)
        if problem:
            raise UsageError(f"--san: {problem}.")
    if pair:
        specs = tuple(KeySpec(p, f"{label} {suffix}" if label else p, key_type, enc) for p, suffix, enc in _PAIR)
    else:
        specs = (KeySpec(profile, label or profile, key_type, profile == "user-enc"),)
    return EnrolmentPlan(specs, pairs, built, tuple(sans))


def readable_certificates(objects: Sequence[TokenObject]) -> tuple[list[tuple[TokenObject, x509.Certificate]],
                                                                    list[TokenObject]]:
    """The certificate objects on a card, parsed, in token order (``card register``: every one, CA
    certificates and those without a key included), and the objects that are not readable X.509.

    Returns:
        ``(readable (object, certificate) pairs, unreadable objects)``.
    """
    readable: list[tuple[TokenObject, x509.Certificate]] = []
    unreadable: list[TokenObject] = []
    for obj in objects:
        if obj.kind != "certificate" or not obj.der:
            continue
        try:
            readable.append((obj, x509.load_der_x509_certificate(obj.der)))
        except X509_LOAD_ERRORS:
            unreadable.append(obj)
    return readable, unreadable


# --------------------------------------------------------------------------
# Renewal


@dataclass(frozen=True)
class CardCertificate:
    """A certificate on the card with a private key of the same CKA_ID."""

    label: str
    id_hex: str
    certificate: x509.Certificate
    key_type: str | None

    @property
    def serial(self) -> str:
        """The serial as the contract prints it (lowercase hex)."""
        return format_serial(self.certificate.serial_number)


def card_certificates(objects: Sequence[TokenObject], *, with_keys: bool = True) -> list[CardCertificate]:
    """End-entity certificates on the card, each with its key's ID; newest notAfter first.

    With ``with_keys`` only certificates whose CKA_ID matches a private key
    are returned (the private keys are only listed in a logged-in session).
    """
    key_ids = {o.id for o in objects if o.kind == "private-key"}
    out: list[CardCertificate] = []
    for obj in objects:
        if obj.kind != "certificate" or not obj.der:
            continue
        if with_keys and obj.id not in key_ids:
            continue
        try:
            cert = x509.load_der_x509_certificate(obj.der)
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            if bc.ca:
                continue
        except x509.ExtensionNotFound:
            pass
        except (*X509_LOAD_ERRORS, *X509_EXTENSION_ERRORS):  # a token object twcactl cannot read is skipped
            continue
        out.append(CardCertificate(label=obj.label, id_hex=obj.id, certificate=cert, key_type=obj.key_type))
    out.sort(key=lambda c: c.certificate.not_valid_after_utc, reverse=True)
    return out


def renewal_targets(objects: Sequence[TokenObject], *, label: str | None = None) -> list[CardCertificate]:
    """The certificates ``card renew`` renews: the newest per label (all labels, or ``label``).

    Raises:
        StateError: nothing to renew (exit 5).
    """
    chosen: dict[str, CardCertificate] = {}
    for cc in card_certificates(objects):
        if label is not None and cc.label != label:
            continue
        chosen.setdefault(cc.label, cc)
    if not chosen:
        where = f" labelled {label!r}" if label else ""
        raise StateError(f"the card holds no certificate{where} with its private key to renew.",
                         hint="enrol one first: twcactl card enroll")
    return list(chosen.values())


@dataclass
class PendingRenewal:
    """A new key on the card, its CSR, and the CMS request signed with the old key."""

    old: CardCertificate
    new_id_hex: str
    csr: x509.CertificateSigningRequest
    request_der: bytes


def _same_key_type(old: CardCertificate, requested: str | None) -> str:
    if requested:
        return requested
    public = old.certificate.public_key()
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ec-p384" if public.curve.key_size == 384 else "ec-p256"
    if isinstance(public, rsa.RSAPublicKey) and public.key_size in (3072, 4096):
        return f"rsa{public.key_size}"
    return "rsa2048"


def _old_sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _is_encryption(cert: x509.Certificate) -> bool:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bool(ku.key_encipherment or ku.key_agreement or ku.data_encipherment) and not ku.digital_signature


def renew(session: SessionLike, targets: Sequence[CardCertificate], *, key_type: str | None,
          submit: Callable[[Sequence[PendingRenewal]], Sequence[x509.Certificate]] | None,
          keep_old: bool = False) -> list[PendingRenewal]:
    """Renew on the card (domain.md §8): new key pairs, CSRs with the old subject and SANs, each
    wrapped in a CMS request signed with the OLD card key; then, with ``submit``, install the new
    certificates and (unless ``keep_old``) delete the old keys and certificates.

    ``submit`` gets every request at once (a pair renews both or neither) and
    returns one certificate per request, in order.  Without it the new keys
    stay on the card, certificate-less, for ``card import-cert``.  Any failure
    after a new key exists deletes the new keys and leaves the old key and
    certificate untouched.
    """
    made: list[PendingRenewal] = []
    try:
        for old in targets:
            old_key = session.private_key(old.id_hex)
            new_key = session.generate_key_pair(_same_key_type(old, key_type), label=old.label,
                                                encryption=_is_encryption(old.certificate))
            item = PendingRenewal(old=old, new_id_hex=new_key.id_hex, csr=None, request_der=b"")  # type: ignore[arg-type]
            made.append(item)
            item.csr = build_token_csr(new_key, old.certificate.subject, _old_sans(old.certificate))
            item.request_der = build_renewal_request(item.csr, old.certificate, old_key)
        if submit is None:
            return made
        certificates = submit(made)
        _write_returned(session, [(item.csr, item.old.label, item.new_id_hex) for item in made], certificates)
    except BaseException:
        for item in made:
            try:
                session.destroy(item.new_id_hex)
            except TwcaError:  # best effort (DeviceError); the original error is the one to report
                continue
        raise
    if not keep_old:
        for item in made:
            session.destroy(item.old.id_hex)
    return made


# --------------------------------------------------------------------------
# Import and registration


def key_for_certificate(objects: Sequence[TokenObject], cert: x509.Certificate) -> TokenObject:
    """The key object on the card whose public key is ``cert``'s (private key preferred).

    Raises:
        StateError: no key on the card matches (exit 5).
    """
    wanted = _spki(cert.public_key())
    matches = [o for o in objects if o.kind in ("private-key", "public-key") and o.public_der == wanted]
    matches.sort(key=lambda o: o.kind != "private-key")
    if not matches:
        raise StateError("no key on the card matches this certificate.",
                         hint="import the certificate into the card whose key made the CSR")
    return matches[0]


def import_certificate(session: SessionLike, cert: x509.Certificate, *, label: str | None = None) -> TokenObject:
    """Write ``cert`` next to its key on the card (same CKA_ID; the key's label unless ``label``).

    Raises:
        StateError: no matching key, or the certificate is already on the card (exit 5).
    """
    objects = session.objects()
    der = cert.public_bytes(serialization.Encoding.DER)
    if any(o.kind == "certificate" and o.der == der for o in objects):
        raise StateError("this certificate is already on the card.")
    key = key_for_certificate(objects, cert)
    session.write_certificate(cert, label=label or key.label, id_hex=key.id)
    return key


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def subject_from_options(pairs: Sequence[tuple[str, str]]) -> x509.Name:
    """An ``x509.Name`` from ``(short_name, value)`` pairs (as ``csr new`` takes them).

    Raises:
        UsageError: cryptography refuses a value (exit 2).
    """
    from twcactl.pkix.names import build_name

    try:
        return build_name(pairs)
    except ValueError as exc:
        raise UsageError(f"cannot build the subject: {exc}.") from exc
