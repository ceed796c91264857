"""Building certificates: leaves from CSRs, and the CA's own certificates.

Pure functions over cryptography objects: the issuer key may be a software
key or a token key (architecture.md, "A token key is a cryptography key").
The store decides serials, validity and records; this module only builds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from twcactl.errors import StateError, UsageError
from twcactl.pkix import names
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.profiles import Profile
from twcactl.rules.public_trust import is_short_lived
from twcactl.rules.times import add_years
from twcactl.rules.validity import Validity as Validity  # moved to its rule home; old imports keep working


@dataclass(frozen=True)
class CaUrls:
    """Where relying parties fetch revocation data and issuer certificates (RFC 5280 §4.2.1.13, §4.2.2.1)."""

    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    #: the CPS URI put as a policy qualifier into public-trust EV certificates (BR §7.1.2.7.9; issue 16)
    cps_url: str | None = None


#: The order BR §7.1.4.2 prescribes for subject attributes; others (the EV identity attributes) follow in
#: their own order after these.
BR_SUBJECT_ORDER: tuple[x509.ObjectIdentifier, ...] = (
    NameOID.DOMAIN_COMPONENT, NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
    NameOID.POSTAL_CODE, NameOID.STREET_ADDRESS, NameOID.ORGANIZATION_NAME, NameOID.SURNAME, NameOID.GIVEN_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.PSEUDONYM, NameOID.COMMON_NAME,
)


def br_ordered(subject: x509.Name) -> x509.Name:
    """``subject`` with its attributes in the order of BR §7.1.4.2 (a stable sort; unlisted ones last)."""
    rank = {oid: i for i, oid in enumerate(BR_SUBJECT_ORDER)}
    attrs = list(subject)
    ordered = sorted(attrs, key=lambda a: rank.get(a.oid, len(rank)))
    return subject if ordered == attrs else x509.Name(ordered)


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest a CA key signs with: SHA-384 for a P-384 key, SHA-256 otherwise (BR §7.1.3.2)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def check_within_issuer(not_after: dt.datetime, issuer: x509.Certificate) -> None:
    """Refuse a notAfter beyond the issuing CA's own (architecture.md; RFC 5280 §6 path validity).

    Raises:
        StateError: naming the issuer's notAfter (exit 5).
    """
    if not_after > issuer.not_valid_after_utc:
        raise StateError(
            f"the requested notAfter {not_after:%Y-%m-%d} is after the issuing CA's notAfter "
            f"{issuer.not_valid_after_utc:%Y-%m-%d}.",
            hint="ask for a shorter validity",
        )


def leaf_subject(csr_subject: x509.Name, profile: Profile) -> x509.Name:
    """The CSR's subject, keeping only the attributes the profile allows, in CSR order."""
    allowed = set(profile.subject_oids())
    if all(attr.oid in allowed for attr in csr_subject):
        return csr_subject  # the common case: no rebuild (and re-validation) of the Name
    return x509.Name([attr for attr in csr_subject if attr.oid in allowed])


def leaf_sans(csr: x509.CertificateSigningRequest, profile: Profile,
              csr_subject: x509.Name | None = None) -> list[x509.GeneralName]:
    """SAN entries: for SSL profiles the CN first, then the requested DNS names (no duplicates);
    for personal profiles the requested e-mail addresses.  ``csr_subject`` saves parsing the subject again."""
    requested = _requested_general_names(csr)
    if profile.is_ssl:
        out: list[x509.GeneralName] = []
        seen: set[str] = set()
        cn = names.common_name(csr_subject if csr_subject is not None else csr.subject)
        for value in ([cn] if cn else []) + [g.value for g in requested if isinstance(g, x509.DNSName)]:
            if value.lower() not in seen:
                seen.add(value.lower())
                out.append(x509.DNSName(value))
        return out
    return [g for g in requested if isinstance(g, x509.RFC822Name)]


