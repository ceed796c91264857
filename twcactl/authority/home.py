"""Creating a local CA home and unlocking its keys.

``ca init`` makes a root CA and one or two intermediates, the last of which
issues end-entity certificates (domain.md §6: ``root.cer``, ``uca.cer`` or
``uca_1.cer`` / ``uca_2.cer``).  The keys and certificates are made in
memory first, then the home is written into a temporary directory beside
the target and renamed into place (:func:`twcactl.store.home.building_home`),
so a failure, a full disk or a kill leaves either a complete home or none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.errors import AuthError, StateError, UsageError
from twcactl.fsutil import write_file
from twcactl.issue import (
    CaUrls,
    build_ca_certificate,
    ca_subject,
    chain_names,
    sequence_validity,
)
from twcactl.pkix.keys import (
    PrivateKey,
    generate_key,
    is_encrypted_key,
    load_private_key,
    private_key_pem,
)
from twcactl.rules import publication
from twcactl.rules.publication import beside
from twcactl.rules.serials import format_serial
from twcactl.rules.settings import Settings, store_url_problem
from twcactl.rules.times import utcnow
from twcactl.rules.vocab import KEY_TYPES
from twcactl.store import CaRecord, Store
from twcactl.store.home import building_home, trusted_owner

if TYPE_CHECKING:  # the PKCS#11 layer loads only for a CA key on a token (issue 18: start-up)
    from twcactl.authority.token_keys import TokenKeyMaker

MIN_CA_PASSPHRASE = 12


@dataclass(frozen=True)
class CaInitOptions:
    """Options of ``ca init`` (cli-contract.md).

    Attributes:
        name: the base of the CA common names (``NAME Root CA``, ``NAME Issuing CA``).
        org / country: subject O and C of the CA certificates (C: 2 letters).
        key_type: the intermediates' key type (a ``KEY_TYPES`` name).
        root_key_type: the root's key type.
        intermediates: 1 or 2.
        root_years / uca_years: validity in calendar years; an intermediate
            never outlives its issuer.
        crl_url / ocsp_url: put into issued certificates when set.
        key_uri: an RFC 7512 ``pkcs11:token=LABEL`` URI: make the CA keys on that token, not as files
            (issue 14; the passphrase is the token's user PIN).
        pkcs11_module: the PKCS#11 module for ``key_uri`` (``--pkcs11-module`` / ``$TWCACTL_PKCS11_MODULE``).
        base_url: ``--base-url``: the CA publishes its CRLs, CA certificates and OCSP under it in the layout
            ``twcactl serve`` answers (issue 25; :mod:`twcactl.rules.publication`).
        public_trust: make a public-trust CA (issue 16): CA certificates of the BR root and TLS issuing CA
            profiles, ``public_trust`` and ``ca_issuers_url`` set; needs an ``http://`` ``crl_url``, whose
            directory is where the CA publishes ``<name>.crl`` and ``<name>.cer`` (:func:`publication_urls`).
    """

    name: str = "twcactl Local"
    org: str | None = None
    country: str | None = None
    key_type: str = "rsa2048"
    root_key_type: str = "rsa4096"
    intermediates: int = 1
    root_years: int = 20
    uca_years: int = 10
    crl_url: str | None = None
    ocsp_url: str | None = None
    group_readable: bool = False
    key_uri: str | None = None
    pkcs11_module: str | None = None
    public_trust: bool = False
    #: where the CA publishes in ``serve``'s layout (issue 25): every URL of every certificate derives from it
    base_url: str | None = None


#: The longest CA validity ``ca init`` accepts, in years: a sum of "now" and 8000 years overflows dates.
MAX_CA_YEARS = 100


def _validate(opts: CaInitOptions, passphrase: str | None) -> None:
    if opts.key_type not in KEY_TYPES or opts.root_key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type; choose one of {', '.join(KEY_TYPES)}.")
    if opts.root_years < 1 or opts.uca_years < 1:
        raise UsageError("CA validity must be at least one year.")
    if opts.root_years > MAX_CA_YEARS or opts.uca_years > MAX_CA_YEARS:
        raise UsageError(f"CA validity must be at most {MAX_CA_YEARS} years.")
    country = opts.country
    if country is not None and (len(country) != 2 or not country.isascii() or not country.isupper()):
        raise UsageError("--country must be a two-letter upper-case ISO 3166 code, such as TW.")
    if opts.key_uri:
        from twcactl.backends.p11_uri import parse_pkcs11_uri

        parse_pkcs11_uri(opts.key_uri)  # a bad URI is refused before the token is touched
        if passphrase is None:
            raise UsageError("CA keys on a token need the token's user PIN; --no-passphrase does not apply.",
                             hint="give the PIN with --ca-passphrase SOURCE")
    elif passphrase is not None and len(passphrase) < MIN_CA_PASSPHRASE:
        raise UsageError(f"the CA passphrase must be at least {MIN_CA_PASSPHRASE} characters.")
    for text in (opts.name, opts.org or ""):
        if not text.isprintable() or text != text.strip():
            raise UsageError("CA names must be printable text without leading or trailing spaces.")
    _initial_settings(opts)  # a bad URL is refused before any key is made


def _initial_settings(opts: CaInitOptions) -> Settings:
    """The new home's config.toml; the URLs obey ``ca config``'s rule.

    Raises:
        UsageError: ``--crl-url`` / ``--ocsp-url`` / ``--base-url`` is not an http(s) URL; ``--public-trust``
            without an ``http://`` ``--base-url`` or ``--crl-url`` (exit 2).
    """
    settings = (Settings().with_value("crl_url", opts.crl_url or "").with_value("ocsp_url", opts.ocsp_url or "")
                .with_value("base_url", opts.base_url or ""))
    if not opts.public_trust:
        return settings
    if opts.base_url:
        if not opts.base_url.startswith("http://"):
            raise UsageError("--public-trust needs an http:// --base-url (BR 7.1.2.11.2 asks for HTTP).")
        return settings.with_value("public_trust", "true")
    leaf_issuer = chain_names(opts.intermediates)[-1]
    return settings.with_value("public_trust", "true").with_value(
        "ca_issuers_url", publication_urls(opts.crl_url, leaf_issuer).ca_issuers_url or "")


def publication_urls(crl_url: str | None, issuer_stem: str) -> CaUrls:
    """Where a public-trust CA publishes the CRL and certificate of CA ``issuer_stem`` (``root``, ``uca``...):
    beside ``crl_url``, in ``serve``'s layout when ``crl_url`` is ``.../crl/NAME.crl``
    (:func:`twcactl.rules.publication.beside`; BR §7.1.2.6: the CRL Distribution Points and AIA caIssuers of a
    subordinate CA certificate are HTTP URLs of its issuer's; issues 16, 25).

    Raises:
        UsageError: ``crl_url`` is missing or not an ``http://`` URL (BR §7.1.2.11.2 asks for HTTP) (exit 2).
    """
    if not crl_url or not crl_url.startswith("http://") or "/" not in crl_url[len("http://"):]:
        raise UsageError("--public-trust needs --base-url http://HOST[:PORT] or --crl-url http://HOST/PATH/NAME.crl "
                         "(an http:// URL, BR 7.1.2.11.2); the CA's certificates and CRLs are published there.")
    found = beside(crl_url, issuer_stem)
    return CaUrls(crl_url=found.crl_url, ca_issuers_url=found.ca_issuers_url)


def ca_certificate_urls(opts: CaInitOptions, issuer_stem: str) -> CaUrls:
    """The URLs a CA certificate signed by ``issuer_stem`` carries: its issuer's CRL and certificate
    (never the leaves' URLs, never an OCSP URL no responder answers for; issue 25)."""
    if opts.public_trust and not opts.base_url:
        return publication_urls(opts.crl_url, issuer_stem)
    found = publication.ca_certificate_urls(base_url=opts.base_url or "", crl_url=opts.crl_url or "",
                                            issuer=issuer_stem)
    return CaUrls(crl_url=found.crl_url, ca_issuers_url=found.ca_issuers_url)


def ensure_new_home(home: Path) -> None:
    """Refuse to make a CA where one already is; ``ca init`` calls it before asking for a passphrase too,
    so a user is not asked for one only to be refused.

    Raises:
        StateError: ``home`` already holds a CA, or is not an empty directory (exit 5).
    """
    if Store.exists(home):
        raise StateError(f"{home} already holds a CA.", hint="use another --home, or remove it first")
    if home.is_symlink() or (home.exists() and (not home.is_dir() or any(home.iterdir()))):
        raise StateError(f"{home} exists and is not an empty directory.", hint="use a new --home")


def init_ca(home: Path, opts: CaInitOptions, *, passphrase: str | None, operator: str,
            lock_timeout: float = 30.0, store_url: str = "", store_password: str | None = None) -> Store:
    """Create a CA home at ``home`` and return it open.

    The creator (``operator``) is recorded as the first manager; the keys
    are encrypted with ``passphrase`` unless it is None (``--no-passphrase``).
    The home is built in a temporary directory and renamed into place: an
    interrupted ``ca init`` leaves a complete home or nothing (besides, when
    killed, a hidden ``.NAME.build-*`` directory beside it).

    With ``store_url`` (``--store postgresql://...``, issue 14) the records go to
    that empty PostgreSQL database (``store_password`` from a SOURCE, or libpq's
    PGPASSFILE) and the home's config.toml names it; a failed init drops the
    tables it made there.

    Raises:
        UsageError: bad options or a passphrase shorter than 12 characters (exit 2).
        StateError: ``home`` already holds a CA or is not an empty directory (exit 5).
        InputError: the disk is full or the parent directory cannot be written; nothing was created (exit 3);
            ``store_url`` is not a PostgreSQL URL or holds a password.
        BusyError: the PostgreSQL server cannot be reached (exit 75).
    """
    _validate(opts, passphrase)
    _validate_store(store_url)
    ensure_new_home(home)
    stems = chain_names(opts.intermediates)
    now = utcnow()
    periods = sequence_validity(now, [opts.root_years] + [opts.uca_years] * opts.intermediates)

    maker = _key_maker(opts, passphrase)  # a token's PIN is tried here, before anything is made
    with maker, building_home(home, "ca init") as build:  # token keys are destroyed again on failure
        keys, certs = _make_chain(opts, stems, periods, maker)
        store = Store.create(build, lock_timeout=lock_timeout, group_readable=opts.group_readable, url=store_url,
                             store_password=store_password)
        try:
            _write_new_home(store, opts, stems, keys, certs, passphrase=passphrase, operator=operator,
                            key_places=maker.places)
        except BaseException:
            drop = getattr(store.engine, "drop_schema", None)
            if drop is not None:  # a failed init leaves the PostgreSQL database as empty as it found it
                with contextlib.suppress(Exception):
                    drop()
            raise
        finally:
            store.close()
    return Store.open(home, lock_timeout=lock_timeout, store_password=store_password)


def _key_maker(opts: CaInitOptions, passphrase: str | None) -> _FileKeys | TokenKeyMaker:
    """Where ``ca init`` makes the CA keys: in memory (written as files), or on the token of ``--key-uri``.

    Raises:
        PinError: the token's PIN is wrong (exit 4).  DeviceError: no module or token (exit 6).
    """
    if not opts.key_uri:
        return _FileKeys()
    from twcactl.authority.token_keys import TokenKeyMaker

    return TokenKeyMaker(opts.key_uri, opts.pkcs11_module, passphrase, label_base=opts.name,
                         names=chain_names(opts.intermediates))


class _FileKeys:
    """Keys made in memory and written as (encrypted) key files under ``ca/private``."""

    places: dict[str, str] | None = None

    def __enter__(self) -> _FileKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def new_key(self, name: str, key_type: str) -> PrivateKey:
        return generate_key(key_type)

    def finish(self, names: list[str], certs: list[x509.Certificate]) -> None:
        return None


def _make_chain(opts: CaInitOptions, stems: list[str], periods: list[tuple[dt.datetime, dt.datetime]],
                maker: _FileKeys | TokenKeyMaker) -> tuple[list[PrivateKey], list[x509.Certificate]]:
    """The CA keys (made by ``maker``) and certificates, root first, each signed by the one above it."""
    keys: list[PrivateKey] = []
    certs: list[x509.Certificate] = []
    for position in range(len(stems)):
        key = maker.new_key(stems[position], opts.root_key_type if position == 0 else opts.key_type)
        if position == 0:
            common = f"{opts.name} Root CA"
        elif position == len(stems) - 1:
            common = f"{opts.name} Issuing CA"
        else:
            common = f"{opts.name} Intermediate CA {position}"
        try:
            subject = ca_subject(common, opts.org, opts.country)
        except ValueError as exc:
            raise UsageError(f"cryptography refused a CA name: {exc}.") from exc
        not_before, not_after = periods[position]
        cert = build_ca_certificate(
            subject=subject,
            key=key,
            issuer_cert=certs[-1] if certs else None,
            issuer_key=keys[-1] if keys else key,
            serial=x509.random_serial_number(),
            not_before=not_before,
            not_after=not_after,
            path_length=len(stems) - 1 - position,
            urls=ca_certificate_urls(opts, stems[position - 1]) if position > 0 else CaUrls(),
            public_trust=opts.public_trust,
        )
        keys.append(key)
        certs.append(cert)
    maker.finish(stems, certs)
    return keys, certs


def _validate_store(url: str) -> None:
    """Refuse a ``--store`` that is not a PostgreSQL URL, or that holds a password (issue 14).

    Raises:
        UsageError: naming the rule (exit 2).
    """
    if not url:
        return
    problem = store_url_problem(url)
    if problem is not None:
        raise UsageError(f"--store {problem}.")


def _write_new_home(store: Store, opts: CaInitOptions, stems: list[str], keys: list[PrivateKey],
                    certs: list[x509.Certificate], *, passphrase: str | None, operator: str,
                    key_places: dict[str, str] | None = None) -> None:
    """Write the keys, certificates, config.toml and the first records into the (temporary) home ``store``.

    ``key_places``: CA name -> the RFC 7512 URI of its key on a token (issue 14), recorded in
    ``cas.key_file`` in place of a file path; no key file is written then."""
    for stem, key, cert in zip(stems, keys, certs):
        if key_places is None:
            write_file(store.private_dir / f"{stem}.key", private_key_pem(key, passphrase), mode=0o600)
        write_file(store.ca_dir / f"{stem}.cer", cert.public_bytes(serialization.Encoding.PEM))
    store.write_settings(_initial_settings(opts))
    with store.transaction():
        for position, (stem, cert) in enumerate(zip(stems, certs)):
            store.cas.add(
                name=stem, position=position, issuing=position == len(stems) - 1,
                subject=cert.subject.rfc4514_string(), serial=format_serial(cert.serial_number),
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                cert_file=f"ca/{stem}.cer", key_file=(key_places or {}).get(stem, f"ca/private/{stem}.key"),
                der=cert.public_bytes(serialization.Encoding.DER), issuer=stems[position - 1] if position else None,
            )
        store.set_meta("ca_key_encrypted", "1" if passphrase is not None else "0")
        store.operators.add(operator, "manager", by=operator)
        store.log.append(operator=operator, action="ca.init", details={
            "intermediates": opts.intermediates,
            "root": certs[0].subject.rfc4514_string(),
            "issuing": certs[-1].subject.rfc4514_string(),
            "key_encrypted": passphrase is not None,
            "key_store": "pkcs11" if key_places is not None else "file",
            **({"public_trust": True} if opts.public_trust else {}),
        })
        store.log.append(operator=operator, action="operator.add", details={"name": operator, "role": "manager"})
        # the CAs that sign CA certificates publish a CRL from the start: relying parties that check the
        # whole chain (openssl -crl_check_all, Java's PKIX) need the root's (issue 25)
        first_crls(store, list(zip(stems, certs, keys))[:-1], utcnow())


def first_crls(store: Store, signers: list[tuple[str, x509.Certificate, PrivateKey]], now: dt.datetime) -> None:
    """Sign and record an empty first CRL of each CA in ``signers`` (``(name, certificate, key)``; inside the
    caller's transaction), current for :data:`twcactl.rules.publication.CA_CRL_DAYS` (BR §4.9.7: at most 12
    months for a CRL over CA certificates).  The file ``crl/NAME.crl`` follows from the record."""
    from twcactl.pkix.crl import build_crl

    for name, cert, key in signers:
        number = store.crls.next_number(name)
        next_update = now + dt.timedelta(days=publication.CA_CRL_DAYS)
        crl = build_crl(issuer_cert=cert, issuer_key=key, entries=[], number=number, this_update=now,
                        next_update=next_update)
        der = crl.public_bytes(serialization.Encoding.DER)
        store.crls.add(ca_name=name, number=number, this_update=now, next_update=next_update, entries=0, der=der)
        write_file(store.crl_path(name), der, force=True)


def key_matches_certificate(public_key: object, cert: x509.Certificate) -> bool:
    """True when ``public_key`` is the public key in ``cert`` (their SubjectPublicKeyInfo DER compared)."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        mine = public_key.public_bytes(serialization.Encoding.DER, spki)  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return bool(mine == cert.public_key().public_bytes(serialization.Encoding.DER, spki))


def load_ca_key(ca: CaRecord, passphrase: str | None, *, encrypted: bool | None = None) -> PrivateKey:
    """Unlock the private key of ``ca``.

    Refuses a key file that group or others can read (architecture.md: 0600); in a home whose keys are
    encrypted (``encrypted``, default: a passphrase was given) a key file that is not encrypted; and a key
    that does not belong to the CA's certificate (public keys compared), so a swapped key can never sign
    (issue 13).

    A CA whose key lives on a PKCS#11 token (``ca.key_uri``, issue 14) is unlocked there: ``passphrase`` is
    the token's user PIN, and the returned key signs on the token (its session stays open for the command's
    life; :func:`twcactl.authority.token_keys.load_token_key`).

    Raises:
        StateError: the key file is missing or too open, a plaintext key in an encrypted home, or a key
            that does not match the CA certificate (exit 5).
        AuthError: the passphrase is wrong or missing (exit 4); PinError: the token's PIN is wrong (exit 4).
        DeviceError: the key's token or PKCS#11 module is not there (exit 6).
    """
    if ca.key_uri is not None:
        from twcactl.authority.token_keys import load_token_key

        token_key = load_token_key(ca, passphrase)
        if not key_matches_certificate(token_key.public_key(), ca.certificate()):
            raise StateError(f"the token key of CA {ca.name} does not belong to its certificate; refusing to sign "
                             "with it.", hint="check the key URI the store records (twcactl ca check)")
        return token_key
    try:
        st = os.stat(ca.key_file)
    except FileNotFoundError as exc:
        raise StateError(f"the CA key {ca.key_file} is missing.") from exc
    if not trusted_owner(st.st_uid):  # its owner could replace it (issue 13; OpenSSH StrictModes)
        raise StateError(f"the CA key {ca.key_file} is owned by uid {st.st_uid}, not by you; refusing to use it.",
                         hint=f"chown it to yourself: chown {os.geteuid()} {ca.key_file}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StateError(f"the CA key {ca.key_file} is readable by others; refusing to use it.",
                         hint=f"chmod 600 {ca.key_file}")
    data = ca.key_file.read_bytes()
    if (passphrase is not None if encrypted is None else encrypted) and not is_encrypted_key(data):
        raise StateError(f"the CA key {ca.key_file} is not encrypted, but this home's keys are; refusing to use it.",
                         hint="restore the encrypted key from a backup; twcactl ca check reports it too")
    try:
        key = load_private_key(data, passphrase, name="the CA key", trusted=True)
    except AuthError as exc:
        if passphrase is None:
            raise AuthError("the CA key needs its passphrase.",
                            hint="give it with --ca-passphrase SOURCE, or set TWCACTL_CA_PASSPHRASE_SOURCE") from exc
        raise AuthError("the CA key passphrase is wrong.",
                        hint="give it with --ca-passphrase SOURCE, or set TWCACTL_CA_PASSPHRASE_SOURCE") from exc
    if not key_matches_certificate(key.public_key(), ca.certificate()):
        raise StateError(f"the CA key {ca.key_file} does not belong to the certificate of CA {ca.name}; "
                         "refusing to sign with it.", hint="restore the CA's key from a backup")
    return key
