"""Creating a local CA home and unlocking its keys.

``ca init`` makes a root CA and one or two intermediates, the last of which
issues end-entity certificates (domain.md §6: ``root.cer``, ``uca.cer`` or
``uca_1.cer`` / ``uca_2.cer``).  The keys and certificates are made in
memory first, then the home is written into a temporary directory beside
the target and renamed into place (:func:`twcactl.store.home.building_home`),
so a failure, a full disk or a kill leaves either a complete home or none.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

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
from twcactl.rules.serials import format_serial
from twcactl.rules.settings import Settings
from twcactl.rules.times import utcnow
from twcactl.rules.vocab import KEY_TYPES
from twcactl.store import CaRecord, Store
from twcactl.store.home import building_home, trusted_owner

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
    if passphrase is not None and len(passphrase) < MIN_CA_PASSPHRASE:
        raise UsageError(f"the CA passphrase must be at least {MIN_CA_PASSPHRASE} characters.")
    for text in (opts.name, opts.org or ""):
        if not text.isprintable() or text != text.strip():
            raise UsageError("CA names must be printable text without leading or trailing spaces.")
    _initial_settings(opts)  # a bad URL is refused before any key is made


def _initial_settings(opts: CaInitOptions) -> Settings:
    """The new home's config.toml; the URLs obey ``ca config``'s rule.

    Raises:
        UsageError: ``--crl-url`` / ``--ocsp-url`` is not an http(s) URL (exit 2).
    """
    return Settings().with_value("crl_url", opts.crl_url or "").with_value("ocsp_url", opts.ocsp_url or "")


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
            lock_timeout: float = 30.0) -> Store:
    """Create a CA home at ``home`` and return it open.

    The creator (``operator``) is recorded as the first manager; the keys
    are encrypted with ``passphrase`` unless it is None (``--no-passphrase``).
    The home is built in a temporary directory and renamed into place: an
    interrupted ``ca init`` leaves a complete home or nothing (besides, when
    killed, a hidden ``.NAME.build-*`` directory beside it).

    Raises:
        UsageError: bad options or a passphrase shorter than 12 characters (exit 2).
        StateError: ``home`` already holds a CA or is not an empty directory (exit 5).
        InputError: the disk is full or the parent directory cannot be written; nothing was created (exit 3).
    """
    _validate(opts, passphrase)
    ensure_new_home(home)
    stems = chain_names(opts.intermediates)
    now = utcnow()
    periods = sequence_validity(now, [opts.root_years] + [opts.uca_years] * opts.intermediates)
    urls = CaUrls(crl_url=opts.crl_url or None, ocsp_url=opts.ocsp_url or None)

    keys: list[PrivateKey] = []
    certs: list[x509.Certificate] = []
    for position in range(len(stems)):
        key = generate_key(opts.root_key_type if position == 0 else opts.key_type)
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
            urls=urls if position > 0 else CaUrls(),
        )
        keys.append(key)
        certs.append(cert)

    with building_home(home, "ca init") as build:
        store = Store.create(build, lock_timeout=lock_timeout, group_readable=opts.group_readable)
        try:
            _write_new_home(store, opts, stems, keys, certs, passphrase=passphrase, operator=operator)
        finally:
            store.close()
    return Store.open(home, lock_timeout=lock_timeout)


def _write_new_home(store: Store, opts: CaInitOptions, stems: list[str], keys: list[PrivateKey],
                    certs: list[x509.Certificate], *, passphrase: str | None, operator: str) -> None:
    """Write the keys, certificates, config.toml and the first records into the (temporary) home ``store``."""
    for stem, key, cert in zip(stems, keys, certs):
        write_file(store.private_dir / f"{stem}.key", private_key_pem(key, passphrase), mode=0o600)
        write_file(store.ca_dir / f"{stem}.cer", cert.public_bytes(serialization.Encoding.PEM))
    store.write_settings(_initial_settings(opts))
    with store.transaction():
        for position, (stem, cert) in enumerate(zip(stems, certs)):
            store.cas.add(
                name=stem, position=position, issuing=position == len(stems) - 1,
                subject=cert.subject.rfc4514_string(), serial=format_serial(cert.serial_number),
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                cert_file=f"ca/{stem}.cer", key_file=f"ca/private/{stem}.key",
                der=cert.public_bytes(serialization.Encoding.DER),
            )
        store.set_meta("ca_key_encrypted", "1" if passphrase is not None else "0")
        store.operators.add(operator, "manager", by=operator)
        store.log.append(operator=operator, action="ca.init", details={
            "intermediates": opts.intermediates,
            "root": certs[0].subject.rfc4514_string(),
            "issuing": certs[-1].subject.rfc4514_string(),
            "key_encrypted": passphrase is not None,
        })
        store.log.append(operator=operator, action="operator.add", details={"name": operator, "role": "manager"})


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

    Raises:
        StateError: the key file is missing or too open, a plaintext key in an encrypted home, or a key
            that does not match the CA certificate (exit 5).
        AuthError: the passphrase is wrong or missing (exit 4).
    """
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
