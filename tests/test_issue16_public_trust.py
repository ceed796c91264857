"""Issue 16: public-trust mode.  Server certificates, CRLs, OCSP responses and CA certificates judged by the real
pkilint console scripts (no ERROR or FATAL finding; every WARNING listed in docs/public-trust.md), the SC-081 caps
crossed with libfaketime (``faketime``) running the real ``twcactl`` console script, and certificate-years sold as
subscriptions of short certificates (free re-issues inside the paid time, then a charge)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from tests.conftest import ACCOUNT, CaHome, invoke, require, sh
from tests.validation_support import World, configure, settings, validate_http, world_fixture
from twcactl.rules import public_trust as br
from twcactl.rules.quota import subscription_charge
from twcactl.rules.validity import Validity

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "public-trust.md").read_text(encoding="utf-8")
CRL_URL = "http://pki.example.tw/repo/uca.crl"
OV_SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.twca.com.tw"
UTC = dt.UTC


# ----------------------------------------------------------------------------- helpers
def _csr(directory: Path, name: str, subj: str, san: str | None = None) -> Path:
    csr = directory / f"{name}.csr"
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    proc = sh("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subj, *extra,
              "-keyout", directory / f"{name}.key", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _init_args(*extra: str) -> list[str]:
    return ["ca", "init", "--public-trust", "--org", "twcactl Test", "--country", "TW", "--root-key-type", "rsa2048",
            "--no-passphrase", "--crl-url", CRL_URL, "--ocsp-url", "http://ocsp.example.tw", *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """dnsmasq, nginx and five remote perspectives: a public-trust issuance validates the domain, checks CAA and
    has the perspectives corroborate (issue 26)."""
    world = world_fixture(tmp_path_factory.mktemp("world"))
    started = next(world)
    started.serve_all()
    yield started
    next(world, None)


def _public_home(path: Path, world: World, quota: int = 20) -> CaHome:
    result = invoke("--home", path, *_init_args(), env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 0, result.stderr
    home = CaHome(path, None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
                    "--quota", str(quota)).code == 0
    configure(home, world)
    validate_http(home, world, "twca.com.tw")
    return home


def _lint_all(jobs: list[list[str | Path]]) -> list[tuple[int, str]]:
    """Run pkilint console scripts side by side (each takes about 2 s to start); ``(exit code, stdout)`` each."""
    procs = [subprocess.Popen([require(str(cmd[0])), *map(str, cmd[1:])], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in jobs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert "Traceback" not in stderr, stderr
        out.append((p.returncode, stdout + stderr))
    return out


_FINDING = re.compile(r"^\s+(\S+) \((FATAL|ERROR|WARNING|NOTICE|INFO|DEBUG)\)")


def _findings(text: str) -> dict[str, set[str]]:
    """pkilint's TEXT output parsed by severity: ``{"ERROR": {codes}, "WARNING": {codes}, ...}``."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _FINDING.match(line)
        if m:
            found.setdefault(m.group(2), set()).add(m.group(1))
    return found


def _assert_clean(text: str, what: str) -> set[str]:
    """No ERROR or FATAL finding; every WARNING is listed in docs/public-trust.md.  Returns the warnings."""
    found = _findings(text)
    assert not found.get("ERROR") and not found.get("FATAL"), f"{what}: {text}"
    warnings = found.get("WARNING", set())
    undocumented = {w for w in warnings if f"`{w}`" not in DOCS}
    assert not undocumented, f"{what}: warnings not explained in docs/public-trust.md: {undocumented}"
    return warnings


def _issue(home: CaHome, csr: Path, *args: str) -> dict[str, Any]:
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *args)
    assert result.code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


def _cert(record: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(record["path"]).read_bytes())


def _days(cert: x509.Certificate) -> float:
    """The validity period as BR §6.3.2 counts it (both ends included), in days."""
    span = cert.not_valid_after_utc - cert.not_valid_before_utc + dt.timedelta(seconds=1)
    return span / dt.timedelta(days=1)


