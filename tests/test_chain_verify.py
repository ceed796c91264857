"""Issue 5, ``chain verify``: path validation on cryptography's verifier, our CRL check; every
refusal names the certificate and the reason (exit 1), and OpenSSL agrees."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import CaHome, issued_bundle, make_ca, require, sh
from twcactl.authority.home import load_ca_key
from twcactl.pkix.verify import default_purpose
from twcactl.store import Store


@dataclass
class Pki:
    home: CaHome
    bundle: Path
    leaf: x509.Certificate
    issuing_cert: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("verify")
    home, _bundle, serial = issued_bundle(base, "--intermediates", "2")
    store = Store.open(home.path)
    try:
        ca = store.cas.issuing()
        key = load_ca_key(ca, None)
        issuing = ca.certificate()
    finally:
        store.close()
    leaf = x509.load_pem_x509_certificate((base / "bundle" / "server.cer").read_bytes())
    return Pki(home, base / "bundle", leaf, issuing, key)  # type: ignore[arg-type]


def crl(pki: Pki, path: Path, *, revoked: list[int], this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None, key: object | None = None) -> Path:
    now = dt.datetime.now(dt.UTC)
    this_update = this_update or now - dt.timedelta(hours=1)
    entries = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(this_update)
               .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build()
               for s in revoked]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=pki.issuing_cert.subject, last_update=this_update,
        next_update=next_update or now + dt.timedelta(days=7), revoked_certificates=entries,
        extensions=[x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1))])  # RFC 5280 5.2.3 (issue 19)
    signed = builder.sign(key or pki.issuing_key, hashes.SHA256())  # type: ignore[arg-type]
    path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    return path


def verify_args(pki: Pki, *extra: str | Path) -> list[str | Path]:
    b = pki.bundle
    return ["chain", "verify", b / "server.cer", "--root", b / "root.cer", "--untrusted", b / "uca_1.cer",
            "--untrusted", b / "uca_2.cer", *extra]


def openssl_verify(pki: Pki, *extra: str | Path) -> int:
    b = pki.bundle
    chain = b.parent / "intermediates.pem"
    chain.write_bytes((b / "uca_1.cer").read_bytes() + (b / "uca_2.cer").read_bytes())
    return sh(require("openssl"), "verify", "-CAfile", b / "root.cer", "-untrusted", chain, *extra,
              b / "server.cer").returncode


def failure(result: object) -> dict:
    doc = result.json()  # type: ignore[attr-defined]
    assert doc["error"]["code"] == 1 and doc["error"]["kind"] == "policy"
    return doc["failure"]


def test_valid_chain_with_hostname(pki: Pki, tw) -> None:
    result = tw("--json", *verify_args(pki, "--hostname", "www.twca.com.tw"))
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["ok"] is True and doc["purpose"] == "server"
    assert [c["subject"] for c in doc["chain"]] == [
        pki.leaf.subject.rfc4514_string(), pki.issuing_cert.subject.rfc4514_string(),
        x509.load_pem_x509_certificate((pki.bundle / "uca_1.cer").read_bytes()).subject.rfc4514_string(),
        x509.load_pem_x509_certificate((pki.bundle / "root.cer").read_bytes()).subject.rfc4514_string()]
    assert openssl_verify(pki, "-verify_hostname", "www.twca.com.tw") == 0


def test_roots_default_to_the_ca_home(pki: Pki, tw) -> None:
    result = pki.home.run("--json", "chain", "verify", pki.bundle / "server.cer")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["roots"] == "ca-home" and len(result.json()["chain"]) == 4


def test_wrong_hostname_is_refused(pki: Pki, tw) -> None:
    result = tw("--json", *verify_args(pki, "--hostname", "www.evil.example"))
    assert result.code == 1
    f = failure(result)
    assert f["reason"] == "hostname" and f["certificate"] == pki.leaf.subject.rfc4514_string()
    assert "www.evil.example" in result.json()["error"]["message"]
    assert openssl_verify(pki, "-verify_hostname", "www.evil.example") != 0


def test_expired_leaf_is_refused(pki: Pki, tw) -> None:
    later = pki.leaf.not_valid_after_utc + dt.timedelta(days=1)
    result = tw("--json", *verify_args(pki, "--at", later.strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert result.code == 1
    f = failure(result)
    assert f["reason"] == "expired" and f["serial"] == format(pki.leaf.serial_number, "x")
    assert "expired" in result.json()["error"]["message"]
    assert openssl_verify(pki, "-attime", str(int(later.timestamp()))) != 0
    earlier = pki.leaf.not_valid_before_utc - dt.timedelta(days=1)
    result = tw("--json", *verify_args(pki, "--at", earlier.isoformat()))
    assert result.code == 1 and failure(result)["reason"] == "not-yet-valid"


def test_revoked_leaf_is_refused(pki: Pki, tw, tmp_path: Path) -> None:
    revoked = crl(pki, tmp_path / "revoked.crl", revoked=[12345, pki.leaf.serial_number])
    result = tw("--json", *verify_args(pki, "--crl", revoked))
    assert result.code == 1
    f = failure(result)
    assert f["reason"] == "revoked" and f["certificate"] == pki.leaf.subject.rfc4514_string()
    assert "keyCompromise" in result.json()["error"]["message"]
    assert openssl_verify(pki, "-crl_check", "-CRLfile", revoked) != 0

    good = crl(pki, tmp_path / "good.crl", revoked=[12345])
    result = tw("--json", *verify_args(pki, "--crl", good))
    assert result.code == 0, result.stdout
    statuses = result.json()["revocation"]
    assert statuses[0]["status"] == "good" and statuses[0]["serial"] == format(pki.leaf.serial_number, "x")
    assert [s["status"] for s in statuses[1:]] == ["unchecked", "unchecked"]
    assert openssl_verify(pki, "-crl_check", "-CRLfile", good) == 0


def test_crl_checks_signature_and_validity(pki: Pki, tw, tmp_path: Path) -> None:
    forged = crl(pki, tmp_path / "forged.crl", revoked=[], key=ec.generate_private_key(ec.SECP256R1()))
    result = tw("--json", *verify_args(pki, "--crl", forged))
    assert result.code == 1 and failure(result)["reason"] == "crl-signature"

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    stale = crl(pki, tmp_path / "stale.crl", revoked=[], this_update=old, next_update=old + dt.timedelta(days=7))
    result = tw("--json", *verify_args(pki, "--crl", stale))
    assert result.code == 1 and failure(result)["reason"] == "crl-expired"

    # a CRL of some other issuer does not cover the leaf
    other_root = x509.load_pem_x509_certificate((pki.bundle / "root.cer").read_bytes())
    other = x509.CertificateRevocationListBuilder(
        issuer_name=other_root.subject, last_update=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        next_update=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    (tmp_path / "other.crl").write_bytes(other.public_bytes(serialization.Encoding.DER))
    result = tw("--json", *verify_args(pki, "--crl", tmp_path / "other.crl"))
    assert result.code == 1 and failure(result)["reason"] in ("crl-missing", "crl-signature")

    (tmp_path / "junk.crl").write_bytes(b"\x30\x03\x02\x01\x01")
    assert tw(*verify_args(pki, "--crl", tmp_path / "junk.crl")).code == 3


def test_missing_intermediate_and_untrusted_root(pki: Pki, tw, tmp_path: Path) -> None:
    b = pki.bundle
    result = tw("--json", "chain", "verify", b / "server.cer", "--root", b / "root.cer", "--untrusted", b / "uca_2.cer")
    assert result.code == 1
    f = failure(result)
    assert f["reason"] == "missing-issuer" and f["certificate"] == pki.issuing_cert.subject.rfc4514_string()

    stranger = make_ca(tmp_path / "stranger", passphrase=None)
    result = tw("--json", "chain", "verify", b / "server.cer", "--root", stranger.path / "ca" / "root.cer",
                "--untrusted", b / "uca_1.cer", "--untrusted", b / "uca_2.cer")
    assert result.code == 1
    assert failure(result)["reason"] in ("untrusted-root", "missing-issuer")


def test_purpose_from_eku_and_explicit(pki: Pki, tw) -> None:
    assert default_purpose(pki.leaf) == "server"
    result = tw("--json", *verify_args(pki, "--purpose", "email"))
    assert result.code == 1 and failure(result)["reason"] == "purpose"
    result = tw("--json", *verify_args(pki, "--purpose", "any"))
    assert result.code == 0 and result.json()["purpose"] == "any"
    assert tw(*verify_args(pki, "--purpose", "client", "--hostname", "www.twca.com.tw")).code == 2
    assert tw(*verify_args(pki, "--at", "yesterday")).code == 2


def test_no_roots_is_a_usage_error(pki: Pki, tw, tmp_path: Path) -> None:
    result = tw("--home", tmp_path / "nothing", "--json", "chain", "verify", pki.bundle / "server.cer")
    assert result.code == 2
