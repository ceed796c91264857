"""Pre-issuance linting (BR §4.3.1.2, ballot SC-075; issue 26).

Before the CA key signs a certificate, the same certificate (same serial, names, extensions and validity) is
signed with a throw-away key of the CA key's type and linted with pkilint: the CA/Browser Forum server-auth
linter for a public-trust TLS certificate, the RFC 5280 (PKIX) linter for any other.  A finding of severity
ERROR or FATAL refuses issuance with rule ``lint.pre_issuance`` (the findings in the error document), so a
certificate that breaks the BR is never signed by the CA key and never charged.

The throw-away key is made once per process and key type (it signs nothing that leaves this module), and
pkilint's validators once per certificate type: building them costs about 20 times linting one certificate
(bench/prelint_bench.py: about 11 ms per certificate after the first).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from twcactl.errors import PolicyError, StateError
from twcactl.models import Finding
from twcactl.pkix.keys import PrivateKey

RULE = "lint.pre_issuance"
_LOCK = threading.Lock()
REFUSING = ("FATAL", "ERROR")


@dataclass(frozen=True)
class LintFinding:
    """One pkilint finding: its severity name, its code, where in the certificate and its message."""

    severity: str
    code: str
    path: str
    message: str


@functools.cache
def _throwaway(kind: str, size: int) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[size]
    return ec.generate_private_key(curve)


def throwaway_key_like(issuer_cert: x509.Certificate) -> PrivateKey:
    """A throw-away private key of the type and size of ``issuer_cert``'s key (RSA or EC).

    Raises:
        StateError: the CA key is of a type pre-issuance linting cannot mirror (exit 5).
    """
    public = issuer_cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return _throwaway("rsa", public.key_size)
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size in (256, 384, 521):
        return _throwaway("ec", public.curve.key_size)
    raise StateError("pre-issuance linting needs an RSA or EC (P-256, P-384, P-521) CA key.")


@functools.cache
def _serverauth_validator(kind: Any) -> tuple[Any, Any]:
    """pkilint's CA/B server-auth validator and finding filters for one certificate type, made once (building
    them costs more than linting one certificate)."""
    from pkilint.cabf import serverauth as cabf
    from pkilint.pkix import certificate

    validator = certificate.create_pkix_certificate_validator_container(
        cabf.create_decoding_validators(), cabf.create_validators(kind))
    return validator, cabf.create_serverauth_finding_filters(kind)


@functools.cache
def _pkix_validator() -> Any:
    """pkilint's RFC 5280 certificate validator, made once."""
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [certificate.create_issuer_validator_container([]), certificate.create_validity_validator_container(),
         certificate.create_subject_validator_container([]), certificate.create_extensions_validator_container([]),
         certificate.create_spki_validator_container([])])


def lint_certificate(der: bytes, *, serverauth: bool) -> list[LintFinding]:
    """Every pkilint finding for the certificate ``der``: the CA/B server-auth linter (its own finding filters
    applied, as its console script does) when ``serverauth``, else the RFC 5280 linter."""
    from pkilint import finding_filter, loader

    cert = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "pre-issuance")
    if serverauth:
        from pkilint.cabf import serverauth as cabf

        validator, filters = _serverauth_validator(cabf.determine_certificate_type(cert))
        with _LOCK:  # one validator object serves every thread of `twcactl serve`
            results, _ = finding_filter.filter_results(filters, validator.validate(cert.root))
    else:
        with _LOCK:
            results = _pkix_validator().validate(cert.root)
    return [LintFinding(d.finding.severity.name, d.finding.code, str(r.node.path), d.message or "")
            for r in results for d in r.finding_descriptions]


def lint_before_signing(build: Callable[[PrivateKey], x509.Certificate], issuer_cert: x509.Certificate, *,
                        serverauth: bool, name: str) -> list[LintFinding]:
    """Build the certificate with a throw-away key (``build(key)`` must make exactly the certificate the CA
    key would sign) and lint it.

    Returns:
        The findings below ERROR (warnings, notices), for the record.

    Raises:
        PolicyError: an ERROR or FATAL finding (exit 1, rule ``lint.pre_issuance``, one finding per pkilint
            finding); nothing was signed with the CA key.
    """
    draft = build(throwaway_key_like(issuer_cert))
    found = lint_certificate(draft.public_bytes(serialization.Encoding.DER), serverauth=serverauth)
    bad = [f for f in found if f.severity in REFUSING]
    if bad:
        findings = tuple(Finding(RULE, False, f"{f.severity} {f.code} at {f.path}" + (f": {f.message}" if f.message
                                                                                      else "")) for f in bad)
        raise PolicyError(f"{name}: {RULE}: the certificate would break its profile ({bad[0].code}); nothing was "
                          "signed (BR 4.3.1.2)", findings=findings,
                          details={"lint": [f.__dict__ for f in bad]})
    return [f for f in found if f.severity not in REFUSING]
