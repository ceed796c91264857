"""Issue 12, identities: EV identity from the account, personal e-mail and business numbers bound to the
account, compromised keys blocked (BR §6.1.1.3), public suffixes refused as agreed domains, the SAN cap,
and the schema step to version 2.  Through the CLI on real homes; certificates parsed with cryptography."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ACCOUNT, CaHome, make_ca
from twcactl.store.schema import SCHEMA_V1, SCHEMA_VERSION

SSL_SUBJECT = (("C", "TW"), ("ST", "Taiwan"), ("L", "Taipei"), ("O", "TWCA"), ("CN", "www.twca.com.tw"))
OIDS = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME, "serialNumber": NameOID.SERIAL_NUMBER,
        "jurisdictionC": NameOID.JURISDICTION_COUNTRY_NAME, "businessCategory": NameOID.BUSINESS_CATEGORY}


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_csr(path: Path, key: ec.EllipticCurvePrivateKey, subject: tuple[tuple[str, str], ...] = SSL_SUBJECT, *,
              dns: tuple[str, ...] = (), emails: tuple[str, ...] = ()) -> Path:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(OIDS[name], value) for name, value in subject]))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A home without a CA passphrase and account 70759028-01 (TWCA, twca.com.tw, 20 certificate-years)."""
    ca = make_ca(tmp_path / "ca", passphrase=None)
    result = ca.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20")
    assert result.code == 0, result.stderr
    return ca


def issue(home: CaHome, csr: Path, *args: str) -> Any:
    return home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *args)


def failed_rules(result: Any) -> list[str]:
    return [f["rule"] for f in result.json()["findings"] if not f["ok"]]


def issued_cert(home: CaHome, result: Any) -> x509.Certificate:
    assert result.code == 0, result.stdout + result.stderr
    return x509.load_pem_x509_certificate(Path(result.json()["certificates"][0]["path"]).read_bytes())


def attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


# ---------------------------------------------------------------- EV identity from the account


@pytest.mark.parametrize("extra", [("serialNumber", "22099131"), ("jurisdictionC", "US"),
                                   ("businessCategory", "Government Entity")])
def test_ev_csr_stating_another_identity_is_refused(home: CaHome, tmp_path: Path, extra: tuple[str, str]) -> None:
    csr = write_csr(tmp_path / "ev.csr", new_key(), (*SSL_SUBJECT, extra))
    result = issue(home, csr, "--profile", "ev")
    assert result.code == 1
    assert failed_rules(result) == ["subject.identity"]
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 20  # nothing charged


def test_ev_certificate_carries_the_accounts_identity(home: CaHome, tmp_path: Path) -> None:
    changed = home.run("--json", "account", "set", ACCOUNT, "--jurisdiction-locality", "Taipei City",
                       "--business-category", "business entity")
    assert changed.code == 0, changed.stderr
    shown = home.run("--json", "account", "show", ACCOUNT).json()
    assert shown["business_number"] == "70759028"
    assert shown["jurisdiction"] == {"country": "TW", "state": None, "locality": "Taipei City"}
    assert shown["business_category"] == "Business Entity"

    cert = issued_cert(home, issue(home, write_csr(tmp_path / "ev.csr", new_key()), "--profile", "ev"))
    assert attribute(cert, NameOID.SERIAL_NUMBER) == ["70759028"]
    assert attribute(cert, NameOID.JURISDICTION_COUNTRY_NAME) == ["TW"]
    assert attribute(cert, NameOID.JURISDICTION_LOCALITY_NAME) == ["Taipei City"]
    assert attribute(cert, NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME) == []
    assert attribute(cert, NameOID.BUSINESS_CATEGORY) == ["Business Entity"]
    # a CSR that states the account's own values is accepted and carries them once
    same = write_csr(tmp_path / "same.csr", new_key(), (*SSL_SUBJECT, ("serialNumber", "70759028"),
                                                        ("jurisdictionC", "TW")))
    cert = issued_cert(home, issue(home, same, "--profile", "ev"))
    assert attribute(cert, NameOID.SERIAL_NUMBER) == ["70759028"]
    assert attribute(cert, NameOID.JURISDICTION_COUNTRY_NAME) == ["TW"]


