"""Path validation: ``chain verify`` (RFC 5280 §6) on cryptography's verifier, revocation from CRLs.

cryptography's ``x509.verification`` (pinned to 48.x, its API is marked
unstable) builds and validates the path: signatures, validity at the chosen
time, basic constraints, path length, name constraints, the Web PKI
extension rules for CAs.  A server verifier needs a hostname; for the
other purposes (and for a server check without a hostname) a client
verifier with ``ExtensionPolicy.permit_all()`` for the end entity is used
and the key usage and extended key usage are checked here
(architecture.md, "Library facts").  It does not look at CRLs: the
revocation check against the given CRLs (issuer, signature, validity,
serial, CRL Number and critical extensions; RFC 5280 §5.2, §5.3, §6.3) is ours.

Hostile input never escapes as an exception (issue 19): every extension is
read through :mod:`twcactl.pkix.extensions` (a malformed or repeated one
is the finding ``certificate N: malformed extension X``); the verifier is
handed only the intermediates of the one path our bounded builder found
(:func:`twcactl.pkix.chain.build_path`), since on many same-subject
same-key candidates its own search runs for minutes; a name it refuses
(``ValueError``) is a verification failure; times compare at whole
seconds; library warnings become findings.

When the verifier refuses, the reason it gives is technical; we diagnose
the common cases ourselves (expired or not yet valid, wrong host, wrong
purpose, a missing issuer, an untrusted root) so the message names the
certificate and the reason.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from twcactl.errors import PolicyError, UsageError
from twcactl.models import Finding
from twcactl.pkix.chain import MAX_DEPTH, ChainPath, build_path, fingerprint, is_self_signed
from twcactl.pkix.extensions import (
    MalformedExtensionError,
    check_extensions,
    extension,
    quiet_library_warnings,
    serial_findings,
)
from twcactl.pkix.parse_errors import SIGNATURE_ERRORS, X509_EXTENSION_ERRORS, X509_LOAD_ERRORS
from twcactl.rules.serials import format_serial
from twcactl.rules.times import rfc3339, utcnow

PURPOSES = ("server", "client", "email", "any")

_EKU_FOR: dict[str, x509.ObjectIdentifier] = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "email": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}


@dataclass(frozen=True)
class RevocationStatus:
    """The CRL answer for one certificate of the path.

    Attributes:
        subject: the certificate's subject (RFC 4514).
        serial: its serial, lowercase hex.
        status: ``good``, ``revoked`` or ``unchecked`` (no CRL from its issuer given).
        crl_issuer: the issuer of the CRL used, or None.
        crl_this_update / crl_next_update: that CRL's times.
    """

    subject: str
    serial: str
    status: str
    crl_issuer: str | None = None
    crl_this_update: dt.datetime | None = None
    crl_next_update: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The contract's shape: snake_case keys, RFC 3339 times."""
        return {
            "subject": self.subject, "serial": self.serial, "status": self.status, "crl_issuer": self.crl_issuer,
            "crl_this_update": rfc3339(self.crl_this_update) if self.crl_this_update else None,
            "crl_next_update": rfc3339(self.crl_next_update) if self.crl_next_update else None,
        }


@dataclass(frozen=True)
class Verification:
    """A path that validated.

    Attributes:
        chain: leaf first, the trusted root last.
        purpose: the purpose checked (``server``, ``client``, ``email``, ``any``).
        hostname: the host name checked, or None.
        at: the validation time (UTC, whole seconds).
        revocation: one entry per certificate below the root when CRLs were given, else empty.
        findings: what is wrong but not refused (a zero or negative serial, RFC 5280 §4.1.2.2).
    """

    chain: list[x509.Certificate]
    purpose: str
    hostname: str | None
    at: dt.datetime
    revocation: list[RevocationStatus]
    findings: list[Finding] = field(default_factory=list)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _refuse(cert: x509.Certificate, reason: str, *, code: str, hint: str | None = None,
            findings: Sequence[Finding] = ()) -> PolicyError:
    with quiet_library_warnings():
        serial = format_serial(cert.serial_number)
    return PolicyError(f"{_subject(cert)}: {reason}", hint=hint, findings=findings,
                       details={"failure": {"certificate": _subject(cert), "serial": serial, "reason": code}})