# ----------------------------------------------------------------------------- the rules alone
def test_sc081_table_and_terms() -> None:
    at = dt.datetime
    assert br.max_validity_days(at(2026, 3, 14, 23, 59, 59, tzinfo=UTC)) == 398
    assert br.max_validity_days(at(2026, 3, 15, tzinfo=UTC)) == 200
    assert br.max_validity_days(at(2027, 3, 15, tzinfo=UTC)) == 100
    assert br.max_validity_days(at(2029, 3, 14, tzinfo=UTC)) == 100
    assert br.max_validity_days(at(2029, 3, 15, tzinfo=UTC)) == 47
    start = at(2027, 3, 20, 12, tzinfo=UTC)
    term = br.term(start, at(2028, 3, 20, 12, tzinfo=UTC))
    assert term.capped and term.not_after == start + dt.timedelta(days=100, seconds=-1) and term.note()
    short = br.term(start, start + dt.timedelta(days=30))
    assert not short.capped and short.not_after == start + dt.timedelta(days=30) and short.note() is None
    assert br.crl_days(30, True) == 10 and br.crl_days(30, False) == 30 and br.crl_days(7, True) == 7
    assert br.is_short_lived(start, start + dt.timedelta(days=7, seconds=-1))
    assert not br.is_short_lived(start, start + dt.timedelta(days=8))


def test_subscription_charge_decision() -> None:
    end = dt.datetime(2027, 6, 28, tzinfo=UTC)
    paid = dt.datetime(2028, 3, 20, tzinfo=UTC)
    free = subscription_charge(old_not_after=end, old_paid_until=paid, requested=None, default=Validity(years=1))
    assert (free.years, free.paid_until, free.why) == (0, paid, "paid_time")
    more = subscription_charge(old_not_after=end, old_paid_until=paid, requested=Validity(years=2),
                               default=Validity(years=1))
    assert (more.years, more.paid_until.year, more.why) == (2, 2030, "charged")
    over = subscription_charge(old_not_after=paid, old_paid_until=paid, requested=None, default=Validity(years=1))
    assert (over.years, over.paid_until.year, over.why) == (1, 2029, "charged")
    legacy = subscription_charge(old_not_after=end, old_paid_until=None, requested=None, default=Validity(days=90))
    assert (legacy.years, legacy.paid_until) == (1, end + dt.timedelta(days=90))