def test_account_identity_options_are_checked(home: CaHome) -> None:
    for args in (("--jurisdiction-country", "XX"), ("--business-category", "Charity"),
                 ("--jurisdiction-state", "Tai\x1bpei")):
        result = home.run("--json", "account", "set", ACCOUNT, *args)
        assert result.code == 2, args
    added = home.run("--json", "account", "add", "22099131-01", "--org", "ACME", "--domain", "acme.com.tw",
                     "--jurisdiction-country", "us", "--jurisdiction-state", "Delaware")
    assert added.code == 0, added.stderr
    assert added.json()["jurisdiction"] == {"country": "US", "state": "Delaware", "locality": None}
    assert added.json()["business_category"] == "Private Organization"


# ---------------------------------------------------------------- personal profiles


PERSONAL = (("C", "TW"), ("O", "TWCA"), ("CN", "A123456789-01-YIRU"))


def test_personal_email_must_be_under_an_agreed_domain(home: CaHome, tmp_path: Path) -> None:
    foreign = write_csr(tmp_path / "foreign.csr", new_key(), PERSONAL, emails=("ceo@google.com",))
    result = issue(home, foreign, "--profile", "user-sign")
    assert result.code == 1
    assert failed_rules(result) == ["personal.email"]
    own = write_csr(tmp_path / "own.csr", new_key(), PERSONAL, emails=("yiru@twca.com.tw",))
    cert = issued_cert(home, issue(home, own, "--profile", "user-sign"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["yiru@twca.com.tw"]


def test_personal_business_number_must_be_the_accounts(home: CaHome, tmp_path: Path) -> None:
    foreign_cn = write_csr(tmp_path / "cn.csr", new_key(), (("C", "TW"), ("O", "TWCA"), ("CN", "22099131-01-ACME")))
    result = issue(home, foreign_cn, "--profile", "user-enc")
    assert result.code == 1
    assert failed_rules(result) == ["personal.business-number"]
    foreign_serial = write_csr(tmp_path / "sn.csr", new_key(), (*PERSONAL, ("serialNumber", "22099131")))
    result = issue(home, foreign_serial, "--profile", "user-sign")
    assert result.code == 1
    assert failed_rules(result) == ["personal.business-number"]
    own = write_csr(tmp_path / "own.csr", new_key(), (("C", "TW"), ("O", "TWCA"), ("CN", "70759028-01-TWCA")))
    assert issue(home, own, "--profile", "user-sign").code == 0


# ---------------------------------------------------------------- compromised keys


def test_key_compromise_blocks_the_key_on_issue_and_renew(home: CaHome, tmp_path: Path) -> None:
    key = new_key()
    first = issue(home, write_csr(tmp_path / "a.csr", key))
    second = issue(home, write_csr(tmp_path / "b.csr", key, (*SSL_SUBJECT[:4], ("CN", "api.twca.com.tw"))))
    serial_a = first.json()["certificates"][0]["serial"]
    serial_b = second.json()["certificates"][0]["serial"]

    revoked = home.run("--json", "cert", "revoke", serial_a, "--reason", "keyCompromise")
    assert revoked.code == 0, revoked.stderr
    assert [(c["serial"], c["status"]) for c in revoked.json()["same_key"]] == [(serial_b, "valid")]

    again = issue(home, write_csr(tmp_path / "again.csr", key, (*SSL_SUBJECT[:4], ("CN", "new.twca.com.tw"))))
    assert again.code == 1
    assert failed_rules(again) == ["key.blocked"]

    renew_csr = write_csr(tmp_path / "renew.csr", key, (*SSL_SUBJECT[:4], ("CN", "api.twca.com.tw")))
    renewed = home.run("--json", "cert", "renew", serial_b, "--csr", renew_csr, "--early")
    assert renewed.code == 1
    assert failed_rules(renewed) == ["key.blocked"]
    # a new key renews
    fresh = write_csr(tmp_path / "fresh.csr", new_key(), (*SSL_SUBJECT[:4], ("CN", "api.twca.com.tw")))
    assert home.run("--json", "cert", "renew", serial_b, "--csr", fresh, "--early").code == 0


def test_revoke_all_with_key_revokes_the_others_in_one_go(home: CaHome, tmp_path: Path) -> None:
    key = new_key()
    serials = [issue(home, write_csr(tmp_path / f"{n}.csr", key, (*SSL_SUBJECT[:4], ("CN", f"{n}.twca.com.tw"))))
               .json()["certificates"][0]["serial"] for n in ("one", "two", "three")]
    other = issue(home, write_csr(tmp_path / "other.csr", new_key())).json()["certificates"][0]["serial"]
    result = home.run("--json", "cert", "revoke", serials[0], "--reason", "keyCompromise", "--all-with-key")
    assert result.code == 0, result.stderr
    assert sorted((c["serial"], c["status"]) for c in result.json()["same_key"]) == sorted(
        (s, "revoked") for s in serials[1:])
    for serial in serials[1:]:
        shown = home.run("--json", "cert", "show", serial).json()["certificate"]
        assert shown["status"] == "revoked"
    assert home.run("--json", "cert", "show", other).json()["certificate"]["status"] == "valid"
    crl = x509.load_der_x509_crl((home.path / "crl" / "uca.crl").read_bytes())
    listed = {format(r.serial_number, "x"): r for r in crl}
    assert set(serials) <= set(listed) and other not in listed
    assert all(listed[s].extensions.get_extension_for_class(x509.CRLReason).value.reason
               == x509.ReasonFlags.key_compromise for s in serials)


def test_card_enrolment_refuses_a_blocked_key(home: CaHome, tmp_path: Path) -> None:
    """The card enrolment's issuer (the ``submit`` of card.enroll) with a CSR of a blocked key: refused
    before anything is issued.  A card makes a fresh key on enrolment, so the blocked key is given here as
    the pending key's CSR instead of through SoftHSM2."""
    from twcactl.authority.card_issuer import LocalIssuer
    from twcactl.errors import PolicyError
    from twcactl.rules.validity import Validity
    from twcactl.store import Store

    key = new_key()
    serial = issue(home, write_csr(tmp_path / "a.csr", key)).json()["certificates"][0]["serial"]
    assert home.run("cert", "revoke", serial, "--reason", "keyCompromise").code == 0
    card_csr = x509.load_pem_x509_csr(write_csr(tmp_path / "card.csr", key, PERSONAL).read_bytes())
    pending = [SimpleNamespace(csr=card_csr, spec=SimpleNamespace(profile="user-sign", label="sign"))]
    store = Store.open(home.path)
    try:
        issuer = LocalIssuer(store, account_id=ACCOUNT, validity=Validity.from_options(1, None), operator="alice",
                             passphrase=lambda: None)
        with pytest.raises(PolicyError) as refused:
            issuer(pending)
        assert [f.rule for f in refused.value.findings if not f.ok] == ["key.blocked"]
        # the same request with a fresh key is issued
        fresh = x509.load_pem_x509_csr(write_csr(tmp_path / "fresh.csr", new_key(), PERSONAL).read_bytes())
        assert len(issuer([SimpleNamespace(csr=fresh, spec=pending[0].spec)])) == 1
    finally:
        store.close()


# ---------------------------------------------------------------- domains and the SAN cap


def test_a_public_suffix_is_refused_as_an_agreed_domain(home: CaHome) -> None:
    added = home.run("--json", "account", "add", "22099131-01", "--org", "ACME", "--domain", "com.tw")
    assert added.code == 2  # a bad option value: usage (exit 2), like a single-label domain
    assert added.json()["error"]["kind"] == "usage"
    assert home.run("--json", "account", "show", "22099131-01").code == 5  # nothing written
    for suffix in ("co.uk", "github.io", "COM.TW."):
        assert home.run("account", "set", ACCOUNT, "--add-domain", suffix).code == 2, suffix
    assert home.run("--json", "account", "show", ACCOUNT).json()["domains"] == ["twca.com.tw"]
    assert home.run("account", "set", ACCOUNT, "--add-domain", "twca.co.uk").code == 0


def test_san_count_is_capped_by_max_sans(home: CaHome, tmp_path: Path) -> None:
    names = tuple(f"h{i}.twca.com.tw" for i in range(100))
    hundred = write_csr(tmp_path / "100.csr", new_key(), (*SSL_SUBJECT[:4], ("CN", names[0])), dns=names)
    cert = issued_cert(home, issue(home, hundred))
    assert len(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == 100
    over = write_csr(tmp_path / "101.csr", new_key(), SSL_SUBJECT, dns=names)  # the CN makes 101
    result = issue(home, over)
    assert result.code == 1
    assert failed_rules(result) == ["san.count"]
    assert home.run("ca", "config", "max_sans", "0").code == 2
    assert home.run("ca", "config", "max_sans", "101").code == 0
    assert issue(home, over).code == 0


# ---------------------------------------------------------------- schema version 1 -> 2


def test_a_version_1_home_migrates_to_version_2(home: CaHome, tmp_path: Path) -> None:
    key = new_key()
    serial = issue(home, write_csr(tmp_path / "a.csr", key)).json()["certificates"][0]["serial"]
    assert home.run("cert", "revoke", serial, "--reason", "keyCompromise").code == 0
    db = sqlite3.connect(home.path / "twcactl.db")
    v1_tables = set(re.findall(r"CREATE TABLE (\w+)", SCHEMA_V1))
    later = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if r[0] not in v1_tables]
    assert "blocked_keys" in later
    with db:  # back to the version 1 layout: every later table (this issue's and later steps'), the v2 columns
        for table in later:
            db.execute(f"DROP TABLE {table}")
        for statement in ("DROP INDEX cert_spki", "ALTER TABLE certificates DROP COLUMN spki_sha256",
                          "ALTER TABLE certificates DROP COLUMN paid_until",  # version 4 (issue 16)
                          *(f"ALTER TABLE cas DROP COLUMN {c}"  # version 9 (issue 25)
                            for c in ("issuer", "retired_at", "revoked_at", "reason")),
                          "ALTER TABLE accounts DROP COLUMN jurisdiction_country",
                          "ALTER TABLE accounts DROP COLUMN jurisdiction_state",
                          "ALTER TABLE accounts DROP COLUMN jurisdiction_locality",
                          "ALTER TABLE accounts DROP COLUMN business_category",
                          "ALTER TABLE activity_log DROP COLUMN signature",  # issue 27
                          "ALTER TABLE operators DROP COLUMN cert_der", "ALTER TABLE operators DROP COLUMN cert_sha256",
                          "DELETE FROM meta WHERE key = 'keys_indexed'",
                          "UPDATE meta SET value = '1' WHERE key = 'schema_version'"):
            db.execute(statement)
    db.close()

    shown = home.run("--json", "account", "show", ACCOUNT)
    assert shown.code == 0, shown.stderr
    assert shown.json()["jurisdiction"]["country"] == "TW"
    assert shown.json()["business_category"] == "Private Organization"
    db = sqlite3.connect(home.path / "twcactl.db")
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT COUNT(*) FROM certificates WHERE spki_sha256 IS NULL").fetchone() == (0,)
    finally:
        db.close()
    # the key revoked for keyCompromise before the migration is blocked after it
    again = issue(home, write_csr(tmp_path / "again.csr", key))
    assert again.code == 1
    assert failed_rules(again) == ["key.blocked"]