def _whole(moment: dt.datetime) -> dt.datetime:
    """``moment`` at whole seconds: RFC 5280 §4.1.2.5 times have no fractions, and the verifier compares seconds."""
    return moment.replace(microsecond=0)


def _eku(cert: x509.Certificate, label: str = "certificate 0") -> list[x509.ObjectIdentifier] | None:
    value = extension(cert, x509.ExtendedKeyUsage, label)
    return None if value is None else list(value)


def _key_usage(cert: x509.Certificate, label: str = "certificate") -> x509.KeyUsage | None:
    return extension(cert, x509.KeyUsage, label)


def default_purpose(leaf: x509.Certificate) -> str:
    """The purpose a leaf is meant for, from its EKU: server, else client, else email, else ``any``.

    Raises:
        MalformedExtensionError: the leaf's extensions are malformed or repeated (exit 3).
    """
    eku = _eku(leaf) or []
    for purpose in ("server", "client", "email"):
        if _EKU_FOR[purpose] in eku:
            return purpose
    return "any"


def _check_purpose(leaf: x509.Certificate, purpose: str) -> None:
    """EKU (RFC 5280 §4.2.1.12: absent means any) and KU (§4.2.1.3) of the leaf for ``purpose``."""
    if purpose == "any":
        return
    eku = _eku(leaf)
    if eku is not None and _EKU_FOR[purpose] not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        names = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku)
        raise _refuse(leaf, f"not valid for {purpose} use (extended key usage: {names}).", code="purpose")
    ku = _key_usage(leaf, "certificate 0")
    if ku is None:
        return
    if purpose == "server":
        ok = ku.digital_signature or ku.key_encipherment or ku.key_agreement
    elif purpose == "client":
        ok = ku.digital_signature or ku.key_agreement
    else:
        ok = ku.digital_signature or ku.content_commitment or ku.key_encipherment or ku.key_agreement
    if not ok:
        raise _refuse(leaf, f"its key usage does not allow {purpose} use.", code="purpose")


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    """notBefore <= at <= notAfter, at whole seconds (RFC 5280 §4.1.2.5, §6.1.3 (a)(2))."""
    at, not_before, not_after = _whole(at), _whole(cert.not_valid_before_utc), _whole(cert.not_valid_after_utc)
    if at < not_before:
        raise _refuse(cert, f"not valid before {rfc3339(not_before)} (checked at {rfc3339(at)}).",
                      code="not-yet-valid")
    if at > not_after:
        raise _refuse(cert, f"expired on {rfc3339(not_after)} (checked at {rfc3339(at)}).", code="expired")


def _subject_for(hostname: str) -> Any:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _san_text(leaf: x509.Certificate) -> str:
    san = extension(leaf, x509.SubjectAlternativeName, "certificate 0")
    if san is None:
        return "none"
    values = [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    return ", ".join(values) or "none"


def _run_verifier(leaf: x509.Certificate, roots: Sequence[x509.Certificate], untrusted: Sequence[x509.Certificate],
                  at: dt.datetime, hostname: str | None) -> list[x509.Certificate]:
    """cryptography's validation; raises its VerificationError, or ValueError for a name it cannot take."""
    from cryptography.x509 import verification as v

    builder = v.PolicyBuilder().store(v.Store(list(roots))).time(at).max_chain_depth(MAX_DEPTH)
    if hostname is not None:
        return list(builder.build_server_verifier(_subject_for(hostname)).verify(leaf, list(untrusted)))
    builder = builder.extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(),
                                         ee_policy=v.ExtensionPolicy.permit_all())
    return list(builder.build_client_verifier().verify(leaf, list(untrusted)).chain)


