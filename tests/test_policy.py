"""Tests of the request policy (twcactl.policy.checks) and the identifiers it uses.

Every rule is exercised through check_request on hand-built RequestFacts,
with at least one passing and one failing case; the examples of domain.md §2
and the hostile inputs a careless or malicious requester sends are pinned.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twcactl.errors import UsageError
from twcactl.models import (
    PROFILES,
    AccountPolicy,
    CheckResult,
    Finding,
    RequestFacts,
    SubjectAttribute,
)
from twcactl.policy.checks import (
    ISO_3166_ALPHA2,
    RULE_ORDER,
    check_request,
    dns_name_problems,
    domain_match,
    normalise_domain,
    printable_problem,
    rules_for,
)
from twcactl.rules.identifiers import (
    is_valid_account_id,
    is_valid_business_number,
    is_valid_national_id,
    parse_personal_cn,
)

ACCOUNT = AccountPolicy(
    id="70759028-01",
    org="TWCA",
    org_aliases=("TAIWAN-CA Inc.",),
    domains=("twca.com.tw", "mis.twca.com.tw"),
)

_OIDS = {"C": "2.5.4.6", "ST": "2.5.4.8", "L": "2.5.4.7", "O": "2.5.4.10", "OU": "2.5.4.11", "CN": "2.5.4.3"}


def subject(*pairs: tuple[str, str]) -> tuple[SubjectAttribute, ...]:
    return tuple(SubjectAttribute(name, _OIDS.get(name, name), value) for name, value in pairs)


def ssl_facts(cn: str | None = "www.twca.com.tw", **changes: object) -> RequestFacts:
    """A good SSL request; ``changes`` replace RequestFacts fields."""
    pairs = [("C", "TW"), ("ST", "Taiwan"), ("L", "Taipei"), ("O", "TWCA"), ("OU", "SYSTEM")]
    if cn is not None:
        pairs.append(("CN", cn))
    return dataclasses.replace(RequestFacts(subject=subject(*pairs)), **changes)  # type: ignore[arg-type]


def with_subject(**values: str | None) -> RequestFacts:
    """An SSL request whose C/ST/L/O/CN are replaced by ``values`` (None drops one)."""
    fields = {"C": "TW", "ST": "Taiwan", "L": "Taipei", "O": "TWCA", "CN": "twca.com.tw"} | values
    return RequestFacts(subject=subject(*((k, v) for k, v in fields.items() if v is not None)))


def personal_facts(cn: str = "A123456789-63-YIRU", **changes: object) -> RequestFacts:
    base = RequestFacts(
        subject=subject(("C", "TW"), ("O", "TWCA"), ("OU", "TWCA"), ("OU", "RD2"), ("OU", "RD"), ("CN", cn)),
        sans=(("email", "yiru@twca.com.tw"),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def finding(result: CheckResult, rule: str) -> Finding:
    matches = [f for f in result.findings if f.rule == rule]
    assert len(matches) == 1, f"{rule} reported {len(matches)} times"
    return matches[0]


def check_ssl(
    cn: str | None, profile: str = "ssl", account: AccountPolicy | None = ACCOUNT, **changes: object
) -> CheckResult:
    return check_request(ssl_facts(cn, **changes), account, profile)


def assert_terminal_safe(text: str) -> None:
    bad = [ch for ch in text if not ch.isprintable()]
    assert not bad, f"unprintable characters {bad!r} in {text!r}"


# ---------------------------------------------------------------- contract


def test_rule_order_is_the_published_contract() -> None:
    assert RULE_ORDER == (
        "subject.required", "subject.country", "subject.printable", "subject.org", "subject.identity",
        "cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length", "cn.domain", "cn.wildcard",
        "san.dns", "san.type", "san.count", "key.strength", "sig.hash", "sig.valid", "personal.identifier",
        "personal.email", "personal.business-number",
    )  # fmt: skip


def test_good_ssl_request_passes_every_rule_in_order() -> None:
    result = check_ssl("www.twca.com.tw", sans=(("dns", "www.twca.com.tw"), ("dns", "twca.com.tw")))
    assert result.ok, result.failed
    assert [f.rule for f in result.findings] == [r for r in RULE_ORDER if not r.startswith("personal.")]
    assert all(f.message for f in result.findings)
    assert result.to_json()["ok"] is True


def test_personal_profile_replaces_the_dns_rules() -> None:
    result = check_request(personal_facts(), ACCOUNT, "user-sign")
    assert result.ok, result.failed
    assert [f.rule for f in result.findings] == [
        "subject.required", "subject.country", "subject.printable", "subject.org",
        "san.type", "san.count", "key.strength", "sig.hash", "sig.valid", "personal.identifier",
        "personal.email", "personal.business-number",
    ]  # fmt: skip


def test_without_account_org_and_domain_rules_are_omitted() -> None:
    result = check_ssl("www.example.org", account=None)
    rules = [f.rule for f in result.findings]
    assert "subject.org" not in rules and "cn.domain" not in rules
    assert rules == list(rules_for("ssl", with_account=False))
    assert result.ok
    personal = check_request(personal_facts(), None, "user-enc")
    assert "subject.org" not in [f.rule for f in personal.findings]


def test_findings_follow_rule_order_even_when_many_fail() -> None:
    facts = ssl_facts(
        "https://www.level2.example.com/",
        sans=(("ip", "10.0.0.1"),),
        key_size=1024,
        signature_hash="sha1",
        signature_state="not checked",
    )
    result = check_request(facts, ACCOUNT, "ev")
    rules = [f.rule for f in result.findings]
    assert rules == sorted(rules, key=RULE_ORDER.index)
    assert {"cn.syntax", "cn.domain", "san.type", "key.strength", "sig.hash", "sig.valid"} <= {
        f.rule for f in result.failed
    }


def test_unknown_profile_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown profile"):
        check_request(ssl_facts(), ACCOUNT, "server")


# ---------------------------------------------------------------- subject.*


def test_subject_required_pass_and_missing() -> None:
    assert finding(check_ssl("www.twca.com.tw"), "subject.required") == Finding(
        "subject.required", True, "C, ST, L, O, CN present"
    )
    facts = RequestFacts(subject=subject(("C", "TW"), ("O", "TWCA"), ("CN", "www.twca.com.tw")))
    f = finding(check_request(facts, ACCOUNT, "ssl"), "subject.required")
    assert not f.ok
    assert "missing ST, L" in f.message and "present: C, O, CN" in f.message
    # The same subject is complete for a personal certificate.
    personal = RequestFacts(subject=subject(("C", "TW"), ("O", "TWCA"), ("CN", "A123456789-63-YIRU")))
    assert finding(check_request(personal, ACCOUNT, "user-sign"), "subject.required").ok


def test_subject_required_fails_on_several_cns_and_checks_the_first() -> None:
    facts = dataclasses.replace(
        ssl_facts("www.twca.com.tw"), subject=ssl_facts("www.twca.com.tw").subject + subject(("CN", "evil.example"))
    )
    result = check_request(facts, ACCOUNT, "ssl")
    required = finding(result, "subject.required")
    assert not required.ok and "more than one CN" in required.message
    assert finding(result, "cn.domain").ok  # the first CN is the one checked


@pytest.mark.parametrize(
    ("country", "ok", "fragment"),
    [
        ("TW", True, "TW"),
        ("JP", True, "JP"),
        ("tw", False, "upper case: TW"),
        ("XX", False, "not an ISO 3166-1 alpha-2"),
        ("TWN", False, "not an ISO 3166-1 alpha-2"),
        ("UK", False, "not an ISO 3166-1 alpha-2"),  # reserved, not assigned
    ],
)
def test_subject_country(country: str, ok: bool, fragment: str) -> None:
    facts = with_subject(C=country)
    f = finding(check_request(facts, ACCOUNT, "ssl"), "subject.country")
    assert f.ok is ok and fragment in f.message


def test_subject_country_missing() -> None:
    facts = with_subject(C=None)
    assert finding(check_request(facts, ACCOUNT, "ssl"), "subject.country") == Finding(
        "subject.country", False, "C is missing"
    )


def test_iso_list_has_every_assigned_code() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert {"TW", "US", "GB", "SS", "BQ", "CW", "SX"} <= ISO_3166_ALPHA2
    assert not {"UK", "EU", "XK", "AN"} & ISO_3166_ALPHA2  # reserved, user-assigned, withdrawn


@pytest.mark.parametrize(
    ("org", "fragment"),
    [
        ("台灣網路認證", "O contains non-ASCII character '台'"),
        ("TWCA\x1b[2J", "O contains control character '\\x1b'"),
        (" TWCA", "O has leading or trailing whitespace"),
        ("", "O is empty"),
    ],
)
def test_subject_printable_fails(org: str, fragment: str) -> None:
    f = finding(check_request(ssl_facts(), None, "ssl"), "subject.printable")
    assert f.ok
    facts = with_subject(O=org)
    f = finding(check_request(facts, None, "ssl"), "subject.printable")
    assert not f.ok
    assert fragment in f.message
    assert_terminal_safe(f.message)


@pytest.mark.parametrize(
    ("org", "ok", "fragment"),
    [
        ("TWCA", True, 'O "TWCA" matches the account'),
        ("TAIWAN-CA   Inc.", True, "matches the account"),  # inner whitespace runs collapse
        ("twca", False, "case differs"),
        ("TAIWAN-CA Inc", False, "punctuation"),
        ("Other Corp", False, 'not the account\'s registered English name "TWCA" or "TAIWAN-CA Inc."'),
    ],
)
def test_subject_org(org: str, ok: bool, fragment: str) -> None:
    facts = with_subject(O=org)
    f = finding(check_request(facts, ACCOUNT, "ssl"), "subject.org")
    assert f.ok is ok and fragment in f.message


def test_subject_org_checks_every_o() -> None:
    facts = dataclasses.replace(ssl_facts(), subject=ssl_facts().subject + subject(("O", "Evil Corp")))
    result = check_request(facts, ACCOUNT, "ssl")
    assert not finding(result, "subject.org").ok
    assert "more than one O" in finding(result, "subject.required").message


# ---------------------------------------------------------------- cn.*


@pytest.mark.parametrize(
    ("cn", "fragment"),
    [
        ("https://www.twca.com.tw", 'a scheme "https://"'),
        ("www.twca.com.tw:443", 'a port ":443"'),
        ("www.twca.com.tw/path", 'a path "/path"'),
        ("www.twca.com.tw?q=1", 'a query "?q=1"'),
        ("www.twca.com.tw.", "a trailing dot"),
        ("admin@www.twca.com.tw", 'user info "admin@"'),
        ("www.twca.com.tw ", "whitespace"),
        ("www twca.com.tw", "whitespace"),
    ],
)
def test_cn_syntax_fails(cn: str, fragment: str) -> None:
    f = finding(check_ssl(cn), "cn.syntax")
    assert not f.ok and fragment in f.message


def test_cn_syntax_one_mistake_one_failure() -> None:
    result = check_ssl("https://www.twca.com.tw")
    assert finding(result, "cn.syntax").message.endswith("use the bare host name www.twca.com.tw")
    assert [f.rule for f in result.failed] == ["cn.syntax"]
    assert finding(check_ssl("www.twca.com.tw"), "cn.syntax").ok


@pytest.mark.parametrize(
    ("cn", "fragment"),
    [
        ("192.168.1.1", "is an IPv4 address"),
        ("::1", "is an IPv6 address"),
        ("[::1]", "is an IPv6 address"),
        ("::ffff:1.2.3.4", "is an IPv6 address"),
        ("192.168.1", "IPv4 address 192.168.0.1 in another notation"),
        ("0xC0A80101", "IPv4 address 192.168.1.1 in another notation"),
        ("3232235777", "IPv4 address 192.168.1.1 in another notation"),
        ("0300.0250.01.01", "IPv4 address 192.168.1.1 in another notation"),
        ("192.168.01.1", "IPv4 address 192.168.1.1 in another notation"),
        ("999.999.999.999", "only of numeric labels"),
    ],
)
def test_cn_ip_address_fails(cn: str, fragment: str) -> None:
    f = finding(check_ssl(cn), "cn.ip-address")
    assert not f.ok and fragment in f.message


@pytest.mark.parametrize("cn", ["www.twca.com.tw", "1www.twca.com.tw", "0x.twca.com.tw", "123.twca.com.tw"])
def test_cn_ip_address_passes_host_names(cn: str) -> None:
    assert finding(check_ssl(cn), "cn.ip-address").ok


@pytest.mark.parametrize(
    ("cn", "fragment"),
    [
        ("台灣.tw", "non-ASCII character '台'"),
        ("xn--kpry57d.tw", 'punycode label "xn--kpry57d"'),
        ("XN--KPRY57D.tw", "punycode"),
    ],
)
def test_cn_idn_fails(cn: str, fragment: str) -> None:
    f = finding(check_ssl(cn), "cn.idn")
    assert not f.ok and fragment in f.message
    assert finding(check_ssl("www.twca.com.tw"), "cn.idn").ok


@pytest.mark.parametrize(
    ("cn", "ok", "fragment"),
    [
        ("www.twca.com.tw", True, "4 labels"),
        ("w-w.twca.com.tw", True, ""),
        ("a" * 63 + ".twca.com.tw", True, ""),
        ("a" * 64 + ".twca.com.tw", False, "64 octets"),
        ("a_b.twca.com.tw", False, "contains '_'"),
        ("a..twca.com.tw", False, "empty label"),
        ("-www.twca.com.tw", False, "starts with a hyphen"),
        ("www-.twca.com.tw", False, "ends with a hyphen"),
    ],
)
def test_cn_label(cn: str, ok: bool, fragment: str) -> None:
    f = finding(check_ssl(cn), "cn.label")
    assert f.ok is ok and fragment in f.message


def _name_of_octets(total: int, suffix: str = "twca.com.tw") -> str:
    labels = []
    remaining = total - len(suffix)
    while remaining > 0:
        size = min(63, remaining - 1)
        labels.append("a" * size)
        remaining -= size + 1
    name = ".".join([*labels, suffix])
    assert len(name) == total
    return name


def test_cn_length() -> None:
    assert finding(check_ssl(_name_of_octets(253), account=None), "cn.length").ok
    f = finding(check_ssl(_name_of_octets(254), account=None), "cn.length")
    assert not f.ok and "254 octets" in f.message and "253" in f.message


@pytest.mark.parametrize(
    ("domains", "cn", "ok"),
    [
        (("twca.com.tw",), "twca.com.tw", True),
        (("twca.com.tw",), "www.twca.com.tw", True),
        (("twca.com.tw",), "www.level2.twca.com.tw", False),
        (("mis.twca.com.tw",), "mis.twca.com.tw", True),
        (("mis.twca.com.tw",), "ww2.mis.twca.com.tw", True),
        (("mis.twca.com.tw",), "www.level2.mis.twca.com.tw", False),
        (("twca.com.tw",), "WWW.TWCA.COM.TW", True),
        (("twca.com.tw",), "eviltwca.com.tw", False),
        (("twca.com.tw",), "twca.com.tw.evil.example", False),
    ],
)
def test_cn_domain_manual_examples(domains: tuple[str, ...], cn: str, ok: bool) -> None:
    account = dataclasses.replace(ACCOUNT, domains=domains)
    assert finding(check_ssl(cn, account=account), "cn.domain").ok is ok


def test_cn_domain_messages() -> None:
    f = finding(check_ssl("www.level2.twca.com.tw"), "cn.domain")
    assert f.message == (
        "www.level2.twca.com.tw is two labels below twca.com.tw; "
        "only the domain itself or one host label in front is allowed"
    )
    f = finding(check_ssl("example.com"), "cn.domain")
    assert f.message == "example.com is not under an agreed domain (twca.com.tw, mis.twca.com.tw)"
    f = finding(check_ssl("ww2.mis.twca.com.tw"), "cn.domain")
    assert f.ok and "mis.twca.com.tw" in f.message


@pytest.mark.parametrize(
    ("profile", "cn", "ok"),
    [
        ("ssl", "www.twca.com.tw", True),
        ("ssl", "*.twca.com.tw", False),
        ("ev", "*.twca.com.tw", False),
        ("wildcard", "*.twca.com.tw", True),
        ("wildcard", "*.*.twca.com.tw", False),
        ("wildcard", "w*.twca.com.tw", False),
        ("wildcard", "www.*.twca.com.tw", False),
        ("wildcard", "*.tw", False),
        ("wildcard", "www.twca.com.tw", False),  # a wildcard certificate is for *. names
    ],
)
def test_cn_wildcard(profile: str, cn: str, ok: bool) -> None:
    result = check_ssl(cn, profile=profile)
    assert finding(result, "cn.wildcard").ok is ok
    if cn == "*.twca.com.tw":
        # The * front label is cn.wildcard's business, never cn.label's; it counts as the one host label.
        assert finding(result, "cn.label").ok and finding(result, "cn.domain").ok


def test_cn_wildcard_messages() -> None:
    assert "only the wildcard profile" in finding(check_ssl("*.twca.com.tw"), "cn.wildcard").message
    assert "has no '*.' front label" in finding(check_ssl("www.twca.com.tw", profile="wildcard"), "cn.wildcard").message


def test_missing_cn_fails_every_cn_rule_without_crashing() -> None:
    result = check_ssl(None)
    for rule in ("cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length", "cn.domain", "cn.wildcard"):
        assert finding(result, rule) == Finding(rule, False, "no CN")
    assert finding(result, "subject.required").message.startswith("missing CN")
    personal = check_request(RequestFacts(subject=subject(("C", "TW"), ("O", "TWCA"))), None, "user-sign")
    assert finding(personal, "personal.identifier") == Finding("personal.identifier", False, "no CN")


# ---------------------------------------------------------------- san.*


def test_san_dns_passes_and_names_each_offender() -> None:
    good = check_ssl("www.twca.com.tw", sans=(("dns", "www.twca.com.tw"), ("dns", "ww2.mis.twca.com.tw")))
    assert finding(good, "san.dns").ok
    bad = check_ssl(
        "www.twca.com.tw",
        sans=tuple(
            ("dns", name) for name in ("www.twca.com.tw", "192.168.1.1", "www.level2.twca.com.tw", "*.twca.com.tw")
        ),
    )
    f = finding(bad, "san.dns")
    assert not f.ok
    assert "DNS SAN 192.168.1.1 is an IPv4 address" in f.message
    assert "DNS SAN www.level2.twca.com.tw is two labels below twca.com.tw" in f.message
    assert "DNS SAN *.twca.com.tw contains '*'" in f.message
    assert "DNS SAN www.twca.com.tw " not in f.message


def test_san_dns_domain_rule_needs_an_account() -> None:
    assert finding(check_ssl("www.example.org", account=None, sans=(("dns", "example.org"),)), "san.dns").ok


def test_san_dns_wildcard_profile_allows_apex_and_wildcard() -> None:
    result = check_ssl("*.twca.com.tw", profile="wildcard", sans=(("dns", "*.twca.com.tw"), ("dns", "twca.com.tw")))
    assert finding(result, "san.dns").ok
    result = check_ssl("*.twca.com.tw", profile="wildcard", sans=(("dns", "*.*.twca.com.tw"),))
    assert not finding(result, "san.dns").ok


@pytest.mark.parametrize(
    ("profile", "sans", "ok"),
    [
        ("ssl", (("dns", "www.twca.com.tw"),), True),
        ("ssl", (), True),
        ("ssl", (("dns", "www.twca.com.tw"), ("ip", "192.168.1.1")), False),
        ("ev", (("email", "a@twca.com.tw"),), False),
        ("user-sign", (("email", "yiru@twca.com.tw"),), True),
        ("user-enc", (("dns", "www.twca.com.tw"),), False),
        ("user-enc", (("uri", "https://twca.com.tw"),), False),
    ],
)
def test_san_type(profile: str, sans: tuple[tuple[str, str], ...], ok: bool) -> None:
    facts = ssl_facts(sans=sans) if profile in ("ssl", "ev") else personal_facts(sans=sans)
    f = finding(check_request(facts, ACCOUNT, profile), "san.type")
    assert f.ok is ok
    if not ok:
        assert "not allowed" in f.message and profile in f.message


# ---------------------------------------------------------------- key and signature


@pytest.mark.parametrize(
    ("key_type", "size", "curve", "ok"),
    [
        ("rsa", 2048, None, True),
        ("rsa", 4096, None, True),
        ("rsa", 1024, None, False),
        ("rsa", 2047, None, False),
        ("ec", 256, "secp256r1", True),
        ("ec", 384, "secp384r1", True),
        ("ec", 521, "secp521r1", False),
        ("ec", 256, "secp256k1", False),
        ("ed25519", 0, None, False),
        ("dsa", 2048, None, False),
    ],
)
def test_key_strength(key_type: str, size: int, curve: str | None, ok: bool) -> None:
    f = finding(check_ssl("www.twca.com.tw", key_type=key_type, key_size=size, key_curve=curve), "key.strength")
    assert f.ok is ok
    if key_type == "rsa" and not ok:
        assert f.message == f"RSA {size} bits is too small; at least 2048 bits are required"


@pytest.mark.parametrize(
    ("hash_name", "ok"),
    [
        ("sha256", True),
        ("sha384", True),
        ("sha512", True),
        (None, True),  # ed25519 has no separate hash
        ("sha1", False),
        ("md5", False),
        ("SHA-1", False),
        ("md4", False),
        ("sha3-256", True),
        ("sha512-224", True),
        ("1.2.840.113549.1.1.99", False),  # an algorithm twcactl cannot name is not accepted
        ("sm3", False),
    ],
)
def test_sig_hash(hash_name: str | None, ok: bool) -> None:
    assert finding(check_ssl("www.twca.com.tw", signature_hash=hash_name), "sig.hash").ok is ok


def test_sig_hash_messages() -> None:
    assert finding(check_ssl("www.twca.com.tw", signature_hash="md4"), "sig.hash").message == (
        "MD4 is too weak for a signature; sign with SHA-256 or stronger")
    unknown = finding(check_ssl("www.twca.com.tw", signature_hash="1.2.3.4"), "sig.hash").message
    assert unknown == "1.2.3.4 is not an accepted signature algorithm; sign with SHA-256 or stronger"


def test_every_rule_is_documented_with_profiles_and_a_source() -> None:
    """docs/policy-rules.md lists every rule of RULE_ORDER, in that order, each with a source."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "policy-rules.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `") and line.count("|") >= 5]
    documented = [row.split("|")[1].strip().strip("`") for row in rows if "." in row.split("|")[1]]
    assert documented == list(RULE_ORDER)
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        if cells[0].strip("`") in RULE_ORDER:
            rule, profiles, source = cells[0].strip("`"), cells[1], cells[3]
            family = {"all": set(PROFILES), "SSL": {"ssl", "wildcard", "ev", "ov", "dv"}, "personal": {"user-sign", "user-enc"}}
            applied = {p for p in PROFILES if rule in rules_for(p)}
            assert applied == family[profiles.split(",")[0]], row
            needs_account = all(rule not in rules_for(p, with_account=False) for p in applied)
            assert needs_account == ("with an account" in profiles), row
            assert "§" in source or "RFC" in source or "policy" in source, row


