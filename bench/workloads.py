"""Inputs of the benchmark: CA homes, big stores, CSRs, and the matching OpenSSL / easy-rsa CAs.

The big stores are filled through ``Store.bulk_add_certificates`` (the
store's own bulk path: one transaction per 10,000 rows) rather than by
issuing 200,000 certificates, which would take longer than the whole
benchmark.  Every bulk row reuses the DER of one real certificate that
twcactl issued from the same home; the rows differ in serial, CN, notAfter
and state, which is all that ``cert list`` and the CRL read.

The OpenSSL peers use the same issuing CA (twcactl's ``uca.cer`` and
``ca/private/uca.key``), the same CSRs and, for the CRL, the same revoked
serials, so both sides sign the same things with the same key.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from harness import BenchError, run_timed

ACCOUNT = "70759028-01"
ORG = "TWCA"
DOMAIN = "twca.com.tw"
OPERATOR = "bench"
#: The environment variable that carries the encrypted homes' CA passphrase (an env: SOURCE).
PASS_VAR = "TWCACTL_BENCH_CA_PASS"
CA_PASSPHRASE = "bench passphrase, not a secret"
EASYRSA = Path("/usr/share/easy-rsa/easyrsa")


def twcactl_argv() -> list[str]:
    """How to start twcactl: the console script installed next to this interpreter, as users do."""
    script = Path(sys.executable).parent / "twcactl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twcactl"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for every child: the caller's, minus TWCACTL_* settings, plus the bench operator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWCACTL_")}
    env["TWCACTL_OPERATOR"] = OPERATOR
    env[PASS_VAR] = CA_PASSPHRASE
    env.update(extra)
    return env


@dataclass(frozen=True)
class Home:
    """A twcactl CA home made for the benchmark."""

    path: Path
    encrypted: bool

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        """``twcactl --home PATH ARGS...`` (with the passphrase SOURCE for an encrypted home)."""
        tail = [str(a) for a in args]
        # --ca-passphrase is an option of the signing sub-commands, so it goes after them
        if self.encrypted and tail and tail[0] in ("cert", "crl"):
            tail += ["--ca-passphrase", f"env:{PASS_VAR}"]
        return [*twcactl_argv(), "--home", str(self.path), *tail]

    @property
    def uca_cert(self) -> Path:
        """The issuing CA certificate (PEM)."""
        return self.path / "ca" / "uca.cer"

    @property
    def uca_key(self) -> Path:
        """The issuing CA key (PKCS#8 PEM; encrypted in an encrypted home)."""
        return self.path / "ca" / "private" / "uca.key"

    @property
    def root_cert(self) -> Path:
        """The root CA certificate (PEM)."""
        return self.path / "ca" / "root.cer"

    @property
    def crl_file(self) -> Path:
        """The current CRL (DER) the home writes after every revoke and ``twcactl crl``."""
        return self.path / "crl" / "uca.crl"


def init_home(path: Path, *, encrypted: bool = False) -> Home:
    """``ca init`` (RSA-2048 root and issuing CA) plus the account with a quota that never runs out."""
    home = Home(path, encrypted)
    secret = ["--ca-passphrase", f"env:{PASS_VAR}"] if encrypted else ["--no-passphrase"]
    run_timed([*twcactl_argv(), "--home", str(path), "ca", "init", "--org", "twcactl Bench", "--country", "TW",
               "--root-key-type", "rsa2048", *secret], env=clean_env())
    run_timed(home.argv("account", "add", ACCOUNT, "--org", ORG, "--domain", DOMAIN, "--quota", "100000000"),
              env=clean_env())
    return home


# ----- CSRs -----
def subscriber_keys(count: int) -> list[rsa.RSAPrivateKey]:
    """A few RSA-2048 subscriber keys, reused across CSRs (key generation is not what is measured)."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(count)]


def make_csr(key: rsa.RSAPrivateKey, cn: str) -> bytes:
    """A PEM CSR that passes the ``ssl`` profile's policy for the bench account (full subject, SAN)."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Taipei"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "SYSTEM"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def write_csr_dir(directory: Path, count: int, keys: Sequence[rsa.RSAPrivateKey]) -> list[Path]:
    """``count`` CSRs with distinct CNs (``batch000001.twca.com.tw`` ...) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"req{i:06d}.csr"
        path.write_bytes(make_csr(keys[i % len(keys)], f"batch{i:06d}.{DOMAIN}"))
        paths.append(path)
    return paths


# ----- big stores -----
def random_serials(count: int, rng: random.Random) -> list[str]:
    """Unique positive serials with 159 random bits, as the contract prints them (lowercase hex)."""
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(format(rng.getrandbits(159) | (1 << 158), "x"))
    return sorted(seen, key=lambda _s: rng.random())


def _rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BulkRow:
    """The facts of one bulk record the OpenSSL index must mirror."""

    serial: str
    cn: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None


def bulk_rows(count: int, *, rng: random.Random, revoked: bool, now: dt.datetime) -> list[BulkRow]:
    """``count`` records: hostNNNNNN CNs, notAfter spread over the next 2 years; revoked in the past 90 days."""
    rows = []
    for i, serial in enumerate(random_serials(count, rng)):
        not_after = now + dt.timedelta(seconds=rng.randrange(3600, 730 * 86400))
        revoked_at = now - dt.timedelta(seconds=rng.randrange(60, 90 * 86400)) if revoked else None
        rows.append(BulkRow(serial, f"host{i:06d}.{DOMAIN}", not_after, revoked_at))
    return rows


def load_bulk(home: Home, rows: Sequence[BulkRow], der: bytes, *, now: dt.datetime) -> int:
    """Insert ``rows`` into ``home`` with ``Store.bulk_add_certificates`` (the store's own bulk path)."""
    from twcactl.store import Store

    def dicts() -> Iterator[dict[str, object]]:
        for r in rows:
            d: dict[str, object] = {
                "serial": r.serial, "ca_name": "uca", "account_id": ACCOUNT, "profile": "ssl", "cn": r.cn,
                "subject": f"CN={r.cn},OU=SYSTEM,O={ORG},L=Taipei,ST=Taiwan,C=TW", "sans": [r.cn],
                "not_before": _rfc3339(now - dt.timedelta(days=365)), "not_after": _rfc3339(r.not_after),
                "der": der, "cost": 1, "validity": "1y",
            }
            if r.revoked_at is not None:
                d.update(state="revoked", revoked_at=_rfc3339(r.revoked_at), reason="keyCompromise")
            yield d

    store = Store.open(home.path)
    try:
        return store.certificates.bulk_add(dicts())
    finally:
        store.close()


def any_issued_der(home: Home) -> bytes:
    """The DER of a certificate the home issued itself (to reuse for every bulk row)."""
    with sqlite3.connect(f"file:{home.path / 'twcactl.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT der FROM certificates WHERE operator = ? LIMIT 1", (OPERATOR,)).fetchone()
    if row is None:
        raise BenchError(f"{home.path} has issued nothing yet")
    return bytes(row[0])


def valid_serials(home: Home, limit: int) -> list[str]:
    """Serials of still-valid bulk records of ``home`` (the ones ``cert revoke`` runs take, one each)."""
    with sqlite3.connect(f"file:{home.path / 'twcactl.db'}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT serial FROM certificates WHERE state = 'valid' AND operator = 'bulk' LIMIT ?", (limit,))]


# ----- OpenSSL ca -----
_OPENSSL_CNF = """\
# A minimal `openssl ca` set-up for the twcactl benchmark.
[ ca ]
default_ca = bench_ca

[ bench_ca ]
dir              = {dir}
database         = $dir/index.txt
new_certs_dir    = $dir/newcerts
certificate      = {cert}
private_key      = {key}
serial           = $dir/serial
crlnumber        = $dir/crlnumber
default_md       = sha256
default_days     = 365
default_crl_days = 7
policy           = policy_anything
copy_extensions  = copy
x509_extensions  = leaf_ext
crl_extensions   = crl_ext
unique_subject   = no
preserve         = no

[ policy_anything ]
countryName            = optional
stateOrProvinceName    = optional
localityName           = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied

# Roughly what twcactl's ssl profile puts into a leaf
[ leaf_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth, clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def _openssl_time(t: dt.datetime) -> str:
    """index.txt's UTCTime (YYMMDDHHMMSSZ)."""
    return t.strftime("%y%m%d%H%M%SZ")


@dataclass(frozen=True)
class OpensslCa:
    """An ``openssl ca`` directory signing with a twcactl home's issuing CA."""

    dir: Path
    cert: Path
    key: Path
    passin: str | None = None

    def issue_argv(self, csr: Path, out: Path) -> list[str]:
        """``openssl ca -batch`` for one CSR (random serial, like twcactl)."""
        extra = ["-passin", self.passin] if self.passin else []
        return ["openssl", "ca", "-batch", "-notext", "-rand_serial", "-config", str(self.dir / "openssl.cnf"),
                "-in", str(csr), "-out", str(out), *extra]

    def gencrl_argv(self, out: Path) -> list[str]:
        """``openssl ca -gencrl`` over the whole index."""
        extra = ["-passin", self.passin] if self.passin else []
        return ["openssl", "ca", "-gencrl", "-config", str(self.dir / "openssl.cnf"), "-out", str(out), *extra]


def make_openssl_ca(directory: Path, home: Home, rows: Sequence[BulkRow], *, now: dt.datetime,
                    passin: str | None = None) -> OpensslCa:
    """An ``openssl ca`` directory whose index.txt lists ``rows`` (``V`` or ``R`` lines), written directly."""
    directory.mkdir(parents=True)
    (directory / "newcerts").mkdir()
    (directory / "openssl.cnf").write_text(_OPENSSL_CNF.format(dir=directory, cert=home.uca_cert, key=home.uca_key))
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    (directory / "serial").write_text("01\n")
    (directory / "crlnumber").write_text("01\n")
    with open(directory / "index.txt", "w", encoding="ascii") as index:
        for r in rows:
            serial = r.serial.upper()
            if len(serial) % 2:  # openssl writes serials as whole octets
                serial = "0" + serial
            subject = f"/C=TW/ST=Taiwan/L=Taipei/O={ORG}/OU=SYSTEM/CN={r.cn}"
            if r.revoked_at is None:
                index.write(f"V\t{_openssl_time(r.not_after)}\t\t{serial}\tunknown\t{subject}\n")
            else:
                index.write(f"R\t{_openssl_time(r.not_after)}\t{_openssl_time(r.revoked_at)},keyCompromise\t"
                            f"{serial}\tunknown\t{subject}\n")
    return OpensslCa(directory, home.uca_cert, home.uca_key, passin)


def x509_req_argv(home: Home, csr: Path, out: Path, extfile: Path) -> list[str]:
    """``openssl x509 -req`` signing one CSR with the home's issuing CA: no index, no records."""
    return ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(home.uca_cert), "-CAkey", str(home.uca_key),
            "-days", "365", "-sha256", "-copy_extensions", "copy", "-extfile", str(extfile), "-extensions",
            "leaf_ext", "-out", str(out)]


