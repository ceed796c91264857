"""Issue 4: quota, renewal, revocation, suspension, CRLs and OCSP seen by OpenSSL, records and roles,
all driven through the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import ACCOUNT, CaHome, db_rows, db_run, make_ca, openssl_csr, require, sh

#: Every test here runs on both store engines: the home's SQLite file and PostgreSQL (issue 14).
pytestmark = pytest.mark.usefixtures("store_engine")

SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN={cn}"


def csr_for(tmp: Path, cn: str, name: str | None = None) -> Path:
    return openssl_csr(tmp, SUBJ.format(cn=cn), name=name or cn.replace("*", "star"))


def issue(home: CaHome, csr: Path, *extra: str, account: str = ACCOUNT) -> dict:
    result = home.run("--json", "cert", "issue", csr, "--account", account, *extra)
    assert result.code == 0, result.stdout + result.stderr
    return result.json()["certificates"][0]


def balance(home: CaHome, account: str = ACCOUNT) -> int:
    return home.run("--json", "account", "show", account).json()["balance"]


@pytest.fixture
def small(tmp_path: Path) -> CaHome:
    """A CA with an account of 3 certificate-years and two agreed domains."""
    home = make_ca(tmp_path / "ca")
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
                      "--domain", "mis.twca.com.tw", "--quota", "3")
    assert result.code == 0, result.stderr
    return home


def test_quota_refund_and_log(small: CaHome, tmp_path: Path) -> None:
    first = issue(small, csr_for(tmp_path, "www.twca.com.tw"), "--years", "2")
    assert balance(small) == 1
    certs_before = sorted(p.name for p in (small.path / "certs").iterdir())
    refused = small.run("--json", "cert", "issue", csr_for(tmp_path, "api.twca.com.tw"), "--account", ACCOUNT,
                        "--years", "2")
    assert refused.code == 5 and refused.json()["error"]["kind"] == "state"
    assert sorted(p.name for p in (small.path / "certs").iterdir()) == certs_before
    assert small.run("--json", "cert", "list").json()["count"] == 1
    revoked = small.run("--json", "cert", "revoke", first["serial"], "--reason", "superseded")
    assert revoked.code == 0, revoked.stderr
    assert balance(small) == 3
    entries = small.run("--json", "log", "--account", ACCOUNT).json()["entries"]
    assert [e["action"] for e in entries[:3]] == ["cert.revoke", "cert.issue", "account.add"]
    assert all(e["operator"] == "alice" for e in entries)
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    assert entries[0]["details"]["refund"] == 2
    ledger = small.run("--json", "account", "show", ACCOUNT).json()["ledger"]
    assert [(e["action"], e["delta"], e["balance"]) for e in ledger] == [("refund", 2, 3), ("issue", -2, 1),
                                                                         ("credit", 3, 3)]


def test_credit_and_account_set(small: CaHome) -> None:
    assert small.run("account", "credit", ACCOUNT, "5", "--note", "order 1").code == 0
    assert balance(small) == 8
    assert small.run("account", "credit", ACCOUNT, "--", "-9").code == 5
    assert balance(small) == 8
    result = small.run("--json", "account", "set", ACCOUNT, "--add-domain", "TWCA.ORG.TW", "--add-alias", "TWCA Inc",
                       "--remove-domain", "mis.twca.com.tw")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["domains"] == ["twca.com.tw", "twca.org.tw"] and doc["org_aliases"] == ["TWCA Inc"]
    assert small.run("account", "set", ACCOUNT, "--remove-domain", "nope.tw").code == 5
    listing = small.run("--json", "account", "list").json()
    assert [a["id"] for a in listing["accounts"]] == [ACCOUNT]


def _not_after(record: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(record["not_after"].replace("Z", "+00:00"))


def test_renewal_rules(small: CaHome, tmp_path: Path) -> None:
    small.run("account", "credit", ACCOUNT, "10")
    www = csr_for(tmp_path, "www.twca.com.tw")
    short = issue(small, www, "--days", "20")
    renewed = small.run("--json", "cert", "renew", short["serial"], "--csr", www, "--days", "30")
    assert renewed.code == 0, renewed.stderr
    doc = renewed.json()
    assert doc["renewed"] == short["serial"]
    assert _not_after(doc["certificate"]) == _not_after(short) + dt.timedelta(days=30)
    new = x509.load_pem_x509_certificate(Path(doc["certificate"]["path"]).read_bytes())
    assert abs(new.not_valid_before_utc - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    shown = small.run("--json", "cert", "show", doc["certificate"]["serial"]).json()
    assert shown["renewed_from"] == short["serial"]
    old_shown = small.run("--json", "cert", "show", short["serial"]).json()
    assert old_shown["renewed_by"] == [doc["certificate"]["serial"]]

    # renewal is once per certificate (issue 12): the default validity is shown on another 20-day certificate
    short2 = issue(small, www, "--days", "20")
    default = small.run("--json", "cert", "renew", short2["serial"], "--csr", www)
    assert default.code == 0, default.stderr
    assert _not_after(default.json()["certificate"]) == _not_after(short2) + dt.timedelta(days=20)

    year = issue(small, www, "--years", "1")
    too_early = small.run("cert", "renew", year["serial"], "--csr", www)
    assert too_early.code == 5 and "--early" in too_early.stderr
    other_cn = small.run("cert", "renew", year["serial"], "--csr", csr_for(tmp_path, "api.twca.com.tw"), "--early")
    assert other_cn.code == 1
    early = small.run("--json", "cert", "renew", year["serial"], "--csr", www, "--early")
    assert early.code == 0
    assert _not_after(early.json()["certificate"]).year == _not_after(year).year + 1


def test_renewal_refuses_revoked_and_past_ca(small: CaHome, tmp_path: Path) -> None:
    small.run("account", "credit", ACCOUNT, "40")
    www = csr_for(tmp_path, "www.twca.com.tw")
    cert = issue(small, www, "--days", "10")
    assert small.run("cert", "revoke", cert["serial"], "--reason", "keyCompromise").code == 0
    assert small.run("cert", "renew", cert["serial"], "--csr", www).code == 5
    fresh = csr_for(tmp_path, "www.twca.com.tw", name="fresh")  # www's key is blocked now (keyCompromise)
    past = small.run("cert", "issue", fresh, "--account", ACCOUNT, "--years", "11")
    assert past.code == 5
    assert re.search(r"\d{4}-\d{2}-\d{2}", past.stderr)


def _bundle(home: CaHome, serial: str, out: Path) -> Path:
    assert home.run("cert", "export", serial, "--out-dir", out).code == 0
    return out


#: OpenSSL's X509_V_ERR_CERT_REVOKED (include/openssl/x509_vfy.h), as ``openssl verify`` reports it
X509_V_ERR_CERT_REVOKED = 23


def _openssl_verify(bundle: Path, crl: Path) -> tuple[int, str]:
    """``openssl verify -crl_check``: (exit code, its first X509_V_ERR number as text when it failed,
    else the output for the assertion message)."""
    proc = sh(require("openssl"), "verify", "-crl_check", "-CRLfile", crl, "-CAfile", bundle / "root.cer",
              "-untrusted", bundle / "uca.cer", bundle / "server.cer")
    text = (proc.stdout + proc.stderr).decode()
    error = re.search(r"error (\d+) at \d+ depth", text)
    return proc.returncode, str(int(error.group(1)) if error else 0) if proc.returncode else text


def _crl_entry(crl_file: Path, serial: str) -> tuple[x509.ReasonFlags | None, dt.datetime | None]:
    """The reason and invalidity date of ``serial``'s entry in the DER CRL, as cryptography parses them."""
    crl = x509.load_der_x509_crl(crl_file.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        reason = None
    try:
        invalid = entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        invalid = None
    return reason, invalid


def _crl_pem(home: CaHome, tmp: Path, name: str) -> Path:
    out = tmp / f"{name}.pem"
    result = home.run("--json", "crl", "--out", out)
    assert result.code == 0, result.stderr
    return out


def _ocsp(home: CaHome, bundle: Path, tmp: Path, name: str) -> ocsp.OCSPResponse:
    """Ask twcactl through an OpenSSL-made request; OpenSSL verifies the response, cryptography parses it."""
    req, resp = tmp / f"{name}.req", tmp / f"{name}.resp"
    proc = sh(require("openssl"), "ocsp", "-issuer", bundle / "uca.cer", "-cert", bundle / "server.cer",
              "-reqout", req)
    assert proc.returncode == 0, proc.stderr
    result = home.run("--json", "ocsp", "respond", "--request", req, "--out", resp)
    assert result.code == 0, result.stderr
    proc = sh(require("openssl"), "ocsp", "-respin", resp, "-issuer", bundle / "uca.cer", "-cert",
              bundle / "server.cer", "-VAfile", bundle / "uca.cer", "-no_nonce")
    assert proc.returncode == 0, proc.stderr
    response = ocsp.load_der_ocsp_response(resp.read_bytes())
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == x509.load_pem_x509_certificate((bundle / "server.cer").read_bytes()).serial_number
    return response


def test_revoke_hold_release_seen_by_openssl(small: CaHome, tmp_path: Path) -> None:
    record = issue(small, csr_for(tmp_path, "www.twca.com.tw"))
    bundle = _bundle(small, record["serial"], tmp_path / "b")
    code, out = _openssl_verify(bundle, _crl_pem(small, tmp_path, "crl0"))
    assert code == 0, out
    assert _ocsp(small, bundle, tmp_path, "o0").certificate_status == ocsp.OCSPCertStatus.GOOD

    held = small.run("--json", "cert", "hold", record["serial"])
    assert held.code == 0, held.stderr
    assert held.json()["certificate"]["status"] == "suspended"
    crl_file = small.path / "crl" / "uca.crl"
    assert _crl_entry(crl_file, record["serial"]) == (x509.ReasonFlags.certificate_hold, None)
    code, out = _openssl_verify(bundle, _crl_pem(small, tmp_path, "crl1"))
    assert (code, out) == (2, str(X509_V_ERR_CERT_REVOKED))
    assert small.run("--json", "cert", "list", "--status", "suspended").json()["count"] == 1
    held_ocsp = _ocsp(small, bundle, tmp_path, "o1")
    assert (held_ocsp.certificate_status, held_ocsp.revocation_reason) == (ocsp.OCSPCertStatus.REVOKED,
                                                                          x509.ReasonFlags.certificate_hold)

    released = small.run("--json", "cert", "release", record["serial"])
    assert released.code == 0 and released.json()["certificate"]["status"] == "valid"
    crl2 = x509.load_der_x509_crl(crl_file.read_bytes())
    assert crl2.get_revoked_certificate_by_serial_number(int(record["serial"], 16)) is None
    code, out = _openssl_verify(bundle, _crl_pem(small, tmp_path, "crl2"))
    assert code == 0, out
    assert small.run("cert", "release", record["serial"]).code == 5

    revoked = small.run("--json", "cert", "revoke", record["serial"], "--reason", "keyCompromise",
                        "--invalidity-date", "2026-01-02T03:04:05Z")
    assert revoked.code == 0, revoked.stderr
    code, out = _openssl_verify(bundle, _crl_pem(small, tmp_path, "crl3"))
    assert (code, out) == (2, str(X509_V_ERR_CERT_REVOKED))
    assert _crl_entry(crl_file, record["serial"]) == (x509.ReasonFlags.key_compromise,
                                                      dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    revoked_ocsp = _ocsp(small, bundle, tmp_path, "o2")
    assert (revoked_ocsp.certificate_status, revoked_ocsp.revocation_reason) == (ocsp.OCSPCertStatus.REVOKED,
                                                                                x509.ReasonFlags.key_compromise)
    assert small.run("cert", "revoke", record["serial"], "--reason", "superseded").code == 5
    assert small.run("cert", "hold", record["serial"]).code == 5

    numbers = [x509.load_pem_x509_crl((tmp_path / f"crl{i}.pem").read_bytes())
               .extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for i in range(4)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    lint = require("lint_crl")
    proc = sh(lint, "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", tmp_path / "crl3.pem")
    assert not re.search(r"\b(FATAL|ERROR)\b", proc.stdout.decode()), proc.stdout.decode()
    proc = sh("openssl", "crl", "-in", tmp_path / "crl3.pem", "-CAfile", bundle / "uca.cer", "-noout")
    assert proc.returncode == 0 and b"verify OK" in proc.stderr


def test_ocsp_unknown_and_revoked_reason_change(small: CaHome, tmp_path: Path) -> None:
    record = issue(small, csr_for(tmp_path, "www.twca.com.tw"))
    bundle = _bundle(small, record["serial"], tmp_path / "b")
    assert small.run("cert", "revoke", record["serial"], "--reason", "superseded").code == 0
    changed = small.run("--json", "cert", "revoke", record["serial"], "--reason", "keyCompromise")
    assert changed.code == 0 and changed.json()["reason"] == "keyCompromise"
    # a certificate of another CA: unknown to this one's records
    other = make_ca(tmp_path / "other", passphrase=None)
    other.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1")
    foreign = issue(other, csr_for(tmp_path, "x.twca.com.tw"))
    fb = _bundle(other, foreign["serial"], tmp_path / "fb")
    req = tmp_path / "u.req"
    sh("openssl", "ocsp", "-issuer", bundle / "uca.cer", "-serial", "0x" + foreign["serial"], "-reqout", req)
    result = small.run("--json", "ocsp", "respond", "--request", req, "--out", tmp_path / "u.resp")
    assert result.code == 0 and result.json()["status"] == "unknown"
    unknown = ocsp.load_der_ocsp_response((tmp_path / "u.resp").read_bytes())
    assert (unknown.certificate_status, unknown.serial_number) == (ocsp.OCSPCertStatus.UNKNOWN,
                                                                   int(foreign["serial"], 16))
    del fb
    bad = tmp_path / "junk.req"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    assert small.run("ocsp", "respond", "--request", bad, "--out", tmp_path / "x.resp").code == 3


def test_records_filters_and_csv(small: CaHome, tmp_path: Path) -> None:
    small.run("account", "credit", ACCOUNT, "10")
    www = issue(small, csr_for(tmp_path, "www.twca.com.tw"))
    api = issue(small, csr_for(tmp_path, "api.twca.com.tw"), "--note", "=HYPERLINK(\"x\")")
    mis = issue(small, csr_for(tmp_path, "ww2.mis.twca.com.tw"), "--days", "10")
    small.run("cert", "revoke", api["serial"], "--reason", "cessationOfOperation")

    def serials(*args: str) -> set[str]:
        result = small.run("--json", "cert", "list", *args)
        assert result.code == 0, result.stderr
        doc = result.json()
        assert doc["count"] == len(doc["certificates"])
        return {c["serial"] for c in doc["certificates"]}

    assert serials() == {www["serial"], api["serial"], mis["serial"]}
    assert serials("--status", "revoked") == {api["serial"]}
    assert serials("--status", "expiring") == {mis["serial"]}
    assert serials("--status", "valid") == {www["serial"]}
    assert serials("--status", "expired") == set()
    assert serials("--expiring-within", "15") == {mis["serial"]}
    assert serials("--expiring-within", "400") == {www["serial"], mis["serial"]}
    assert serials("--status", "expiring", "--expiring-within", "15") == {mis["serial"]}
    assert serials("--status", "revoked", "--expiring-within", "400") == set()
    assert serials("--cn", "W*") == {www["serial"], mis["serial"]}
    assert serials("--cn", "www.twca.com.tw") == {www["serial"]}
    assert serials("--domain", "mis.twca.com.tw") == {mis["serial"]}
    assert serials("--domain", "twca.com.tw") == {www["serial"], api["serial"], mis["serial"]}
    assert serials("--account", "70759028-02") == set()
    assert len(serials("--limit", "2")) == 2

    out = tmp_path / "report.csv"
    assert small.run("cert", "list", "--csv", out).code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["serial", "cn", "account", "profile", "status", "not_before", "not_after",
                             "revoked_at", "reason", "contact", "note", "renewed_by"]  # issue 28
    by_serial = {r["serial"]: r for r in rows}
    assert by_serial[api["serial"]]["status"] == "revoked"
    assert by_serial[api["serial"]]["reason"] == "cessationOfOperation"
    assert by_serial[api["serial"]]["note"].startswith("'=")
    assert small.run("cert", "list", "--csv", out).code == 5


def test_auditor_queries_only(small: CaHome, tmp_path: Path) -> None:
    record = issue(small, csr_for(tmp_path, "www.twca.com.tw"))
    assert small.run("operator", "add", "carol", "--role", "auditor").code == 0
    operators = small.run("--json", "operator", "list").json()["operators"]
    assert {(o["name"], o["role"]) for o in operators} == {("alice", "manager"), ("carol", "auditor")}
    auditor = {"TWCACTL_OPERATOR": "carol"}
    for args in (("cert", "list"), ("cert", "show", record["serial"]), ("account", "show", ACCOUNT), ("log",),
                 ("account", "list"), ("ca", "show"), ("ca", "config")):
        assert small.run(*args, env=auditor).code == 0, args
    before = db_rows(small.path, "SELECT COUNT(*), MAX(seq) FROM activity_log")
    csr = csr_for(tmp_path, "api.twca.com.tw")
    for args in (("cert", "issue", csr, "--account", ACCOUNT), ("cert", "revoke", record["serial"], "--reason",
                 "superseded"), ("cert", "hold", record["serial"]), ("cert", "release", record["serial"]),
                 ("cert", "renew", record["serial"], "--csr", csr, "--early"), ("crl",),
                 ("account", "credit", ACCOUNT, "1"), ("account", "add", "70759028-02", "--org", "X", "--domain",
                 "x.com.tw"), ("account", "set", ACCOUNT, "--add-domain", "y.com.tw"),
                 ("operator", "add", "dave", "--role", "manager"), ("ca", "config", "crl_days", "3")):
        result = small.run(*args, env=auditor)
        assert result.code == 5, (args, result.stderr)
        assert "auditor" in result.stderr
    assert db_rows(small.path, "SELECT COUNT(*), MAX(seq) FROM activity_log") == before
    request = tmp_path / "q.req"
    proc = sh(require("openssl"), "ocsp", "-issuer", small.path / "ca" / "uca.cer", "-serial", "0x" + record["serial"],
              "-reqout", request)
    assert proc.returncode == 0, proc.stderr
    signed = small.run("--json", "ocsp", "respond", "--request", request, "--out", tmp_path / "r", env=auditor)
    assert signed.code == 5 and signed.json()["error"]["kind"] == "state", "an OCSP response is signed: managers only"
    assert not (tmp_path / "r").exists()


def test_ca_config(small: CaHome) -> None:
    assert small.run("--json", "ca", "config").json()["settings"]["renewal_window_days"] == 30
    assert small.run("ca", "config", "renewal_window_days", "60").code == 0
    assert small.run("--json", "ca", "config", "renewal_window_days").json() == {"settings": {"renewal_window_days": 60}}
    assert small.run("ca", "config", "renewal_window_days", "-1").code == 2
    assert small.run("ca", "config", "nonsense").code == 2
    assert small.run("ca", "config", "crl_url", "ftp://x").code == 2
    assert small.run("ca", "config", "crl_url", "http://crl.twca.test/uca.crl").code == 0
    log = small.run("--json", "log", "--action", "ca.config").json()["entries"]
    assert [e["details"]["key"] for e in log] == ["crl_url", "renewal_window_days"]


def test_log_verify_detects_tampering(small: CaHome, tmp_path: Path) -> None:
    issue(small, csr_for(tmp_path, "www.twca.com.tw"))
    assert small.run("log", "verify").code == 0
    db_run(small.path, "UPDATE activity_log SET operator = 'mallory' WHERE action = 'cert.issue'")
    result = small.run("--json", "log", "verify")
    assert result.code == 1
    assert any("changed" in f["message"] for f in result.json()["findings"])


def test_two_intermediates_and_profiles(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", "--intermediates", "2", passphrase=None)
    home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10")
    record = issue(home, csr_for(tmp_path, "www.twca.com.tw"))
    out = tmp_path / "bundle"
    assert home.run("cert", "export", record["serial"], "--out-dir", out).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["cert.zip", "root.cer", "server.cer", "uca_1.cer", "uca_2.cer"]
    proc = sh(require("openssl"), "verify", "-CAfile", out / "root.cer", "-untrusted", out / "uca_1.cer",
              "-untrusted", out / "uca_2.cer", out / "server.cer")
    assert proc.returncode == 0, proc.stderr

    ev = issue(home, csr_for(tmp_path, "ev.twca.com.tw"), "--profile", "ev")
    cert = x509.load_pem_x509_certificate(Path(ev["path"]).read_bytes())
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.1"]
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "70759028"
    assert cert.subject.get_attributes_for_oid(NameOID.JURISDICTION_COUNTRY_NAME)[0].value == "TW"
    assert cert.subject.get_attributes_for_oid(NameOID.BUSINESS_CATEGORY)

    key_dir = tmp_path / "p"
    key_dir.mkdir()
    proc = sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-subj", "/C=TW/O=TWCA/CN=A123456789-63-YIRU", "-addext", "subjectAltName=email:yiru@twca.com.tw",
              "-keyout", key_dir / "k", "-out", key_dir / "ec.csr")
    assert proc.returncode == 0, proc.stderr
    for profile, ekus in (("user-sign", [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                          ("user-enc", [ExtendedKeyUsageOID.EMAIL_PROTECTION])):
        rec = issue(home, key_dir / "ec.csr", "--profile", profile)
        cert = x509.load_pem_x509_certificate(Path(rec["path"]).read_bytes())
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert not ku.key_encipherment, "never keyEncipherment on an EC key"
        if profile == "user-sign":
            assert ku.digital_signature and ku.content_commitment
        else:
            assert ku.key_agreement and not ku.digital_signature
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == ["yiru@twca.com.tw"]


def test_incremental_crl_equals_full_rebuild(small: CaHome, tmp_path: Path) -> None:
    small.run("account", "credit", ACCOUNT, "10")
    records = [issue(small, csr_for(tmp_path, f"h{i}.twca.com.tw")) for i in range(5)]
    for args in (("revoke", records[0]["serial"], "--reason", "unspecified"), ("hold", records[1]["serial"]),
                 ("hold", records[2]["serial"]), ("release", records[2]["serial"]),
                 ("revoke", records[1]["serial"], "--reason", "keyCompromise", "--invalidity-date",
                  "2026-01-02T03:04:05Z"),
                 ("hold", records[3]["serial"]), ("hold", records[4]["serial"])):
        assert small.run("cert", *args).code == 0, args
    # a held certificate listed, and one held and then released, off the list
    assert small.run("cert", "release", records[4]["serial"]).code == 0

    def entries(*flags: str) -> dict[int, tuple[x509.ReasonFlags | None, dt.datetime | None]]:
        out = tmp_path / f"crl{len(flags)}.pem"
        assert small.run("crl", "--out", out, "--force", *flags).code == 0
        crl = x509.load_pem_x509_crl(out.read_bytes())
        result: dict[int, tuple[x509.ReasonFlags | None, dt.datetime | None]] = {}
        for entry in crl:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            except x509.ExtensionNotFound:
                reason = None
            try:
                invalid = entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
            except x509.ExtensionNotFound:
                invalid = None
            result[entry.serial_number] = (reason, invalid)
        return result

    incremental, full = entries(), entries("--full")
    assert incremental == full == {
        int(records[0]["serial"], 16): (None, None),
        int(records[1]["serial"], 16): (x509.ReasonFlags.key_compromise, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        int(records[3]["serial"], 16): (x509.ReasonFlags.certificate_hold, None),
    }