# ----------------------------------------------------------------------------- certificates through pkilint
def test_ov_ev_dv_and_ca_certificates_pass_pkilint(tmp_path: Path, world: World) -> None:
    home = _public_home(tmp_path / "ca", world)
    assert home.run("ca", "config", "cps_url", "http://pki.example.tw/cps").code == 0
    ov = _issue(home, _csr(tmp_path, "ov", OV_SUBJ), "--profile", "ov", "--years", "1")
    ev = _issue(home, _csr(tmp_path, "ev", "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN=ev.twca.com.tw",
                           "DNS:ev.twca.com.tw,DNS:twca.com.tw"), "--profile", "ev", "--years", "1")
    dv = _issue(home, _csr(tmp_path, "dv", "/CN=shop.twca.com.tw"), "--profile", "dv", "--days", "30")
    ssl = _issue(home, _csr(tmp_path, "ssl", OV_SUBJ.replace("www.", "mail.")), "--days", "90")

    # a 1-year purchase is capped, with a note, never silently
    assert ov["notes"] and ev["notes"] and not dv["notes"]
    leaf = {name: _cert(doc["certificates"][0]) for name, doc in (("ov", ov), ("ev", ev), ("dv", dv), ("ssl", ssl))}
    cap = br.max_validity_days(leaf["ov"].not_valid_before_utc)
    assert _days(leaf["ov"]) == cap and _days(leaf["ev"]) == cap
    assert ov["certificates"][0]["paid_until"][:4] == str(leaf["ov"].not_valid_before_utc.year + 1)

    policy = {"ov": "2.23.140.1.2.2", "ev": "2.23.140.1.1", "dv": "2.23.140.1.2.1", "ssl": "2.23.140.1.2.2"}
    for name, cert in leaf.items():
        ext = cert.extensions
        policies = ext.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == [policy[name]]
        assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
        aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier and aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
        assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn in ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        crldp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
        assert crldp[0].full_name[0].value == CRL_URL
        aia = {a.access_method: a.access_location.value
               for a in ext.get_extension_for_class(x509.AuthorityInformationAccess).value}
        assert aia[AuthorityInformationAccessOID.CA_ISSUERS] == "http://pki.example.tw/repo/uca.cer"
        assert 64 <= cert.serial_number.bit_length() <= 159  # positive, at most 20 octets, 64+ random bits
    ev_policy = leaf["ev"].extensions.get_extension_for_class(x509.CertificatePolicies).value[0]
    assert ev_policy.policy_qualifiers == ["http://pki.example.tw/cps"]
    assert [a.oid for a in leaf["dv"].subject] == [NameOID.COMMON_NAME]
    order = [a.oid for a in leaf["ov"].subject]
    assert order == [NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
                     NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]  # BR 7.1.4.2 order, the CSR's OU dropped

    ca = home.path / "ca"
    lint = "lint_cabf_serverauth_cert"
    results = _lint_all([
        [lint, "lint", "-t", "OV-FINAL-CERTIFICATE", ov["certificates"][0]["path"]],
        [lint, "lint", "-t", "EV-FINAL-CERTIFICATE", ev["certificates"][0]["path"]],
        [lint, "lint", "-t", "DV-FINAL-CERTIFICATE", dv["certificates"][0]["path"]],
        [lint, "lint", "-t", "OV-FINAL-CERTIFICATE", ssl["certificates"][0]["path"]],
        [lint, "lint", "-t", "ROOT-CA", ca / "root.cer"],
        [lint, "lint", "-t", "INTERNAL-UNCONSTRAINED-TLS-CA", ca / "uca.cer"],
        [lint, "lint", "-d", "-o", ca / "uca.cer"],
        [lint, "lint", "-d", "-o", ca / "root.cer"],
        ["lint_pkix_cert", "lint", ca / "uca.cer"],
    ])
    names = ["ov", "ev", "dv", "ssl", "root", "uca", "uca detected", "root detected", "uca pkix"]
    warned = {name: _assert_clean(text, name) for name, (_code, text) in zip(names, results)}
    assert "INTERNAL-UNCONSTRAINED-TLS-CA" in results[6][1] and "ROOT-CA" in results[7][1]
    assert warned["root"] == set() and warned["uca"] == set()


def test_crl_and_ocsp_of_a_public_trust_ca_pass_pkilint(tmp_path: Path, world: World) -> None:
    home = _public_home(tmp_path / "ca", world)
    assert home.run("ca", "config", "crl_days", "30").code == 0  # capped at 10 in public-trust mode (BR 4.9.7)
    a = _issue(home, _csr(tmp_path, "a", OV_SUBJ), "--days", "90")["certificates"][0]
    b = _issue(home, _csr(tmp_path, "b", OV_SUBJ.replace("www.", "api.")), "--days", "90")["certificates"][0]
    for serial, reason in ((a["serial"], "keyCompromise"), (b["serial"], "superseded")):
        assert home.run("cert", "revoke", serial, "--reason", reason).code == 0
    crl_file = home.path / "crl" / "uca.crl"
    crl = x509.load_der_x509_crl(crl_file.read_bytes())
    assert len(crl) == 2 and crl.next_update_utc is not None and crl.last_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc <= dt.timedelta(days=10)

    requests = []
    for name, record in (("revoked", a), ("good", _issue(home, _csr(tmp_path, "c", OV_SUBJ.replace("www.", "c.")),
                                                              "--days", "30")["certificates"][0])):
        req = tmp_path / f"{name}.req"
        proc = sh("openssl", "ocsp", "-issuer", home.path / "ca" / "uca.cer", "-cert", record["path"],
                  "-reqout", req, "-no_nonce")
        assert proc.returncode == 0, proc.stderr
        result = home.run("--json", "ocsp", "respond", "--request", req, "--out", tmp_path / f"{name}.resp")
        assert result.code == 0, result.stderr
        requests.append(tmp_path / f"{name}.resp")
    results = _lint_all([["lint_crl", "lint", "-t", "CRL", "-p", "BR", crl_file],
                         *[["lint_ocsp_response", "lint", resp] for resp in requests]])
    for name, (_code, text) in zip(["crl", "ocsp revoked", "ocsp good"], results):
        _assert_clean(text, name)