def write_extfile(path: Path) -> Path:
    """The leaf extensions for ``openssl x509 -req`` (the same section as the ``openssl ca`` config)."""
    section = _OPENSSL_CNF.split("[ leaf_ext ]", 1)[1].split("[ crl_ext ]", 1)[0]
    path.write_text("[ leaf_ext ]" + section)
    return path


# ----- easy-rsa -----
@dataclass(frozen=True)
class EasyRsa:
    """An easy-rsa PKI (its own RSA-2048 CA, ``build-ca nopass``)."""

    dir: Path

    def env(self) -> dict[str, str]:
        """easy-rsa's batch-mode environment."""
        return clean_env(EASYRSA_BATCH="1", EASYRSA_PKI=str(self.dir / "pki"), EASYRSA_REQ_CN="Bench Easy-RSA CA",
                         EASYRSA_KEY_SIZE="2048", EASYRSA_ALGO="rsa", EASYRSA_DIGEST="sha256")

    def argv(self, *args: str) -> list[str]:
        """``easyrsa ARGS`` run from its own copy of the scripts."""
        return [str(self.dir / "easyrsa"), *args]

    def import_req(self, csr: Path, name: str) -> None:
        """``import-req`` (untimed set-up for one ``sign-req``)."""
        run_timed(self.argv("import-req", str(csr), name), env=self.env(), cwd=self.dir)

    def sign_argv(self, name: str) -> list[str]:
        """``sign-req server NAME``: the timed step."""
        return self.argv("sign-req", "server", name)


def make_easyrsa(directory: Path) -> EasyRsa:
    """Copy the packaged easy-rsa, ``init-pki`` and ``build-ca nopass``."""
    if not EASYRSA.exists():
        raise BenchError(f"{EASYRSA} is missing (Debian package easy-rsa)")
    shutil.copytree(EASYRSA.parent, directory, symlinks=True)
    ersa = EasyRsa(directory)
    run_timed(ersa.argv("init-pki"), env=ersa.env(), cwd=directory)
    run_timed(ersa.argv("build-ca", "nopass"), env=ersa.env(), cwd=directory)
    return ersa


def unique_name(prefix: str) -> str:
    """A short unique name (easy-rsa refuses to import a request name twice)."""
    return f"{prefix}{secrets.token_hex(4)}"