def _diagnose(leaf: x509.Certificate, path: ChainPath, roots: Sequence[x509.Certificate],
              intermediates: Sequence[x509.Certificate], at: dt.datetime, hostname: str | None,
              error: Exception) -> PolicyError:
    """A message naming the certificate and the reason, for a path cryptography refused.

    ``path`` is the one :func:`build_path` found towards ``roots`` (the one the verifier was given).
    """
    from cryptography.x509 import verification as v

    for cert in [leaf, *path.cas]:
        try:
            _check_validity(cert, at)
        except PolicyError as exc:
            return exc
    if not path.complete:
        top = path.cas[-1] if path.cas else leaf
        if path.malformed:
            return _refuse(top, f"no issuer found ({path.missing_issuer}): "
                                f"{'; '.join(f.message for f in path.malformed)}.",
                           code="malformed-extension", findings=path.malformed)
        if is_self_signed(top):
            return _refuse(top, "is not a trusted root.", code="untrusted-root",
                           hint="give the root with --root, or use a CA home whose root it is")
        return _refuse(top, f"no issuer found ({path.missing_issuer}).", code="missing-issuer",
                       hint="give the intermediates with --untrusted and the root with --root")
    if hostname is not None:
        try:
            _run_verifier(leaf, roots, intermediates, at, None)
        except (v.VerificationError, ValueError):
            pass
        else:
            _check_purpose(leaf, "server")
            return _refuse(leaf, f"does not match the host name {hostname} (names: {_san_text(leaf)}).",
                           code="hostname")
    return _refuse(leaf, f"the path does not validate: {error}", code="invalid-path",
                   findings=serial_findings([leaf, *path.cas]))


#: CRL extensions this check processes or may ignore (RFC 5280 §5.2); a critical one outside it refuses the CRL
_CRL_EXTENSIONS_KNOWN = {x509.CRLNumber.oid, x509.AuthorityKeyIdentifier.oid, x509.IssuerAlternativeName.oid,
                         x509.AuthorityInformationAccess.oid, x509.FreshestCRL.oid}
#: CRL entry extensions processed (RFC 5280 §5.3.1, §5.3.2); certificateIssuer (§5.3.3, indirect CRLs) is not
_ENTRY_EXTENSIONS_KNOWN = {x509.CRLReason.oid, x509.InvalidityDate.oid}


def _crl_refusal(cert: x509.Certificate, crl: x509.CertificateRevocationList, rule: str, what: str) -> PolicyError:
    message = f"the CRL from {crl.issuer.rfc4514_string()} {what}"
    return _refuse(cert, f"{message}.", code=rule, findings=[Finding(rule, False, message)])


def _check_crl_rules(cert: x509.Certificate, crl: x509.CertificateRevocationList) -> None:
    """RFC 5280 §5.2 and §5.2.3 (CRL Number present, non-critical), §5.3 (entry extensions) for one CRL.

    Raises:
        PolicyError: ``crl-malformed`` (extensions or entries that cannot be read), ``crl-number``
            (no CRL Number, or a critical one), ``crl-extension`` (a critical extension, of the CRL or
            of an entry, this check does not process: delta CRLs, distribution-point scopes,
            indirect CRLs) (exit 1).
    """
    try:
        with quiet_library_warnings():
            extensions = list(crl.extensions)
    except X509_EXTENSION_ERRORS:
        raise _crl_refusal(cert, crl, "crl-malformed", "has extensions that cannot be read") from None
    numbers = [e for e in extensions if e.oid == x509.CRLNumber.oid]
    if not numbers:
        raise _crl_refusal(cert, crl, "crl-number", "has no CRL Number (RFC 5280 5.2.3 requires one)")
    if numbers[0].critical:
        raise _crl_refusal(cert, crl, "crl-number", "marks its CRL Number critical (RFC 5280 5.2.3: non-critical)")
    for ext in extensions:
        if ext.critical and ext.oid not in _CRL_EXTENSIONS_KNOWN:
            raise _crl_refusal(cert, crl, "crl-extension", f"has a critical extension that is not processed "
                                                           f"({getattr(ext.oid, '_name', ext.oid.dotted_string)})")
    try:
        with quiet_library_warnings():
            for entry in crl:
                for ext in entry.extensions:
                    if ext.critical and ext.oid not in _ENTRY_EXTENSIONS_KNOWN:
                        raise _crl_refusal(cert, crl, "crl-extension",
                                           f"has an entry with a critical extension that is not processed "
                                           f"({getattr(ext.oid, '_name', ext.oid.dotted_string)})")
    except (*X509_LOAD_ERRORS, *X509_EXTENSION_ERRORS):
        raise _crl_refusal(cert, crl, "crl-malformed", "has entries that cannot be read") from None


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key verifies ``crl``'s signature; a signature it cannot check is not valid."""
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except SIGNATURE_ERRORS:
        return False