def test_hold_refused_for_server_certificates_kept_for_personal(tmp_path: Path, world: World) -> None:
    home = _public_home(tmp_path / "ca", world)
    server = _issue(home, _csr(tmp_path, "s", OV_SUBJ), "--days", "30")["certificates"][0]
    crl_before = (home.path / "crl").exists() and sorted((home.path / "crl").iterdir())
    result = home.run("--json", "cert", "hold", server["serial"])
    assert result.code == 5
    error = json.loads(result.stdout)
    assert error["error"]["code"] == 5 and error["rule"] == "BR 4.9.13"
    shown = home.run("--json", "cert", "show", server["serial"]).json()
    assert shown["certificate"]["status"] in ("valid", "expiring")
    assert ((home.path / "crl").exists() and sorted((home.path / "crl").iterdir())) == crl_before

    personal = _issue(home, _csr(tmp_path, "p", "/C=TW/O=TWCA/CN=A123456789-63-YIRU", "email:yiru@twca.com.tw"),
                      "--profile", "user-sign", "--years", "2")["certificates"][0]
    assert personal["paid_until"] is None and personal["reissue_from"] is None  # not a TLS subscription
    assert _days(_cert(personal)) > 700  # personal certificates are not capped by SC-081
    assert home.run("cert", "hold", personal["serial"]).code == 0
    assert home.run("cert", "release", personal["serial"]).code == 0


def test_strict_refuses_what_the_cap_would_shorten(tmp_path: Path, world: World) -> None:
    home = _public_home(tmp_path / "ca", world, quota=3)
    csr = _csr(tmp_path, "s", OV_SUBJ)
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--years", "1", "--strict")
    assert result.code == 1 and json.loads(result.stdout)["max_days"] == 200
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 3
    assert home.run("--json", "cert", "list").json()["count"] == 0
    ok = _issue(home, csr, "--days", "90", "--strict")
    assert not ok["notes"] and ok["certificates"][0]["paid_until"] == ok["certificates"][0]["not_after"]


def test_public_trust_setting_is_typed_and_logged(tmp_path: Path, ca_home: CaHome, world: World) -> None:
    assert ca_home.run("ca", "config", "public_trust", "maybe").code == 2
    result = ca_home.run("--json", "ca", "config", "public_trust", "true")
    assert result.code == 0 and result.json()["settings"] == {"public_trust": True}
    entries = ca_home.run("--json", "log", "--action", "ca.config").json()["entries"]
    assert any(e["action"] == "ca.config" and e["details"]["key"] == "public_trust" and e["details"]["new"] is True
               for e in entries)
    configure(ca_home, world)
    validate_http(ca_home, world, "twca.com.tw")
    # issue 26: the pre-issuance lint refuses what the BR refuse, a server certificate without AIA among them
    refused = ca_home.run("--json", "cert", "issue", _csr(tmp_path, "s", OV_SUBJ), "--account", ACCOUNT)
    assert refused.code == 1, refused.stdout
    assert {f["rule"] for f in refused.json()["findings"]} == {"lint.pre_issuance"}
    assert ca_home.run("ca", "config", "ocsp_url", "http://ocsp.example.tw").code == 0
    assert ca_home.run("ca", "config", "crl_url", CRL_URL).code == 0
    doc = _issue(ca_home, _csr(tmp_path, "s", OV_SUBJ), "--years", "1")
    cert = _cert(doc["certificates"][0])
    assert doc["notes"] and _days(cert) == br.max_validity_days(dt.datetime.now(UTC))
    assert ca_home.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