@pytest.mark.parametrize(
    ("state", "ok", "message"),
    [
        ("valid", True, "signature valid"),
        ("invalid", False, None),
        ("not checked", False, "signature not checked (weak hash)"),
    ],
)
def test_sig_valid(state: str, ok: bool, message: str | None) -> None:
    f = finding(check_ssl("www.twca.com.tw", signature_state=state), "sig.valid")
    assert f.ok is ok
    if message is not None:
        assert f.message == message


# ---------------------------------------------------------------- personal.identifier


@pytest.mark.parametrize(
    ("cn", "ok", "fragment"),
    [
        ("A123456789-63-YIRU", True, "national ID A123456789, sequence 63, name YIRU"),
        ("70759028-01-TWCA", True, "business number 70759028"),
        ("A123456788-63-YIRU", False, "check digit"),
        ("70759029-01-TWCA", False, "business number"),
        ("A323456789-63-YIRU", False, "1, 2, 8 or 9"),
        ("a123456789-63-YIRU", False, "is not ID-NN-NAME"),
        ("A123456789-6-YIRU", False, "is not ID-NN-NAME"),
        ("A123456789-63-", False, "is not ID-NN-NAME"),
        ("www.twca.com.tw", False, "is not ID-NN-NAME"),
    ],
)
def test_personal_identifier(cn: str, ok: bool, fragment: str) -> None:
    f = finding(check_request(personal_facts(cn), ACCOUNT, "user-sign"), "personal.identifier")
    assert f.ok is ok and fragment in f.message