def _requested_general_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def build_leaf(
    csr: x509.CertificateSigningRequest,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    profile: Profile,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    urls: CaUrls = CaUrls(),
    subject: x509.Name | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """Sign an end-entity certificate for ``csr`` (X.509 v3, SHA-256).

    ``subject`` and ``sans`` override what is taken from the CSR (EV adds
    subject attributes; callers that computed them pass them in).

    Extensions: basicConstraints CA:FALSE (critical), keyUsage for the key
    type (critical), EKU of the profile, SAN, SKI, AKI from the issuer's SKI,
    certificatePolicies for EV, CRL distribution point and AIA when
    configured (RFC 5280 §4.2).  The policy must have been checked already.
    """
    public_key = csr.public_key()
    if subject is None:
        subject = leaf_subject(csr.subject, profile)
    if profile.public_trust:
        subject = br_ordered(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(profile.key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(profile.ekus)), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    if not profile.public_trust:  # BR §7.1.2.7.6: a subscriber SKI is NOT RECOMMENDED
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
    if sans is None:
        sans = leaf_sans(csr, profile)
    if sans:
        # RFC 5280 §4.2.1.6: with an empty subject (certbot's CSR, a DV ACME order) the SAN is critical
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
    if profile.policies:
        cps = [urls.cps_url] if profile.level == "ev" and urls.cps_url else None
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(oid, cps) for oid in profile.policies]),
            critical=False,
        )
    if profile.public_trust and is_short_lived(not_before, not_after):  # BR §7.1.2.11.2: CRLDP optional
        urls = CaUrls(None, urls.ocsp_url, urls.ca_issuers_url)
    builder = _add_urls(builder, urls)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def build_ca_certificate(
    *,
    subject: x509.Name,
    key: PrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int,
    urls: CaUrls = CaUrls(),
    public_trust: bool = False,
) -> x509.Certificate:
    """A root (``issuer_cert`` None: self-signed) or intermediate CA certificate.

    basicConstraints CA:TRUE with ``path_length`` (critical), keyUsage
    keyCertSign, cRLSign and digitalSignature (for OCSP responses; critical),
    SKI, and AKI on intermediates (RFC 5280 §4.2.1.1, §4.2.1.9).

    With ``public_trust`` (issue 16) the certificates follow the BR profiles pkilint calls ``ROOT-CA``
    (BR §7.1.2.1: no pathLenConstraint, AKI keyIdentifier = its own SKI) and
    ``INTERNAL-UNCONSTRAINED-TLS-CA`` (BR §7.1.2.6: EKU serverAuth only, the reserved policy OIDs of the
    anyPolicy (BR §7.1.2.10.5, an Affiliate's CA), CRL Distribution Points and AIA caIssuers of its issuer from
    ``urls``).
    """
    public_key = key.public_key()
    issuer_name = subject if issuer_cert is None else issuer_cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(
            ca=True, path_length=None if public_trust and issuer_cert is None else path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(_aki(issuer_cert), critical=False)
        builder = _add_urls(builder, urls)
        if public_trust:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            # BR §7.1.2.10.5: a CA operated by the issuer itself (an Affiliate) may assert anyPolicy, which
            # covers the DV, OV and EV leaves it issues (several reserved OIDs together are an ERROR)
            builder = builder.add_extension(x509.CertificatePolicies(
                [x509.PolicyInformation(x509.oid.CertificatePoliciesOID.ANY_POLICY, None)]), critical=False)
    elif public_trust:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            public_key), critical=False)  # type: ignore[arg-type]
    return builder.sign(issuer_key, signature_hash(issuer_key))


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]


def _add_urls(builder: x509.CertificateBuilder, urls: CaUrls) -> x509.CertificateBuilder:
    if urls.crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl_url)], None, None, None)]
            ),
            critical=False,
        )
    access: list[x509.AccessDescription] = []
    if urls.ocsp_url:
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                             x509.UniformResourceIdentifier(urls.ocsp_url)))
    if urls.ca_issuers_url:
        access.append(
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(urls.ca_issuers_url))
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder


def ca_subject(common_name: str, org: str | None, country: str | None) -> x509.Name:
    """A CA subject ``C=.., O=.., CN=..`` (empty parts left out)."""
    pairs: list[tuple[str, str]] = []
    if country:
        pairs.append(("C", country))
    if org:
        pairs.append(("O", org))
    pairs.append(("CN", common_name))
    return names.build_name(pairs)


def chain_names(intermediates: int) -> list[str]:
    """The manual's file stems for a CA with ``intermediates`` levels, root first
    (domain.md §6): ``["root", "uca"]`` or ``["root", "uca_1", "uca_2"]``.

    Raises:
        UsageError: other than 1 or 2 intermediates.
    """
    if intermediates == 1:
        return ["root", "uca"]
    if intermediates == 2:
        return ["root", "uca_1", "uca_2"]
    raise UsageError("--intermediates must be 1 or 2.")


def sequence_validity(start: dt.datetime, years: Sequence[int]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Nested validity periods starting at ``start``: each CA ends no later than its issuer."""
    out: list[tuple[dt.datetime, dt.datetime]] = []
    limit: dt.datetime | None = None
    for n in years:
        end = add_years(start, n)
        if limit is not None and end > limit:
            end = limit
        out.append((start, end))
        limit = end
    return out