def test_refund_rules_apply_to_the_paid_time(tmp_path: Path, world: World) -> None:
    home = _public_home(tmp_path / "ca", world, quota=5)
    first = _issue(home, _csr(tmp_path, "a", OV_SUBJ), "--years", "2")["certificates"][0]
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 3
    result = home.run("--json", "cert", "revoke", first["serial"], "--reason", "superseded")
    assert result.code == 0 and result.json()["refund"] == {"years": 2, "why": "refund_window", "renewed_by": None}
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 5

    second = _issue(home, _csr(tmp_path, "b", OV_SUBJ), "--years", "1")["certificates"][0]
    renewed = home.run("--json", "cert", "renew", second["serial"], "--csr", tmp_path / "b.csr", "--early")
    assert renewed.code == 0 and renewed.json()["charge"] == "paid_time"
    new = renewed.json()["certificate"]
    # the paid time was carried into the re-issue: revoking the old one gives nothing back, nor the free one
    old_revoke = home.run("--json", "cert", "revoke", second["serial"], "--reason", "superseded").json()
    assert old_revoke["refund"]["why"] == "renewed" and old_revoke["refund"]["years"] == 0
    new_revoke = home.run("--json", "cert", "revoke", new["serial"], "--reason", "superseded").json()
    assert new_revoke["refund"] == {"years": 0, "why": "not_charged", "renewed_by": None}
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 4
    assert home.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


def test_acme_renewal_path_reissues_free_inside_the_paid_time(tmp_path: Path, world: World) -> None:
    """authority/acme.py finalize: a new order is issue_certificates(ACME_VALIDITY, domain-validated); an order
    that replaces a certificate is renew_certificate(validity=None, early=True).  The same calls, in process."""
    from twcactl.authority.acme import ACME_VALIDITY
    from twcactl.authority.lifecycle import CsrInput, issue_certificates, renew_certificate
    from twcactl.store import Store

    home = _public_home(tmp_path / "ca", world, quota=2)
    csr = _csr(tmp_path, "acme", "/CN=www.twca.com.tw").read_bytes()
    item = CsrInput(name="acme-order", data=csr, domain_validated=True, profile="ssl")
    store = Store.open(home.path)
    try:
        issued = issue_certificates(store, [item], account_id=ACCOUNT, profile="ssl", validity=ACME_VALIDITY,
                                    operator="alice", passphrase=lambda: None, note="acme")
        first = issued.issued[0]
        cert = x509.load_der_x509_certificate(first.der)
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.2.1"]  # DV: no O in subject
        assert issued.balance_after == 1 and first.paid_until is not None and issued.notes
        renewed = renew_certificate(store, first.serial, item, validity=None, early=True, operator="alice",
                                    passphrase=lambda: None, note="acme renewal")
        assert renewed.charge == "paid_time" and renewed.balance_after == 1
        assert renewed.certificate.paid_until == first.paid_until
        assert renewed.certificate.not_after <= br.latest_not_after(renewed.certificate.not_before)
    finally:
        store.close()
    ledger = home.run("--json", "account", "show", ACCOUNT).json()["ledger"]
    assert [(e["action"], e["delta"]) for e in ledger][:2] == [("renew", 0), ("issue", -1)]
    assert home.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