# ---------------------------------------------------------------- helpers used by other modules


def test_printable_problem() -> None:
    assert printable_problem("TWCA Inc.") is None
    assert printable_problem("台灣") == "contains non-ASCII character '台'"
    assert printable_problem("a\x07b") == "contains control character '\\x07'"
    assert printable_problem("a\x7f") == "contains control character '\\x7f'"
    assert printable_problem("a\u202eb") == "contains non-ASCII character '\\u202e'"
    assert printable_problem("") == "is empty"
    assert printable_problem("x ") == "has leading or trailing whitespace"


def test_dns_name_problems() -> None:
    assert dns_name_problems("www.twca.com.tw", allow_wildcard=False) == []
    assert dns_name_problems("*.twca.com.tw", allow_wildcard=True) == []
    assert [r for r, _ in dns_name_problems("*.twca.com.tw", allow_wildcard=False)] == ["cn.wildcard"]
    # Not required: a wildcard-profile SAN may be the apex.
    assert dns_name_problems("twca.com.tw", allow_wildcard=True) == []
    rules = [r for r, _ in dns_name_problems("https://台灣.tw:8443/", allow_wildcard=False)]
    assert rules == ["cn.syntax", "cn.idn"]


def test_domain_match() -> None:
    domains = ["twca.com.tw", "mis.twca.com.tw"]
    assert domain_match("www.twca.com.tw", domains) == "twca.com.tw"
    assert domain_match("MIS.twca.com.tw.", domains) == "mis.twca.com.tw"  # exact match preferred
    assert domain_match("*.mis.twca.com.tw", domains) == "mis.twca.com.tw"
    assert domain_match("www.level2.twca.com.tw", domains) is None
    assert domain_match(".twca.com.tw", domains) is None
    assert domain_match("www.twca.com.tw", iter(domains)) == "twca.com.tw"  # any iterable
    assert domain_match("\u212aelvin.twca.com.tw", ["kelvin.twca.com.tw"]) is None  # no Unicode case folding


