"""Several issuing CAs under one root (issue 25; docs/hierarchy.md): ``ca issuer add / list / activate /
retire / revoke``.

The root stays; issuing CAs come and go (key compromise, an algorithm or policy change, one nearing its
end).  Exactly one issuing CA is *active*: new certificates, renewals, card enrolments and ACME orders come
from it.  The others keep their certificates: each record names its own issuer (``certificates.ca_name``),
and CRLs, OCSP answers, bundles and ACME chains follow it.  A *retired* CA issues no more but its CRL and
OCSP go on; a *revoked* one is listed on its issuer's (the root's) CRL, signed with the root key at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.home import load_ca_key
from twcactl.authority.lifecycle import sign_ca_crl, write_current_crl
from twcactl.errors import StateError, UsageError
from twcactl.fsutil import write_file
from twcactl.issue import CaUrls, build_ca_certificate, ca_subject
from twcactl.pkix import names
from twcactl.pkix.crl import parse_reason
from twcactl.pkix.keys import PrivateKey, private_key_pem
from twcactl.rules import publication
from twcactl.rules.serials import format_serial
from twcactl.rules.times import add_years, rfc3339, utcnow
from twcactl.rules.vocab import HOLD_REASON, KEY_TYPES
from twcactl.store import CaRecord, Store

PassphraseProvider = Callable[[], "str | None"]

#: An issuing CA's name: it becomes a file name and a URL path (``/crl/NAME.crl``, ``/ca/NAME.cer``).
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: Reasons an issuing CA is not revoked for: a hold is for subscribers (domain.md §5), removeFromCRL for deltas.
_NOT_FOR_CAS = (HOLD_REASON, "removeFromCRL")


@dataclass(frozen=True)
class IssuerView:
    """One CA of the hierarchy as ``ca issuer list`` shows it (``--json``: :meth:`to_json`)."""

    ca: CaRecord
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """``{"name", "state", "issuer", "subject", "serial", "not_before", "not_after", "certificates":
        {"total", "unexpired", "revoked"}, "retired_at", "revoked_at", "reason", "key_store"}`` (times RFC 3339)."""
        cert = self.ca.certificate()
        return {"name": self.ca.name, "state": self.ca.state, "issuer": self.ca.issuer,
                "subject": cert.subject.rfc4514_string(), "serial": format_serial(cert.serial_number),
                "not_before": rfc3339(cert.not_valid_before_utc), "not_after": rfc3339(cert.not_valid_after_utc),
                "certificates": dict(self.counts), "retired_at": self.ca.retired_at,
                "revoked_at": self.ca.revoked_at, "reason": self.ca.reason,
                "key_store": "pkcs11" if self.ca.key_uri else "file"}


def list_issuers(store: Store) -> list[IssuerView]:
    """Every CA of the home, root first, with its state and certificate counts."""
    counts = store.certificates.counts_by_ca(utcnow())
    return [IssuerView(ca, counts.get(ca.name, {"total": 0, "unexpired": 0, "revoked": 0}))
            for ca in store.cas.all()]


def _root(store: Store) -> CaRecord:
    for ca in store.cas.all():
        if ca.issuer is None and ca.position == 0:
            return ca
    raise StateError("this CA home has no root CA.")


def _unlock(store: Store, ca: CaRecord, passphrase: PassphraseProvider) -> PrivateKey:
    encrypted = store.ca_key_encrypted
    return load_ca_key(ca, passphrase() if encrypted or ca.key_uri else None, encrypted=encrypted)


def _issuing_ca(store: Store, name: str) -> CaRecord:
    """CA ``name``, which must be an issuing CA (not the root, not a CA between it and the issuing CAs).

    Raises:
        NotFoundError: no such CA (exit 5).  StateError: the root or a middle CA (exit 5).
    """
    ca = store.cas.by_name(name)
    if ca.state in ("root", "intermediate"):
        raise StateError(f"CA {name} is the {ca.state} CA, not an issuing CA.")
    return ca


@dataclass(frozen=True)
class NewIssuer:
    """``ca issuer add`` options: the name, key type, validity in years, and a token for the key (``key_uri``,
    RFC 7512, with ``pkcs11_module``)."""

    name: str
    key_type: str = "rsa2048"
    years: int = 10
    key_uri: str | None = None
    pkcs11_module: str | None = None


def add_issuer(store: Store, opts: NewIssuer, *, operator: str, passphrase: PassphraseProvider,
               root_passphrase: PassphraseProvider | None = None) -> CaRecord:
    """Make a new issuing CA signed by the root (ready, not yet active), with its key in a file (encrypted
    with ``passphrase``, like the home's other keys) or on a token, and publish its first (empty) CRL.
    ``root_passphrase`` unlocks the root key when it has a passphrase of its own (an offline root; default
    ``passphrase``).

    Its certificate carries the root's CRL and certificate URLs (:func:`twcactl.rules.publication.
    ca_certificate_urls`), the BR ``INTERNAL-UNCONSTRAINED-TLS-CA`` profile in public-trust mode, and runs
    ``years`` years, never past the root.

    Raises:
        UsageError: a bad name or key type, a validity under one year (exit 2).  StateError: not a manager, the
            name is taken (exit 5).  AuthError / PinError: the passphrase or PIN (exit 4).
    """
    store.operators.require_manager(operator)
    if not NAME_RE.match(opts.name):
        raise UsageError(f"an issuing CA's name is 1-32 lower-case letters, digits, - or _, starting with a "
                         f"letter (it names crl/NAME.crl and ca/NAME.cer), not {opts.name!r}.")
    if opts.key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type; choose one of {', '.join(KEY_TYPES)}.")
    if not 1 <= opts.years <= 100:
        raise UsageError("an issuing CA runs 1 to 100 years.")
    if opts.name in {ca.name for ca in store.cas.all()}:
        raise StateError(f"this home already has a CA named {opts.name}.")
    root = _root(store)
    root_cert = root.certificate()
    settings = store.settings()
    now = utcnow()
    not_after = min(add_years(now, opts.years), root_cert.not_valid_after_utc)
    base = (names.common_name(root_cert.subject) or "twcactl").removesuffix(" Root CA")
    org = root_cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    country = root_cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
    subject = ca_subject(f"{base} Issuing CA {opts.name}", str(org[0].value) if org else None,
                         str(country[0].value) if country else None)
    found = publication.ca_certificate_urls(base_url=settings.base_url, crl_url=settings.crl_url, issuer=root.name)
    with _key_maker(opts, passphrase, base) as maker:
        root_key = _root_key(store, root, root_passphrase or passphrase, maker)
        key = maker.new_key(opts.name, opts.key_type)
        cert = build_ca_certificate(subject=subject, key=key, issuer_cert=root_cert, issuer_key=root_key,
                                    serial=x509.random_serial_number(), not_before=now, not_after=not_after,
                                    path_length=0, urls=CaUrls(crl_url=found.crl_url,
                                                               ca_issuers_url=found.ca_issuers_url),
                                    public_trust=bool(settings.public_trust))
        maker.finish([opts.name], [cert])
        place = (maker.places or {}).get(opts.name)
        record = _record_new_issuer(store, opts.name, cert, key, place, passphrase, operator=operator, now=now)
    write_current_crl(store, opts.name)
    return record


def _key_maker(opts: NewIssuer, passphrase: PassphraseProvider, label_base: str) -> Any:
    """Where the new issuing CA's key is made: in memory (then a file), or on the token of ``opts.key_uri``."""
    if not opts.key_uri:
        from twcactl.authority.home import _FileKeys

        return _FileKeys()
    from twcactl.authority.token_keys import TokenKeyMaker

    return TokenKeyMaker(opts.key_uri, opts.pkcs11_module, passphrase(), label_base=label_base, names=[opts.name])


def _root_key(store: Store, root: CaRecord, passphrase: PassphraseProvider, maker: Any) -> PrivateKey:
    """The root's key, unlocked.  When it is on the token the new key is made on, it is taken from the maker's
    session: opening a second session would re-initialise the module and end the maker's.

    Raises:
        StateError: the token's key is not the root certificate's (exit 5).  AuthError / PinError (exit 4).
    """
    session = getattr(maker, "session", None)
    if root.key_uri is None or session is None:
        return _unlock(store, root, passphrase)
    from twcactl.authority.home import key_matches_certificate
    from twcactl.backends.p11_uri import parse_pkcs11_uri

    uri = parse_pkcs11_uri(root.key_uri)
    if uri.token != maker.uri.token or uri.id_hex is None:
        return _unlock(store, root, passphrase)
    key: PrivateKey = session.private_key(uri.id_hex)
    if not key_matches_certificate(key.public_key(), root.certificate()):
        raise StateError("the token key of the root does not belong to its certificate; refusing to sign with it.")
    return key


def _record_new_issuer(store: Store, name: str, cert: x509.Certificate, key: PrivateKey, place: str | None,
                       passphrase: PassphraseProvider, *, operator: str, now: dt.datetime) -> CaRecord:
    """Write the key file (unless on a token) and the certificate, then record the CA, its first CRL and the
    log entry in one transaction; the files are removed again when the transaction fails."""
    key_path = store.private_dir / f"{name}.key"
    cert_path = store.ca_dir / f"{name}.cer"
    written = []
    try:
        if place is None:
            secret = passphrase() if store.ca_key_encrypted else None
            write_file(key_path, private_key_pem(key, secret), mode=0o600)
            written.append(key_path)
        write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        written.append(cert_path)
        with store.transaction():
            store.cas.add(name=name, position=store.cas.next_position(), issuing=False,
                          subject=cert.subject.rfc4514_string(), serial=format_serial(cert.serial_number),
                          not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                          cert_file=f"ca/{name}.cer", key_file=place or f"ca/private/{name}.key",
                          der=cert.public_bytes(serialization.Encoding.DER), issuer=_root(store).name)
            record = store.cas.by_name(name)
            store.log.append(operator=operator, action="ca.issuer.add", details={
                "name": name, "subject": cert.subject.rfc4514_string(), "serial": format_serial(cert.serial_number),
                "not_after": rfc3339(cert.not_valid_after_utc), "key_store": "pkcs11" if place else "file"})
            sign_ca_crl(store, record, key, now)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return record


def activate_issuer(store: Store, name: str, *, operator: str) -> CaRecord:
    """Make ``name`` the active issuing CA: new certificates, renewals, card enrolments and ACME orders come
    from it.  The one active before becomes ready again (``ca issuer retire`` retires it).

    Raises:
        NotFoundError / StateError: no such CA, the root, revoked or expired, not a manager (exit 5).
    """
    store.operators.require_manager(operator)
    ca = _issuing_ca(store, name)
    if ca.state == "revoked":
        raise StateError(f"CA {name} is revoked; it never issues again.")
    if ca.certificate().not_valid_after_utc <= utcnow():
        raise StateError(f"CA {name} has expired.")
    before = store.cas.issuing().name
    with store.transaction():
        store.cas.set_active(name)
        store.log.append(operator=operator, action="ca.issuer.activate", details={"name": name, "before": before})
    return store.cas.by_name(name)


def retire_issuer(store: Store, name: str, *, operator: str) -> CaRecord:
    """Retire ``name``: it issues no more; its CRL and OCSP answers go on for its certificates.

    Raises:
        StateError: the active CA (activate another first), the root, already revoked, not a manager (exit 5).
    """
    store.operators.require_manager(operator)
    ca = _issuing_ca(store, name)
    if ca.state == "active":
        raise StateError(f"CA {name} is the active issuing CA.", hint="activate another first: "
                         "twcactl ca issuer activate NAME")
    if ca.state == "revoked":
        raise StateError(f"CA {name} is revoked.")
    with store.transaction():
        store.cas.retire(name, utcnow())
        store.log.append(operator=operator, action="ca.issuer.retire", details={"name": name})
    return store.cas.by_name(name)


def revoke_issuer(store: Store, name: str, *, reason: str, operator: str,
                  passphrase: PassphraseProvider) -> tuple[CaRecord, x509.CertificateRevocationList]:
    """Revoke issuing CA ``name`` for an RFC 5280 ``reason`` and sign its issuer's (the root's) new CRL listing
    it, with the root key (``passphrase``: the root key's, or the token PIN).  Relying parties that check the
    chain then reject every certificate under it.

    Raises:
        UsageError: an unknown reason, certificateHold or removeFromCRL (exit 2).  StateError: the active CA
            (activate another first), the root, already revoked, not a manager (exit 5).  AuthError (exit 4).
    """
    store.operators.require_manager(operator)
    reason = parse_reason(reason)
    if reason in _NOT_FOR_CAS:
        raise UsageError(f"an issuing CA is not revoked for {reason}.")
    ca = _issuing_ca(store, name)
    if ca.state == "active":
        raise StateError(f"CA {name} is the active issuing CA.", hint="activate another first: "
                         "twcactl ca issuer activate NAME")
    if ca.state == "revoked":
        raise StateError(f"CA {name} is already revoked ({ca.reason}).")
    issuer = store.cas.by_name(ca.issuer or "")
    key = _unlock(store, issuer, passphrase)
    now = utcnow()
    with store.transaction():
        store.cas.revoke(name, now, reason)
        store.log.append(operator=operator, action="ca.issuer.revoke", details={
            "name": name, "reason": reason, "serial": format_serial(ca.certificate().serial_number)})
        crl = sign_ca_crl(store, issuer, key, now)
    write_current_crl(store, issuer.name)
    return store.cas.by_name(name), crl