# ----------------------------------------------------------------------------- crossing the SC-081 dates
def _at(when: str, home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real ``twcactl`` console script run by libfaketime at ``when``."""
    twcactl = Path(sys.executable).parent / "twcactl"
    env = {"TWCACTL_OPERATOR": "alice", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # this tree's code
    return subprocess.run([require("faketime"), when, str(twcactl), "--home", str(home), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)


def _at_json(when: str, home: Path, *args: str | Path) -> Any:
    proc = _at(when, home, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _validate_at(when: str, home: Path, world: World) -> None:
    """Validate twca.com.tw (http-file) at ``when``: the reuse period of that date then counts from it (issue 26)."""
    started = _at_json(when, home, "domain", "validate", ACCOUNT, "twca.com.tw", "--method", "http-file")
    world.web.put(started["validation"]["value"])
    _at_json(when, home, "domain", "check", ACCOUNT, "twca.com.tw")


def test_faketime_caps_and_a_one_year_subscription(tmp_path: Path, world: World) -> None:
    home = tmp_path / "ca"
    start = "2027-03-20 12:00:00"
    proc = _at(start, home, *_init_args())
    assert proc.returncode == 0, proc.stderr
    assert _at(start, home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
               "--quota", "3").returncode == 0
    for key, value in settings(world):
        assert _at(start, home, "ca", "config", key, value).returncode == 0
    _validate_at(start, home, world)
    csr = _csr(tmp_path, "www", OV_SUBJ)

    doc = _at_json(start, home, "cert", "issue", csr, "--account", ACCOUNT, "--years", "1", "--profile", "ov")
    first = doc["certificates"][0]
    cert = _cert(first)
    assert cert.not_valid_before_utc.date() == dt.date(2027, 3, 20)
    assert _days(cert) == 100 and doc["notes"] and doc["account"]["balance"] == 2
    assert first["paid_until"].startswith("2028-03-20") and first["reissue_from"].startswith("2027-05-29")
    paths = [first["path"]]

    # free re-issues until the paid time ends; each no longer than the cap of its date, never past paid-until
    serial = first["serial"]
    for when in ("2027-06-10", "2027-09-10", "2027-12-01", "2028-02-20"):
        if when in ("2027-09-10", "2028-02-20"):  # past the 100-day reuse period of a validation (BR 4.2.1)
            _validate_at(f"{when} 11:00:00", home, world)
        doc = _at_json(f"{when} 12:00:00", home, "cert", "renew", serial, "--csr", csr)
        new = doc["certificate"]
        assert doc["charge"] == "paid_time" and doc["account"]["balance"] == 2, when
        assert new["paid_until"] == first["paid_until"]
        cert = _cert(new)
        assert _days(cert) <= 100 and cert.not_valid_before_utc.date().isoformat() == when
        serial = new["serial"]
        paths.append(new["path"])
    assert new["not_after"] == new["paid_until"] and new["reissue_from"] is None  # the paid time is served

    shown = _at_json("2028-03-01 12:00:00", home, "account", "show", ACCOUNT)
    assert [s["serial"] for s in shown["subscriptions"]] == [serial]
    assert shown["subscriptions"][0]["paid_until"] == first["paid_until"]
    assert _at_json("2028-03-01 12:00:00", home, "cert", "show", serial)["certificate"]["reissue_from"] is None

    # past the paid time: charged as today, the next year's paid time follows on
    doc = _at_json("2028-03-10 12:00:00", home, "cert", "renew", serial, "--csr", csr)
    assert doc["charge"] == "charged" and doc["account"]["balance"] == 1
    assert doc["certificate"]["paid_until"].startswith("2029-03-20") and _days(_cert(doc["certificate"])) == 100
    paths.append(doc["certificate"]["path"])

    # 2029-03-20: 47 days; a validation is reused for 10 days
    _validate_at("2029-03-20 11:00:00", home, world)
    doc = _at_json("2029-03-20 12:00:00", home, "cert", "issue", _csr(tmp_path, "n", OV_SUBJ.replace("www.", "n.")),
                   "--account", ACCOUNT, "--years", "1")
    cert = _cert(doc["certificates"][0])
    assert _days(cert) == 47 and doc["account"]["balance"] == 0
    paths.append(doc["certificates"][0]["path"])

    # the root's CRL runs 12 months (BR 4.9.7): the yearly root ceremony signs the next one (issue 25)
    _at_json("2029-03-20 12:30:00", home, "crl", "--ca", "root")
    check = _at_json("2029-03-20 13:00:00", home, "ca", "check", "--no-repair")
    assert check["ok"] is True, check["findings"]
    # pkilint judges each certificate by the rules of its own notBefore
    jobs: list[list[str | Path]] = [["lint_cabf_serverauth_cert", "lint", "-t", "OV-FINAL-CERTIFICATE",
                                     "--validity-period-start", "DOCUMENT", p] for p in (paths[0], paths[-1])]
    for (_code, text), name in zip(_lint_all(jobs), ("2027", "2029")):
        _assert_clean(text, name)


@pytest.mark.parametrize("bad", ["https://pki.example.tw/uca.crl", ""])
def test_public_trust_init_needs_an_http_crl_url(tmp_path: Path, bad: str) -> None:
    args = _init_args()
    at = args.index("--crl-url")
    args[at + 1:at + 2] = [bad]
    if not bad:
        del args[at:at + 2]
    result = invoke("--home", tmp_path / "ca", *args, env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 2 and not (tmp_path / "ca").exists()