def test_normalise_domain() -> None:
    assert normalise_domain("TWCA.com.tw.") == "twca.com.tw"
    assert normalise_domain("mis.twca.com.tw") == "mis.twca.com.tw"
    for bad, fragment in [
        ("https://twca.com.tw", "scheme"),
        ("192.168.1.1", "IPv4"),
        ("台灣.tw", "internationalised"),
        ("xn--kpry57d.tw", "punycode"),
        ("a_b.com.tw", "'_'"),
        ("*.twca.com.tw", "'*'"),
        ("tw", "only one label"),
        ("", "empty"),
        (_name_of_octets(254), "254 octets"),
    ]:
        with pytest.raises(UsageError, match=fragment) as err:
            normalise_domain(bad)
        assert err.value.message.startswith("domain ")


# ---------------------------------------------------------------- terminal safety


@pytest.mark.parametrize("evil", ["\x1b[31mwww.twca.com.tw", "www.twca.com.tw\n", "a\u202ebc.twca.com.tw", "\x00"])
def test_messages_never_carry_raw_control_characters(evil: str) -> None:
    facts = ssl_facts(evil, sans=(("dns", evil), (evil, evil)), key_type=evil, signature_hash=evil)
    for profile in PROFILES:
        for f in check_request(facts, ACCOUNT, profile).findings:
            assert_terminal_safe(f.message)


