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
serial; RFC 5280 §6.3) is ours.

When the verifier refuses, the reason it gives is technical; we diagnose
the common cases ourselves (expired or not yet valid, wrong host, wrong
purpose, a missing issuer, an untrusted root) so the message names the
certificate and the reason.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from twcactl.errors import PolicyError, UsageError
from twcactl.pkix.chain import MAX_DEPTH, build_path
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
        at: the validation time (UTC).
        revocation: one entry per certificate below the root when CRLs were given, else empty.
    """

    chain: list[x509.Certificate]
    purpose: str
    hostname: str | None
    at: dt.datetime
    revocation: list[RevocationStatus]


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _refuse(cert: x509.Certificate, reason: str, *, code: str, hint: str | None = None) -> PolicyError:
    return PolicyError(f"{_subject(cert)}: {reason}", hint=hint,
                       details={"failure": {"certificate": _subject(cert), "serial": format_serial(cert.serial_number),
                                            "reason": code}})


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def default_purpose(leaf: x509.Certificate) -> str:
    """The purpose a leaf is meant for, from its EKU: server, else client, else email, else ``any``."""
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
    ku = _key_usage(leaf)
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
    if at < cert.not_valid_before_utc:
        raise _refuse(cert, f"not valid before {rfc3339(cert.not_valid_before_utc)} "
                            f"(checked at {rfc3339(at)}).", code="not-yet-valid")
    if at > cert.not_valid_after_utc:
        raise _refuse(cert, f"expired on {rfc3339(cert.not_valid_after_utc)} (checked at {rfc3339(at)}).",
                      code="expired")


def _subject_for(hostname: str) -> Any:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _san_text(leaf: x509.Certificate) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "none"
    values = [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    return ", ".join(values) or "none"


def _run_verifier(leaf: x509.Certificate, roots: Sequence[x509.Certificate], untrusted: Sequence[x509.Certificate],
                  at: dt.datetime, hostname: str | None) -> list[x509.Certificate]:
    """cryptography's validation; raises its VerificationError."""
    from cryptography.x509 import verification as v

    builder = v.PolicyBuilder().store(v.Store(list(roots))).time(at).max_chain_depth(MAX_DEPTH)
    if hostname is not None:
        return list(builder.build_server_verifier(_subject_for(hostname)).verify(leaf, list(untrusted)))
    builder = builder.extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(),
                                         ee_policy=v.ExtensionPolicy.permit_all())
    return list(builder.build_client_verifier().verify(leaf, list(untrusted)).chain)


def _diagnose(leaf: x509.Certificate, roots: Sequence[x509.Certificate], untrusted: Sequence[x509.Certificate],
              at: dt.datetime, hostname: str | None, purpose: str, error: Exception) -> PolicyError:
    """A message naming the certificate and the reason, for a path cryptography refused."""
    from cryptography.x509 import verification as v

    path = build_path(leaf, [*untrusted, *roots])
    for cert in [leaf, *path.cas]:
        try:
            _check_validity(cert, at)
        except PolicyError as exc:
            return exc
    if not path.complete:
        top = path.cas[-1] if path.cas else leaf
        return _refuse(top, f"no issuer found ({path.missing_issuer}).", code="missing-issuer",
                       hint="give the intermediates with --untrusted and the root with --root")
    root_fps = {r.fingerprint(_sha256()) for r in roots}
    chain_fps = [c.fingerprint(_sha256()) for c in path.cas]
    if not any(fp in root_fps for fp in chain_fps):
        return _refuse(path.cas[-1], "is not a trusted root.", code="untrusted-root",
                       hint="give the root with --root, or use a CA home whose root it is")
    if hostname is not None:
        try:
            _run_verifier(leaf, roots, untrusted, at, None)
        except v.VerificationError:
            pass
        else:
            _check_purpose(leaf, "server")
            return _refuse(leaf, f"does not match the host name {hostname} (names: {_san_text(leaf)}).",
                           code="hostname")
    return _refuse(leaf, f"the path does not validate: {error}", code="invalid-path")


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def check_revocation(chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList],
                     at: dt.datetime) -> list[RevocationStatus]:
    """Check every certificate of ``chain`` below its root against ``crls`` (RFC 5280 §6.3, simplified).

    For each certificate, a CRL applies when its issuer name equals the
    certificate's issuer; it must then be signed by the issuer's key, the
    issuer's key usage (if present) must allow cRLSign, and ``at`` must lie
    between thisUpdate and nextUpdate.  The leaf must be covered by a CRL;
    CA certificates are checked when a CRL from their issuer is given.  An
    entry whose revocationDate is after ``at`` does not count.  Delta CRLs,
    indirect CRLs and distribution-point scopes are not handled.

    Args:
        chain: leaf first, root last (as :class:`Verification` holds it).
        crls: the CRLs given.
        at: the validation time.

    Raises:
        PolicyError: a certificate is revoked; a CRL is badly signed, not yet
            valid or out of date; no CRL covers the leaf (exit 1).
    """
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
        ku = _key_usage(issuer)
        if ku is not None and not ku.crl_sign:
            raise _refuse(issuer, "may not sign CRLs (key usage without cRLSign).", code="crl-issuer")
        good = [crl for crl in candidates if crl.is_signature_valid(issuer.public_key())]  # type: ignore[arg-type]
        if not good:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} has a bad signature.",
                          code="crl-signature")
        # the newest CRL decides
        crl = max(good, key=lambda c: c.last_update_utc)
        if crl.last_update_utc > at:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} is not valid before "
                                f"{rfc3339(crl.last_update_utc)}.", code="crl-not-yet-valid")
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            raise _refuse(cert, f"the CRL from {cert.issuer.rfc4514_string()} is out of date "
                                f"(next update was {rfc3339(crl.next_update_utc)}).", code="crl-expired",
                          hint="fetch a fresh CRL (twcactl crl for a local CA)")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= at:
            reason = "unspecified"
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                pass
            raise _refuse(cert, f"revoked on {rfc3339(entry.revocation_date_utc)} (reason: {reason}).",
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
            ``revoked``, ``crl-*``, ``invalid-path``) (exit 1).
    """
    from cryptography.x509 import verification as v

    if not roots:
        raise UsageError("no trusted root: give --root FILE, or use a CA home.")
    chosen = purpose or default_purpose(leaf)
    if chosen not in PURPOSES:
        raise UsageError(f"unknown purpose {chosen!r}; choose one of {', '.join(PURPOSES)}.")
    if hostname is not None and chosen != "server":
        raise UsageError(f"--hostname applies to the server purpose, not {chosen}.")
    when = (at or utcnow()).astimezone(dt.UTC)
    _check_validity(leaf, when)
    if hostname is None or chosen != "server":
        _check_purpose(leaf, chosen)
    try:
        chain = _run_verifier(leaf, roots, untrusted, when, hostname)
    except v.VerificationError as exc:
        raise _diagnose(leaf, roots, untrusted, when, hostname, chosen, exc) from exc
    revocation = check_revocation(chain, crls, when) if crls else []
    return Verification(chain, chosen, hostname, when, revocation)