def _entry_reason(entry: x509.RevokedCertificate) -> str:
    """The entry's reasonCode name (RFC 5280 §5.3.1), ``unspecified`` when absent."""
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    except x509.ExtensionNotFound:
        return "unspecified"


def check_revocation(chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList],
                     at: dt.datetime) -> list[RevocationStatus]:
    """Check every certificate of ``chain`` below its root against ``crls`` (RFC 5280 §6.3, simplified).

    For each certificate, a CRL applies when its issuer name equals the
    certificate's issuer; it must then be signed by the issuer's key, the
    issuer's key usage (if present) must allow cRLSign, and ``at`` must lie
    between thisUpdate and nextUpdate (whole seconds).  The CRL used (the
    newest) must carry a non-critical CRL Number (§5.2.3), no critical
    extension this check does not process (§5.2), and entries whose
    critical extensions it processes (§5.3: reasonCode, invalidityDate).
    The leaf must be covered by a CRL; CA certificates are checked when a
    CRL from their issuer is given.  An entry whose revocationDate is after
    ``at`` does not count.  Delta CRLs, indirect CRLs and distribution-point
    scopes are not handled (such CRLs are refused).

    Args:
        chain: leaf first, root last (as :class:`Verification` holds it).
        crls: the CRLs given.
        at: the validation time.

    Raises:
        PolicyError: a certificate is revoked; a CRL is badly signed, not yet
            valid, out of date, without a CRL Number or with one marked critical,
            with a critical extension not processed, malformed; no CRL covers
            the leaf (exit 1, the CRL rules as ``findings``).
    """
    at = _whole(at)
    statuses: list[RevocationStatus] = []
    for index, cert in enumerate(chain[:-1]):
        issuer = chain[index + 1]
        candidates = [crl for crl in crls if crl.issuer == cert.issuer]
        if not candidates:
            if index == 0:
                raise _refuse(cert, f"no CRL from its issuer {cert.issuer.rfc4514_string()} among the --crl files.",
                              code="crl-missing")
            statuses.append(RevocationStatus(_subject(cert), format_serial(cert.serial_number), "unchecked"))
            continue
        ku = _key_usage(issuer, f"certificate {index + 1}")
        if ku is not None and not ku.crl_sign:
            raise _refuse(issuer, "may not sign CRLs (key usage without cRLSign).", code="crl-issuer")
        good = [crl for crl in candidates if _crl_signed_by(crl, issuer)]
        if not good:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} has a bad signature.",
                          code="crl-signature")
        # the newest CRL decides
        crl = max(good, key=lambda c: c.last_update_utc)
        this_update = _whole(crl.last_update_utc)
        next_update = None if crl.next_update_utc is None else _whole(crl.next_update_utc)
        if this_update > at:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} is not valid before "
                                f"{rfc3339(this_update)}.", code="crl-not-yet-valid")
        if next_update is not None and next_update < at:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} is out of date "
                                f"(next update was {rfc3339(next_update)}).", code="crl-expired",
                          hint="fetch a fresh CRL (twcactl crl for a local CA)")
        _check_crl_rules(cert, crl)
        with quiet_library_warnings():
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and _whole(entry.revocation_date_utc) <= at:
            raise _refuse(cert, f"revoked on {rfc3339(entry.revocation_date_utc)} (reason: {_entry_reason(entry)}).",
                          code="revoked")
        statuses.append(RevocationStatus(_subject(cert), format_serial(cert.serial_number), "good",
                                         crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc))
    return statuses


