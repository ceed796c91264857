"""Issue 26: public-trust issuance as a root program asks it: no internal names, domain validation with the SC-081
reuse periods, CAA (RFC 8659 / 8657), multi-perspective corroboration (BR 3.2.2.9) and pre-issuance linting.

Real servers started here on loopback: dnsmasq (TXT, CAA and A records; a zone whose upstream answers SERVFAIL),
nginx (the http-file validation files) and five ``twcactl serve --perspective`` processes, each with its own
dnsmasq (one set for the module).  libfaketime moves the real ``twcactl`` across the dated tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, require, sh
from tests.serve_support import free_port
from tests.validation_support import CA_IDENTITY, SERVFAIL_ZONE, World, configure, validate_http, world_fixture
from twcactl.rules import public_trust as br
from twcactl.validation import caa, names

UTC = dt.UTC
CRL_URL = "http://pki.example.tw/repo/uca.crl"
DOMAIN = "twca.com.tw"
INTERNAL = ["corp.local", "example.internal", "alpha.onion", "shop.test", "demo.example", "bad.invalid",
            "app.localhost", "nas.home.arpa", "peer.alt", "router.lan", "intranet.corp", "fileserver.home",
            "printer.localdomain", "vault.private", "wiki.intranet", "svc.notarealtld"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from world_fixture(tmp_path_factory.mktemp("world"))


# ----------------------------------------------------------------------------- helpers
def _rsa_2049(directory: Path) -> Path:
    """An RSA key with a 2049-bit modulus (OpenSSL 3 and cryptography round a 2049-bit request down to 2048):
    primes of 1025 and 1024 bits from ``openssl prime`` (top bits set), assembled by cryptography."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    for _ in range(50):
        p, q = (int(sh("openssl", "prime", "-generate", "-bits", str(bits)).stdout) for bits in (1025, 1024))
        n = p * q
        if n.bit_length() == 2049 and p != q:
            break
    else:
        raise AssertionError("no 2049-bit modulus in 50 tries")
    d = pow(65537, -1, (p - 1) * (q - 1))
    key = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                rsa.RSAPublicNumbers(65537, n)).private_key()
    path = directory / "rsa2049.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _key_csr(directory: Path, name: str, cn: str, sans: list[str] | None = None, bits: int = 2048) -> Path:
    key = directory / f"{name}.key"
    if bits == 2049:
        key = _rsa_2049(directory)
    else:
        assert sh("openssl", "genrsa", "-out", key, str(bits)).returncode == 0
    extra = ["-addext", "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans)] if sans else []
    csr = directory / f"{name}.csr"
    proc = sh("openssl", "req", "-new", "-key", key, "-subj", f"/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}", *extra,
              "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _home(path: Path, world: World | None, *, public: bool = True, urls: list[str] | None = None,
          domains: tuple[str, ...] = (DOMAIN,)) -> CaHome:
    init = ["ca", "init", "--org", "twcactl Test", "--country", "TW", "--root-key-type", "rsa2048", "--no-passphrase",
            "--crl-url", CRL_URL, "--ocsp-url", "http://ocsp.example.tw"]
    result = invoke("--home", path, *init, *(["--public-trust"] if public else []), env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 0, result.stderr
    home = CaHome(path, None)
    if world is not None:
        configure(home, world, urls)
    args = [a for d in domains for a in ("--domain", d)]
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", *args, "--quota", "50").code == 0
    return home


def _validate_http(home: CaHome, world: World, domain: str = DOMAIN) -> dict[str, Any]:
    return validate_http(home, world, domain)


def _issue(home: CaHome, csr: Path, *args: str) -> Any:
    return home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *args)


def _rules(result: Any) -> set[str]:
    return {f["rule"] for f in result.json()["findings"] if not f["ok"]}


def _error(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout or result.stderr)  # type: ignore[no-any-return]


def _faketime(when: str, home: CaHome, *args: str) -> subprocess.CompletedProcess[str]:
    twcactl = Path(sys.executable).with_name("twcactl")
    env = {**os.environ, "TWCACTL_OPERATOR": "alice", "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "TZ": "UTC"}
    return subprocess.run([require("faketime"), when, str(twcactl), "--home", str(home.path), "--json", *args],
                          capture_output=True, text=True, timeout=120, env=env)


# ----------------------------------------------------------------------------- dated tables and pure rules
def test_reuse_and_mpic_tables_by_date() -> None:
    at = dt.datetime
    assert br.dcv_reuse_days(at(2026, 3, 14, 23, 59, tzinfo=UTC)) == 398
    assert br.dcv_reuse_days(at(2026, 3, 15, tzinfo=UTC)) == 200
    assert br.dcv_reuse_days(at(2027, 3, 15, tzinfo=UTC)) == 100
    assert br.dcv_reuse_days(at(2029, 3, 15, tzinfo=UTC)) == 10
    assert br.mpic_rule(at(2025, 6, 1, tzinfo=UTC), 0).corroborated(0)  # advisory before 2025-09-15
    for day, required in ((at(2025, 9, 15), 2), (at(2026, 3, 15), 3), (at(2026, 6, 15), 4), (at(2026, 12, 15), 5)):
        rule = br.mpic_rule(day.replace(tzinfo=UTC), required)
        assert (rule.required, rule.allowed_failures) == (required, 1)
        assert rule.corroborated(required - 1) and not rule.corroborated(required - 2)
        assert not br.mpic_rule(day.replace(tzinfo=UTC), required - 1).corroborated(required - 1)
    assert br.mpic_rule(at(2027, 1, 1, tzinfo=UTC), 6).allowed_failures == 2


def test_every_special_use_suffix_and_the_tld_list() -> None:
    for suffix in names.SPECIAL_USE:
        finding = names.name_problem(f"www.{suffix}")
        assert finding is not None and finding.rule == "name.special_use" and suffix in finding.message
    assert names.name_problem("www.twca.com.tw") is None and names.name_problem("example.com") is None
    finding = names.name_problem("a.notarealtld")
    assert finding is not None and finding.rule == "name.tld"
    assert {"com", "tw", "org", "xn--kprw13d"} <= names.iana_tlds() and "github.io" not in names.iana_tlds()
    assert names.rsa_size_problem(2048) is None and names.rsa_size_problem(3072) is None
    assert names.rsa_size_problem(2049) is not None and names.rsa_size_problem(2040) is not None


def test_caa_evaluation_rules() -> None:
    rec = caa.Record
    ours = caa.CaaRequest("www.twca.com.tw", (CA_IDENTITY,), None, "ca-http-file")
    assert caa.evaluate(ours, None, []).allowed
    assert caa.evaluate(ours, DOMAIN, [rec(0, "iodef", "mailto:x@twca.com.tw")]).allowed
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", ";")]).rule == "caa.forbidden"
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", f"{CA_IDENTITY.upper()}")]).allowed
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", f"{CA_IDENTITY}; validationmethods=dns-01")]).rule \
        == "caa.validationmethods"
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", f"{CA_IDENTITY}; validationmethods=ca-http-file")]).allowed
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", f"{CA_IDENTITY}; accounturi=https://x/acct/1")]).rule \
        == "caa.accounturi"
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", CA_IDENTITY), rec(128, "tbs", "x")]).rule == "caa.critical"
    assert caa.evaluate(ours, DOMAIN, [rec(0, "issue", CA_IDENTITY), rec(0, "tbs", "x")]).allowed


# ----------------------------------------------------------------------------- names and keys
def test_internal_names_refused_in_public_trust_allowed_in_private(tmp_path: Path) -> None:
    assert len(INTERNAL) >= 12
    public = _home(tmp_path / "pub", None)
    for domain in INTERNAL:
        result = public.run("--json", "account", "set", ACCOUNT, "--add-domain", domain)
        assert result.code == 1, (domain, result.stdout)
        assert _rules(result) <= {"name.special_use", "name.tld"} and _rules(result), domain
    refused = public.run("--json", "account", "add", "12345675-01", "--org", "X", "--domain", "corp.local")
    assert refused.code == 1 and _rules(refused) == {"name.special_use"}

    private = _home(tmp_path / "priv", None, public=False, domains=(DOMAIN, *INTERNAL))
    hosts = [f"www.{d}" for d in INTERNAL]
    csr = _key_csr(tmp_path, "internal", hosts[0], hosts)
    issued = _issue(private, csr, "--profile", "ssl")
    assert issued.code == 0, [f for f in _error(issued).get("findings", []) if not f["ok"]] or issued.stdout
    assert private.run("ca", "config", "public_trust", "true").code == 0
    refused = _issue(private, csr, "--profile", "ssl")
    assert refused.code == 1, refused.stdout
    messages = " ".join(f["message"] for f in refused.json()["findings"])
    assert _rules(refused) == {"name.special_use", "name.tld"}
    assert all(h in messages for h in hosts), messages


def test_rsa_2049_refused(tmp_path: Path) -> None:
    home = _home(tmp_path / "h", None)
    result = _issue(home, _key_csr(tmp_path, "odd", f"www.{DOMAIN}", bits=2049))
    assert result.code == 1 and "key.rsa_size" in _rules(result), result.stdout


# ----------------------------------------------------------------------------- validation lifecycle
def test_validation_lifecycle_reuse_period_and_faketime(tmp_path: Path, world: World) -> None:
    world.serve_all()
    home = _home(tmp_path / "h", world)
    csr = _key_csr(tmp_path, "www", f"www.{DOMAIN}")
    unvalidated = _issue(home, csr)
    assert unvalidated.code == 1 and _rules(unvalidated) == {"dcv.required"}

    # http-file (BR 3.2.2.4.18) through nginx, corroborated by the five perspectives
    checked = _validate_http(home, world)
    seen = checked["validation"]["seen"]
    assert checked["validation"]["method"] == "http-file" and seen["found"]
    assert [p["check_passed"] for p in seen["perspectives"]] == [True] * 5
    assert _issue(home, csr).code == 0

    # dns-txt (BR 3.2.2.4.7) through dnsmasq
    started = home.run("--json", "domain", "validate", ACCOUNT, DOMAIN, "--method", "dns-txt").json()
    value = started["validation"]["value"]
    assert len(value) * 6 >= 112 and started["where"] == f"_pki-validation.{DOMAIN}"
    missing = home.run("--json", "domain", "check", ACCOUNT, DOMAIN)
    assert missing.code == 1 and _rules(missing) == {"dcv.not_found"}
    world.serve_all(txt={f"_pki-validation.{DOMAIN}": value})
    checked = home.run("--json", "domain", "check", ACCOUNT, DOMAIN)
    assert checked.code == 0, checked.stderr
    assert checked.json()["validation"]["seen"]["primary"]["txt"] == [value]
    assert _issue(home, csr).code == 0

    # a batch with --keep-going: the validated name is issued, the internal and the unvalidated ones reported
    assert home.run("account", "set", ACCOUNT, "--add-domain", "example.com.tw").code == 0
    batch = _issue(home, csr, _key_csr(tmp_path, "unvalidated", "www.example.com.tw"),
                   _key_csr(tmp_path, "odd", f"www.{DOMAIN}", bits=2049), "--keep-going")
    assert batch.code == 1, batch.stdout  # a batch with refusals exits with the first refusal's code
    doc = json.loads(batch.stdout)
    assert len(doc["certificates"]) == 1 and len(doc["failed"]) == 2
    assert ["dcv.required" in f["error"] or "key.rsa_size" in f["error"] for f in doc["failed"]] == [True, True]

    shown = home.run("--json", "account", "show", ACCOUNT).json()["validations"]
    validated_at = dt.datetime.fromisoformat(shown[0]["validated_at"])
    assert shown[0]["method"] == "dns-txt" and shown[0]["current"]
    # the dated reuse table at three dates, as account show reports it under libfaketime
    # the dated reuse table at three dates, as account show reports it under libfaketime: today's date those are
    # in the 200-, 100- and 10-day periods of SC-081; later they still follow the table
    now = dt.datetime.now(UTC)
    dates = [max(at, now + dt.timedelta(days=lead)) for at, lead in (
        (dt.datetime(2027, 1, 20, 12, tzinfo=UTC), 1), (dt.datetime(2027, 4, 1, 12, tzinfo=UTC), 120),
        (dt.datetime(2029, 4, 1, 12, tzinfo=UTC), 400))]
    for when in dates:
        proc = _faketime(f"{when:%Y-%m-%d %H:%M:%S}", home, "account", "show", ACCOUNT)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)["validations"][0]
        lapses = validated_at + dt.timedelta(days=br.dcv_reuse_days(when))
        assert dt.datetime.fromisoformat(doc["lapses_at"]) == lapses and doc["current"] is (when <= lapses), when
    if now < dt.datetime(2027, 1, 1, tzinfo=UTC):
        assert [br.dcv_reuse_days(d) for d in dates] == [200, 100, 10]

    # past the reuse period of that date: refused until validated again
    later = f"{dates[1]:%Y-%m-%d %H:%M:%S}"
    proc = _faketime(later, home, "cert", "issue", str(csr), "--account", ACCOUNT)
    assert proc.returncode == 1, proc.stdout
    assert {f["rule"] for f in json.loads(proc.stdout)["findings"]} == {"dcv.required"}
    started = json.loads(_faketime(later, home, "domain", "validate", ACCOUNT, DOMAIN, "--method",
                                   "http-file").stdout)
    world.web.put(started["validation"]["value"])
    assert _faketime(later, home, "domain", "check", ACCOUNT, DOMAIN).returncode == 0
    proc = _faketime(later, home, "cert", "issue", str(csr), "--account", ACCOUNT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.usefixtures("store_engine")  # the validation records on SQLite and PostgreSQL (SCHEMA_ISSUE26)
def test_validation_records_on_both_engines(tmp_path: Path, world: World) -> None:
    """A private CA: validation is recorded and reported (account show), not required; no perspective asked."""
    from twcactl.store import Store

    world.serve_all()
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", DOMAIN, "--quota", "5").code == 0
    assert home.run("ca", "config", "dns_resolver", world.primary.resolver).code == 0
    assert home.run("ca", "config", "dv_http_port", str(world.web.port)).code == 0
    shown = home.run("--json", "account", "show", ACCOUNT).json()["validations"]
    assert shown == [{"domain": DOMAIN, "method": None, "validated_at": None, "lapses_at": None, "current": False}]
    checked = _validate_http(home, world)
    assert "perspectives" not in checked["validation"]["seen"] and checked["validation"]["operator"] == "alice"
    shown = home.run("--json", "account", "show", ACCOUNT).json()["validations"]
    assert shown[0]["method"] == "http-file" and shown[0]["current"] is True
    log = home.run("--json", "log", "--action", "domain.check").json()["entries"]
    assert log and log[0]["details"]["validated"] is True
    store = Store.open(home.path)
    try:
        with store.transaction():
            store.validations.add_caa(domain=DOMAIN, wildcard=False, checked_at="2026-01-01T00:00:00Z", allowed=True,
                                      answer={"raw": [[0, "issue", CA_IDENTITY]]})
        found = store.validations.latest_caa(DOMAIN, False, "2025-12-31T23:00:00Z")
        assert found is not None and found.answer["raw"] == [[0, "issue", CA_IDENTITY]]
        assert store.validations.latest_caa(DOMAIN, False, "2026-01-01T00:00:01Z") is None
    finally:
        store.close()


def test_domain_commands_refuse_auditors_other_domains_and_expired_values(tmp_path: Path, world: World) -> None:
    world.serve_all()
    home = _home(tmp_path / "h", world)
    assert home.run("operator", "add", "bob", "--role", "auditor").code == 0
    as_bob = {"TWCACTL_OPERATOR": "bob"}
    assert home.run("--json", "domain", "validate", ACCOUNT, DOMAIN, "--method", "dns-txt", env=as_bob).code == 5
    other = home.run("--json", "domain", "validate", ACCOUNT, "other.com.tw", "--method", "dns-txt")
    assert other.code == 5 and "not an agreed domain" in _error(other)["error"]["message"]
    assert home.run("--json", "domain", "validate", ACCOUNT, DOMAIN, "--method", "email").code == 2
    assert home.run("--json", "domain", "check", ACCOUNT, DOMAIN).code == 5  # nothing pending
    started = home.run("--json", "domain", "validate", ACCOUNT, DOMAIN, "--method", "http-file").json()
    world.web.put(started["validation"]["value"])
    assert home.run("--json", "domain", "check", ACCOUNT, DOMAIN, env=as_bob).code == 5
    late = (dt.datetime.now(UTC) + dt.timedelta(days=31)).strftime("%Y-%m-%d %H:%M:%S")
    expired = _faketime(late, home, "domain", "check", ACCOUNT, DOMAIN)  # BR 3.2.2.4.7: a value lives 30 days
    assert expired.returncode == 5 and "expired" in expired.stderr + expired.stdout


# ----------------------------------------------------------------------------- CAA
def test_caa_cases(tmp_path: Path, world: World) -> None:
    other = [(0, "issue", "other.example")]
    child_ok = {f"ok.{DOMAIN}": [(0, "issue", CA_IDENTITY)], DOMAIN: other}
    world.serve_all(caa=child_ok)
    home = _home(tmp_path / "h", world, domains=(DOMAIN, "example.com.tw"))
    _validate_http(home, world)
    _validate_http(home, world, "example.com.tw")
    # a record on the parent applies to the child; a record on the child is the relevant set for it
    refused = _issue(home, _key_csr(tmp_path, "a", f"a.{DOMAIN}"))
    assert refused.code == 1 and _rules(refused) == {"caa.forbidden"}
    assert _error(refused)["caa"]["found_at"] == DOMAIN
    assert _issue(home, _key_csr(tmp_path, "ok", f"ok.{DOMAIN}")).code == 0
    # no CAA record at all: anyone may issue
    assert _issue(home, _key_csr(tmp_path, "e", "www.example.com.tw")).code == 0

    # issuewild governs wildcards only
    world.serve_all(caa={DOMAIN: [(0, "issue", CA_IDENTITY), (0, "issuewild", "other.example")],
                         "example.com.tw": [(0, "issue", "other.example"), (0, "issuewild", CA_IDENTITY)]})
    assert _issue(home, _key_csr(tmp_path, "b", f"b.{DOMAIN}")).code == 0
    wild = _issue(home, _key_csr(tmp_path, "w", f"*.{DOMAIN}"), "--profile", "wildcard")
    assert wild.code == 1 and _rules(wild) == {"caa.forbidden"}
    assert _issue(home, _key_csr(tmp_path, "w2", "*.example.com.tw"), "--profile", "wildcard").code == 0
    plain = _issue(home, _key_csr(tmp_path, "c", "c.example.com.tw"))
    assert plain.code == 1 and _rules(plain) == {"caa.forbidden"}

    # an unknown critical tag refuses; SERVFAIL refuses
    world.serve_all(caa={DOMAIN: [(0, "issue", CA_IDENTITY), (128, "futuretag", "x")]})
    critical = _issue(home, _key_csr(tmp_path, "d", f"d.{DOMAIN}"))
    assert critical.code == 1 and _rules(critical) == {"caa.critical"}
    servfail = _issue(home, _key_csr(tmp_path, "s", SERVFAIL_ZONE))
    assert servfail.code == 1 and _rules(servfail) == {"caa.lookup"}

    # ok.twca.com.tw's permitting answer (its own record, now gone) is reused within 8 hours, then asked again
    csr = _key_csr(tmp_path, "ok2", f"ok.{DOMAIN}")
    assert _issue(home, csr).code == 0
    entries = home.run("--json", "log", "--action", "caa.check", "--limit", "1").json()["entries"]
    assert entries[0]["details"]["name"] == f"ok.{DOMAIN}" and entries[0]["details"]["answer"]["reused_from"]
    later = (dt.datetime.now(UTC) + dt.timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    proc = _faketime(later, home, "cert", "issue", str(csr), "--account", ACCOUNT)
    assert proc.returncode == 1 and '"caa.critical"' in proc.stdout, proc.stdout + proc.stderr

    # every answer is recorded and logged, refusals too
    logged = home.run("--json", "log", "--action", "caa.check", "--limit", "100").json()["entries"]
    verdicts = {(e["details"]["name"], e["details"]["allowed"]) for e in logged}
    assert {(f"a.{DOMAIN}", False), (f"ok.{DOMAIN}", True), (f"*.{DOMAIN}", False), (SERVFAIL_ZONE, False)} <= verdicts


def test_caa_accounturi_of_an_acme_order(tmp_path: Path, world: World) -> None:
    """RFC 8657 accounturi: the ACME finalize path runs issuance inside ``acme_account(URI)``."""
    from twcactl.authority.issuance_checks import acme_account
    from twcactl.authority.lifecycle import CsrInput, issue_certificates
    from twcactl.errors import PolicyError
    from twcactl.rules.validity import Validity
    from twcactl.store import Store

    mine = "https://127.0.0.1:8443/acme/acct/mine"
    world.serve_all(caa={DOMAIN: [(0, "issue", f"{CA_IDENTITY}; accounturi={mine}")]})
    home = _home(tmp_path / "h", world)
    _validate_http(home, world)
    store = Store.open(home.path)
    try:
        def issue(name: str, uri: str | None) -> Any:
            csr = CsrInput(name=name, data=_key_csr(tmp_path, name, f"{name}.{DOMAIN}").read_bytes(),
                           domain_validated=True)
            with acme_account(uri):
                return issue_certificates(store, [csr], account_id=ACCOUNT, profile="ssl", validity=Validity(days=90),
                                          operator="alice", passphrase=lambda: None)

        for name, uri in (("other", "https://127.0.0.1:8443/acme/acct/other"), ("ra", None)):
            with pytest.raises(PolicyError) as refused:
                issue(name, uri)
            assert [f.rule for f in refused.value.findings] == ["caa.accounturi"]
        assert issue("mine", mine).issued
    finally:
        store.close()


# ----------------------------------------------------------------------------- MPIC
def test_mpic_quorum_hijack_and_a_perspective_down(tmp_path: Path, world: World) -> None:
    world.serve_all()
    home = _home(tmp_path / "h", world)
    _validate_http(home, world)
    urls = [p.url for p in world.perspectives]
    down = f"http://127.0.0.1:{free_port()}"
    hijack = {DOMAIN: [(0, "issue", "other.example")]}
    cases = [("all", urls, 0), ("one", urls, 1), ("two", urls, 2), ("down", [*urls[1:], down], 0),
             ("downhijack", [*urls[1:], down], 1), ("few", urls[:3], 0)]
    for name, configured, hijacked in cases:
        # the first `hijacked` perspectives see another CA in CAA (a hijack seen only from their networks)
        world.serve_all(hijacked=hijacked, hijack_caa=hijack)
        assert home.run("ca", "config", "mpic_perspectives", ",".join(configured)).code == 0
        live = [u for u in configured if u != down]
        agreeing = len(live) - sum(1 for u in live if urls.index(u) < hijacked)
        expected = br.mpic_rule(dt.datetime.now(UTC), len(configured)).corroborated(agreeing)
        result = _issue(home, _key_csr(tmp_path, name, f"{name}.{DOMAIN}"))
        assert (result.code == 0) is expected, (name, result.stdout)
        if not expected:
            doc = _error(result)
            assert _rules(result) <= {"mpic.quorum", "mpic.count"}
            answers = {a["perspective"]: a for a in doc["perspectives"]}
            assert set(answers) == set(configured)
            if down in answers:
                assert answers[down]["reached"] is False and answers[down]["check_passed"] is False
    assert {c[0] for c in cases if c[2] >= 2} == {"two"}


def test_mpic_count_rises_by_date(tmp_path: Path, world: World) -> None:
    """Four perspectives that all agree: enough until 2026-12-14, too few from 2026-12-15 (BR 3.2.2.9 table)."""
    world.serve_all()
    home = _home(tmp_path / "h", world)
    _validate_http(home, world)
    assert home.run("ca", "config", "mpic_perspectives", ",".join(p.url for p in world.perspectives[:4])).code == 0
    csr = _key_csr(tmp_path, "n", f"n.{DOMAIN}")
    now = _issue(home, csr)
    assert (now.code == 0) is br.mpic_rule(dt.datetime.now(UTC), 4).corroborated(4), now.stdout
    later = _faketime("2026-12-20 12:00:00", home, "cert", "issue", str(csr), "--account", ACCOUNT)
    assert later.returncode == 1, later.stdout + later.stderr
    doc = json.loads(later.stdout)
    assert {f["rule"] for f in doc["findings"]} == {"mpic.count"} and doc["required"] == 5


def test_mpic_refuses_a_domain_check_not_corroborated(tmp_path: Path, world: World) -> None:
    world.serve_all(hijacked=3)
    home = _home(tmp_path / "h", world)
    started = home.run("--json", "domain", "validate", ACCOUNT, DOMAIN, "--method", "http-file").json()
    world.web.put(started["validation"]["value"])
    result = home.run("--json", "domain", "check", ACCOUNT, DOMAIN)
    assert result.code == 1 and _rules(result) == {"mpic.quorum"}
    assert [a["check_passed"] for a in _error(result)["perspectives"]] == [False] * 3 + [True] * 2


def test_perspective_settings_are_checked(tmp_path: Path) -> None:
    home = _home(tmp_path / "h", None)
    for bad in ("ftp://127.0.0.1:1", "http://127.0.0.1:1,not-a-url", "http://a b"):
        assert home.run("ca", "config", "mpic_perspectives", bad).code == 2, bad
    assert home.run("ca", "config", "mpic_perspectives", "http://127.0.0.1:1,https://[::1]:2").code == 0
    assert home.run("ca", "config", "dv_http_port", "0").code == 2
    assert home.run("ca", "config", "pre_issuance_lint", "maybe").code == 2


def test_perspective_requires_its_token(world: World) -> None:
    from twcactl.validation import perspectives

    body = perspectives.caa_request(caa.CaaRequest(f"www.{DOMAIN}", (CA_IDENTITY,)))
    world.serve_all()
    good = perspectives.ask_all([world.perspectives[0].url], world.token_file.read_text().strip(), body)
    bad = perspectives.ask_all([world.perspectives[0].url], "wrong-token", body)
    assert good[0].passed and not bad[0].passed and bad[0].error == "HTTP 401"


# ----------------------------------------------------------------------------- pre-issuance lint
def test_pre_issuance_lint_refuses_before_signing(tmp_path: Path, world: World) -> None:
    world.serve_all()
    home = _home(tmp_path / "h", world)
    _validate_http(home, world)
    assert home.run("ca", "config", "ocsp_url", "https://ocsp.example.tw").code == 0  # BR: AIA OCSP is http
    before = home.run("--json", "account", "show", ACCOUNT).json()["balance"]
    refused = _issue(home, _key_csr(tmp_path, "l", f"l.{DOMAIN}"))
    assert refused.code == 1 and _rules(refused) == {"lint.pre_issuance"}
    assert any("cabf.serverauth.aia_location_uri_not_http" in f["message"] for f in refused.json()["findings"]), refused.stdout
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == before
    assert home.run("--json", "cert", "list").json()["count"] == 0
    assert not list((home.path / "certs").glob("*.pem")) if (home.path / "certs").exists() else True
    assert home.run("ca", "config", "ocsp_url", "http://ocsp.example.tw").code == 0
    assert _issue(home, _key_csr(tmp_path, "l2", f"l2.{DOMAIN}")).code == 0


def test_pre_issuance_lint_in_a_private_ca_is_a_setting(tmp_path: Path) -> None:
    home = _home(tmp_path / "h", None, public=False)
    assert home.run("ca", "config", "pre_issuance_lint", "true").code == 0
    issued = _issue(home, _key_csr(tmp_path, "p", f"www.{DOMAIN}"))
    assert issued.code == 0, issued.stderr
    cert = x509.load_pem_x509_certificate(Path(issued.json()["certificates"][0]["path"]).read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"www.{DOMAIN}"


# ----------------------------------------------------------------------------- ACME end to end
def test_acme_order_validations_recorded_and_caa_accounturi(tmp_path: Path, world: World,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ACME client (the acme package) against ``twcactl serve`` in public-trust mode: the http-01 success
    is recorded as a domain validation (served by nginx), and a CAA ``accounturi`` naming another ACME account
    refuses the order (problem type ``caa``, rule ``caa.accounturi``); naming this account issues."""
    from types import SimpleNamespace

    from acme import messages

    from tests.serve_support import Served, start_server
    from tests.test_issue15_more import make_csr, register
    from twcactl.store import Store

    world.serve_all()
    home = _home(tmp_path / "h", world)
    log = tmp_path / "serve.log"
    proc, port, http_port, http01 = start_server(home, log, http01_port=world.web.port)
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01, proc=proc, log=log)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.root))
    try:
        client = register(SimpleNamespace(served=served))  # type: ignore[arg-type]
        account_uri = client.net.account.uri

        def order_and_validate(name: str) -> Any:
            csr_pem, _key = make_csr([name])
            orderr = client.new_order(csr_pem)
            for authzr in orderr.authorizations:
                challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
                response, validation = challb.response_and_validation(client.net.key)
                path = world.web.root / ".well-known" / "acme-challenge"
                path.mkdir(parents=True, exist_ok=True)
                (path / challb.chall.encode("token")).write_text(validation)
                client.answer_challenge(challb, response)
            # the validation runs beside the request (issue 24): wait for its outcome as ACME clients do
            for authzr in orderr.authorizations:
                for _ in range(600):
                    if client.poll(authzr)[0].body.status not in (messages.STATUS_PENDING,
                                                                   messages.STATUS_PROCESSING):
                        break
                    time.sleep(0.1)
            return orderr

        world.serve_all(caa={DOMAIN: [(0, "issue", f"{CA_IDENTITY}; accounturi={account_uri}x")]})
        refused = order_and_validate(f"a.{DOMAIN}")
        with pytest.raises(messages.Error) as problem:
            client.begin_finalization(refused)
        assert problem.value.typ == "urn:ietf:params:acme:error:caa"
        store = Store.open(home.path)
        try:
            order = store.acme.order(refused.uri.rsplit("/", 1)[-1])
            assert order is not None and order.error is not None and order.error["rule"] == "caa.accounturi"
            recorded = store.validations.latest(ACCOUNT, f"a.{DOMAIN}")
            assert recorded is not None and recorded.method == "acme-http-01"
            assert [p["check_passed"] for p in recorded.seen["perspectives"]] == [True] * 5
        finally:
            store.close()

        world.serve_all(caa={DOMAIN: [(0, "issue", f"{CA_IDENTITY}; accounturi={account_uri}; "
                                                   "validationmethods=http-01")]})
        issued = client.begin_finalization(order_and_validate(f"b.{DOMAIN}"))
        assert issued.body.status == messages.STATUS_VALID

        # an http-01 answer that two perspectives cannot see (a hijack of their route) is not corroborated
        world.serve_all(hijacked=2)
        hijacked = order_and_validate(f"c.{DOMAIN}")
        authz = client.poll(hijacked.authorizations[0])[0]
        assert authz.body.status == messages.STATUS_INVALID
        store = Store.open(home.path)
        try:
            assert store.validations.latest(ACCOUNT, f"c.{DOMAIN}") is None
        finally:
            store.close()
    finally:
        assert served.stop() == 0, log.read_text()[-2000:]