def test_long_values_are_shortened_in_messages() -> None:
    f = finding(check_ssl("a" * 5000 + ".example"), "cn.label")
    assert len(f.message) < 600


# ---------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("70759028", True),  # 7+0+7+1+9+0+8+8 = 40
        ("04595252", True),  # sum 35: valid only under the 2023 divisible-by-5 rule
        ("10458575", True),  # 7th digit 7, sum 30
        ("10458574", True),  # 7th digit 7, sum 29: valid because 29 + 1 is divisible by 5
        ("70759029", False),
        ("12345678", False),
        ("7075902", False),
        ("707590280", False),
        ("7075902a", False),
        ("\uff17\uff10\uff17\uff15\uff19\uff10\uff12\uff18", False),  # full-width 70759028
    ],
)
def test_business_number(number: str, ok: bool) -> None:
    assert is_valid_business_number(number) is ok


@pytest.mark.parametrize(
    ("ident", "ok"),
    [
        ("A123456789", True),
        ("T220092129", True),  # from 004 §10's listing
        ("A800000014", True),  # new resident certificate number
        ("A123456788", False),
        ("a123456789", False),
        ("A323456789", False),
        ("A12345678", False),
        ("1123456789", False),
    ],
)
def test_national_id(ident: str, ok: bool) -> None:
    assert is_valid_national_id(ident) is ok