def verify_chain(
    leaf: x509.Certificate,
    *,
    roots: Sequence[x509.Certificate],
    untrusted: Sequence[x509.Certificate] = (),
    purpose: str | None = None,
    hostname: str | None = None,
    at: dt.datetime | None = None,
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> Verification:
    """Validate ``leaf`` up to one of ``roots`` (RFC 5280 §6.1) and check it against ``crls``.

    Args:
        leaf: the end-entity certificate.
        roots: the trust anchors (self-signed CA certificates).
        untrusted: intermediates that may be used to build the path.
        purpose: ``server``, ``client``, ``email`` or ``any``; None takes
            :func:`default_purpose` of the leaf.
        hostname: a DNS name or IP address the leaf must match (server purpose only).
        at: the validation time (aware); None means now.
        crls: CRLs for the revocation check; none means no revocation check.

    Returns:
        The validated path and the revocation answers.

    Raises:
        UsageError: no roots, an unknown purpose, a host name with a non-server purpose (exit 2).
        PolicyError: the path does not validate, naming the certificate and the reason in
            ``details["failure"]`` (``certificate``, ``serial``, ``reason``: ``expired``,
            ``not-yet-valid``, ``hostname``, ``purpose``, ``missing-issuer``, ``untrusted-root``,
            ``revoked``, ``crl-*``, ``invalid-path``, ``malformed-extension``, ``invalid-name``) and,
            for the last two and the CRL rules, the rule in ``findings`` (exit 1).  A malformed or
            repeated extension of any certificate of the path is ``certificate N: malformed extension X``
            (N its depth, 0 the leaf; RFC 5280 §4.2).

    The verifier is handed only the intermediates of the path
    :func:`twcactl.pkix.chain.build_path` found towards ``roots`` (by name,
    AKI/SKI and signature; at most ``MAX_DEPTH`` of them), so its search
    stays small whatever the input; the builder is bounded by
    ``MAX_CANDIDATES``, ``MAX_STEPS`` and ``TIME_BUDGET``.  Times are
    compared at whole seconds.
    """
    if not roots:
        raise UsageError("no trusted root: give --root FILE, or use a CA home.")
    if purpose is not None and purpose not in PURPOSES:
        raise UsageError(f"unknown purpose {purpose!r}; choose one of {', '.join(PURPOSES)}.")
    when = _whole((at or utcnow()).astimezone(dt.UTC))
    try:
        with quiet_library_warnings():
            return _verify(leaf, roots, untrusted, purpose, hostname, when, crls)
    except MalformedExtensionError as exc:
        refusal = _refuse(exc.certificate, exc.finding.message + ".", code="malformed-extension",
                          findings=[exc.finding])
        refusal.details["extension"] = exc.details["extension"]
        raise refusal from exc


def _verify(leaf: x509.Certificate, roots: Sequence[x509.Certificate], untrusted: Sequence[x509.Certificate],
            purpose: str | None, hostname: str | None, when: dt.datetime,
            crls: Sequence[x509.CertificateRevocationList]) -> Verification:
    """:func:`verify_chain` after its argument checks; raises MalformedExtensionError for a malformed certificate."""
    from cryptography.x509 import verification as v

    check_extensions(leaf, "certificate 0")
    chosen = purpose or default_purpose(leaf)
    if hostname is not None and chosen != "server":
        raise UsageError(f"--hostname applies to the server purpose, not {chosen}.")
    _check_validity(leaf, when)
    if hostname is None or chosen != "server":
        _check_purpose(leaf, chosen)
    # the verifier gets only the intermediates of the one path our builder found (bounded work)
    path = build_path(leaf, [*untrusted, *roots], anchors=roots, at=when)
    root_fps = {fingerprint(r) for r in roots}
    intermediates = [c for c in path.cas if fingerprint(c) not in root_fps]
    try:
        chain = _run_verifier(leaf, roots, intermediates, when, hostname)
    except v.VerificationError as exc:
        raise _diagnose(leaf, path, roots, intermediates, when, hostname, exc) from exc
    except ValueError as exc:  # the verifier's own refusal of a name (an underscore in a DNS name)
        finding = Finding("invalid-name", False, f"certificate 0: the verifier refused a name: {exc}")
        raise _refuse(leaf, f"{finding.message} (host name {hostname})." if hostname else f"{finding.message}.",
                      code="invalid-name", findings=[finding]) from exc
    for depth, cert in enumerate(chain):
        check_extensions(cert, f"certificate {depth}")
    revocation = check_revocation(chain, crls, when) if crls else []
    return Verification(chain, chosen, hostname, when, revocation, serial_findings(chain))