def test_account_id() -> None:
    assert is_valid_account_id("70759028-01")
    assert not is_valid_account_id("70759029-01")
    assert not is_valid_account_id("70759028-1")
    assert not is_valid_account_id("70759028-01\n")


def test_parse_personal_cn() -> None:
    assert parse_personal_cn("A123456789-63-YIRU") == ("A123456789", "63", "YIRU")
    assert parse_personal_cn("70759028-01-TWCA Dept. O'Neil") == ("70759028", "01", "TWCA Dept. O'Neil")
    assert parse_personal_cn("T220092129-00-鍾沁儀") is None
    assert parse_personal_cn("A123456789-63-YIRU\n") is None


# ---------------------------------------------------------------- properties

_text = st.text(max_size=80)
_name_text = st.one_of(_text, st.from_regex(r"[a-z0-9*.:_\[\]/@-]{0,30}", fullmatch=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cn=st.one_of(st.none(), _name_text),
    org=_text,
    sans=st.lists(st.tuples(st.sampled_from(["dns", "ip", "email", "uri", "other", "x"]), _name_text), max_size=4),
    profile=st.sampled_from(PROFILES),
    with_account=st.booleans(),
)
def test_check_request_never_raises(
    cn: str | None, org: str, sans: list[tuple[str, str]], profile: str, with_account: bool
) -> None:
    pairs = [("C", "TW"), ("O", org)] + ([("CN", cn)] if cn is not None else [])
    facts = RequestFacts(subject=subject(*pairs), sans=tuple(sans))
    result = check_request(facts, ACCOUNT if with_account else None, profile)
    assert [f.rule for f in result.findings] == list(rules_for(profile, with_account=with_account))
    for f in result.findings:
        assert f.message
        assert_terminal_safe(f.message)
    if cn is not None:
        assert [r for r, _ in dns_name_problems(cn, allow_wildcard=True)] == sorted(
            {r for r, _ in dns_name_problems(cn, allow_wildcard=True)}, key=RULE_ORDER.index
        )
