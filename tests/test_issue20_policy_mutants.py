"""Issue 20: request-policy rules (twcactl.policy.checks) that mutation testing found unpinned.

Each test builds RequestFacts by hand, runs check_request and asserts on the finding of one rule ID:
its ok flag and the data its detail names (the offending value, the account's value, a count).
"""

from __future__ import annotations

import dataclasses

import pytest

from twcactl.errors import UsageError
from twcactl.models import AccountPolicy, CheckResult, Finding, RequestFacts, SubjectAttribute
from twcactl.policy.checks import _analyse_name, check_request, domain_match, normalise_domain, rules_for

ACCOUNT = AccountPolicy(id="70759028-01", org="TWCA", org_aliases=("TAIWAN-CA Inc.",),
                        domains=("twca.com.tw", "mis.twca.com.tw"))
EV_ACCOUNT = dataclasses.replace(ACCOUNT, jurisdiction_state="Taiwan", jurisdiction_locality="Taipei",
                                 business_category="Government Entity")
_OIDS = {"C": "2.5.4.6", "ST": "2.5.4.8", "L": "2.5.4.7", "O": "2.5.4.10", "OU": "2.5.4.11", "CN": "2.5.4.3",
         "serialNumber": "2.5.4.5", "jurisdictionC": "1.3.6.1.4.1.311.60.2.1.3",
         "jurisdictionST": "1.3.6.1.4.1.311.60.2.1.2", "jurisdictionL": "1.3.6.1.4.1.311.60.2.1.1",
         "businessCategory": "2.5.4.15"}


@pytest.fixture(autouse=True)
def _fresh_name_reports() -> None:
    """Each test analyses its names afresh: ``_analyse_name`` caches reports, and under mutation testing
    a report cached by an earlier test would hide the mutant (and the rule functions this test reaches)."""
    _analyse_name.cache_clear()


def facts(*extra: tuple[str, str], cn: str | None = "www.twca.com.tw", sans: tuple[tuple[str, str], ...] = (),
          base: tuple[tuple[str, str], ...] = (("C", "TW"), ("ST", "Taiwan"), ("L", "Taipei"), ("O", "TWCA"))
          ) -> RequestFacts:
    pairs = [*base, *extra] + ([("CN", cn)] if cn is not None else [])
    return RequestFacts(subject=tuple(SubjectAttribute(n, _OIDS.get(n, n), v) for n, v in pairs), sans=sans)


def personal(cn: str | None = "A123456789-63-YIRU", sans: tuple[tuple[str, str], ...] = (("email", "y@twca.com.tw"),),
             *extra: tuple[str, str]) -> RequestFacts:
    return facts(*extra, cn=cn, sans=sans, base=(("C", "TW"), ("O", "TWCA")))


def one(result: CheckResult, rule: str) -> Finding:
    found = [f for f in result.findings if f.rule == rule]
    assert len(found) == 1, rule
    return found[0]


def ids(result: CheckResult) -> list[str]:
    return [f.rule for f in result.findings]


# ----- subject.identity (EV) -----

def test_identity_passes_when_the_request_states_none_and_names_the_account_values() -> None:
    f = one(check_request(facts(), EV_ACCOUNT, "ev"), "subject.identity")
    assert f.ok
    for value in ("70759028", "TW", "Taiwan", "Taipei", "Government Entity"):
        assert value in f.message
    f = one(check_request(facts(), ACCOUNT, "ev"), "subject.identity")
    assert f.ok and "jurisdictionST" not in f.message and "jurisdictionL" not in f.message


def test_identity_passes_with_matching_values_and_names_them() -> None:
    stated = (("serialNumber", "70759028"), ("jurisdictionC", "TW"), ("jurisdictionST", "Taiwan"),
              ("jurisdictionL", "Taipei"), ("businessCategory", "Government Entity"))
    f = one(check_request(facts(*stated), EV_ACCOUNT, "ev"), "subject.identity")
    assert f.ok
    for name, _ in stated:
        assert name in f.message
    f = one(check_request(facts(("jurisdictionC", "TW")), ACCOUNT, "ev"), "subject.identity")
    assert f.ok and "jurisdictionC" in f.message and "serialNumber" not in f.message.split("(")[0]


@pytest.mark.parametrize("name, value, want", [
    ("serialNumber", "22099131", "70759028"), ("jurisdictionC", "US", "TW"), ("jurisdictionST", "Ohio", "Taiwan"),
    ("jurisdictionL", "Tainan", "Taipei"), ("businessCategory", "Private Organization", "Government Entity")])
def test_identity_fails_on_each_attribute_that_is_not_the_account_s(name: str, value: str, want: str) -> None:
    result = check_request(facts((name, value)), EV_ACCOUNT, "ev")
    f = one(result, "subject.identity")
    assert not f.ok
    assert name in f.message and value in f.message and want in f.message
    assert not result.ok


def test_identity_fails_on_an_attribute_the_account_has_none_of() -> None:
    f = one(check_request(facts(("jurisdictionL", "Taipei")), ACCOUNT, "ev"), "subject.identity")
    assert not f.ok
    assert "jurisdictionL" in f.message and "Taipei" in f.message
    assert "the account's" not in f.message


def test_identity_is_not_applied_without_an_account_or_on_a_personal_profile() -> None:
    assert "subject.identity" not in ids(check_request(facts(("jurisdictionC", "US")), None, "ev"))
    assert "subject.identity" in rules_for("ssl")


# ----- personal.email -----

def test_email_passes_under_an_agreed_domain_and_counts() -> None:
    f = one(check_request(personal(sans=(("email", "a@twca.com.tw"), ("email", "b@x.mis.twca.com.tw"))), ACCOUNT,
                          "user-sign"), "personal.email")
    assert f.ok and "2" in f.message
    f = one(check_request(personal(sans=(("email", "a@twca.com.tw"),)), ACCOUNT, "user-sign"), "personal.email")
    assert f.ok and "1" in f.message
    f = one(check_request(personal(sans=()), ACCOUNT, "user-enc"), "personal.email")
    assert f.ok
    f = one(check_request(personal(sans=(("email", '"a@b"@twca.com.tw'),)), ACCOUNT, "user-sign"), "personal.email")
    assert f.ok  # the domain is after the last @


@pytest.mark.parametrize("email", ["nobody.twca.com.tw", "@twca.com.tw", "a@", "a@example.com", "a@b.c.twca.com.tw"])
def test_email_fails_on_a_malformed_address_or_a_foreign_domain(email: str) -> None:
    f = one(check_request(personal(sans=(("email", "ok@twca.com.tw"), ("email", email))), ACCOUNT, "user-sign"),
            "personal.email")
    assert not f.ok
    assert email in f.message and "ok@twca.com.tw" not in f.message
    assert "twca.com.tw" in f.message.split(";")[-1]  # the agreed domains are listed


def test_email_fails_with_an_account_without_domains() -> None:
    bare = dataclasses.replace(ACCOUNT, domains=())
    f = one(check_request(personal(sans=(("email", "a@twca.com.tw"),)), bare, "user-sign"), "personal.email")
    assert not f.ok and "none" in f.message.split(";")[-1]


# ----- personal.business-number and personal.identifier -----

def test_business_number_in_a_personal_cn_must_be_the_account_s() -> None:
    f = one(check_request(personal("70759028-01-TWCA"), ACCOUNT, "user-sign"), "personal.business-number")
    assert f.ok and "70759028" in f.message
    f = one(check_request(personal("22099131-01-OTHER"), ACCOUNT, "user-sign"), "personal.business-number")
    assert not f.ok and "22099131" in f.message and "70759028" in f.message and "CN" in f.message
    f = one(check_request(personal("A123456789-63-YIRU"), ACCOUNT, "user-sign"), "personal.business-number")
    assert f.ok and "70759028" not in f.message


def test_business_number_in_serial_number_or_free_cn_must_be_the_account_s() -> None:
    f = one(check_request(personal("A123456789-63-YIRU", (), ("serialNumber", "SN 22099131")), ACCOUNT,
                          "user-sign"), "personal.business-number")
    assert not f.ok and "serialNumber" in f.message and "22099131" in f.message
    f = one(check_request(personal("A123456789-63-YIRU", (), ("serialNumber", "70759028")), ACCOUNT,
                          "user-sign"), "personal.business-number")
    assert f.ok and "70759028" in f.message
    f = one(check_request(personal("not an id 22099131 here", ()), ACCOUNT, "user-sign"), "personal.business-number")
    assert not f.ok and "22099131" in f.message
    f = one(check_request(personal("not an id 123456789 here", ()), ACCOUNT, "user-sign"), "personal.business-number")
    assert f.ok  # nine digits are not a business number
    f = one(check_request(personal(None, ()), ACCOUNT, "user-sign"), "personal.business-number")
    assert f.ok


def test_personal_identifier_names_the_kind_and_the_parts() -> None:
    f = one(check_request(personal("A123456789-63-YIRU"), ACCOUNT, "user-sign"), "personal.identifier")
    assert f.ok and "A123456789" in f.message and "63" in f.message and "YIRU" in f.message and "national" in f.message
    f = one(check_request(personal("70759028-01-TWCA"), ACCOUNT, "user-sign"), "personal.identifier")
    assert f.ok and "business" in f.message
    f = one(check_request(personal("A123456788-63-YIRU"), ACCOUNT, "user-sign"), "personal.identifier")
    assert not f.ok and "A123456788" in f.message
    f = one(check_request(personal(None), ACCOUNT, "user-sign"), "personal.identifier")
    assert not f.ok


# ----- CN rules without a CN, wildcard, domain -----

def test_every_cn_rule_fails_without_a_cn() -> None:
    result = check_request(facts(cn=None), ACCOUNT, "ssl")
    for rule in ("cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length", "cn.domain", "cn.wildcard"):
        f = one(result, rule)
        assert not f.ok, rule
        assert f.message == "no CN", rule


def test_cn_rules_name_what_passed() -> None:
    result = check_request(facts(cn="www.twca.com.tw"), ACCOUNT, "ssl")
    assert one(result, "cn.label").message.startswith("4 labels")
    assert one(result, "cn.length").message.startswith("15 octets")
    assert result.ok


def test_wildcard_profile_needs_a_star_front_label() -> None:
    f = one(check_request(facts(cn="www.twca.com.tw"), ACCOUNT, "wildcard"), "cn.wildcard")
    assert not f.ok and "www.twca.com.tw" in f.message
    f = one(check_request(facts(cn="*.twca.com.tw"), ACCOUNT, "wildcard"), "cn.wildcard")
    assert f.ok
    f = one(check_request(facts(cn="*.twca.com.tw"), ACCOUNT, "ssl"), "cn.wildcard")
    assert not f.ok


@pytest.mark.parametrize("cn, fragment", [("a.b.twca.com.tw", "two"), ("a.b.c.d.e.f.g.h.i.j.k.twca.com.tw", "11"),
                                          ("a..twca.com.tw", "empty")])
def test_cn_domain_names_how_far_below_the_domain_a_name_is(cn: str, fragment: str) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.domain")
    assert not f.ok
    assert fragment in f.message


def test_cn_domain_prefers_the_longest_agreed_domain_below() -> None:
    f = one(check_request(facts(cn="a.b.mis.twca.com.tw"), ACCOUNT, "ssl"), "cn.domain")
    assert not f.ok and "two" in f.message and "mis.twca.com.tw" in f.message


def test_cn_domain_passes_and_names_the_domain() -> None:
    f = one(check_request(facts(cn="TWCA.com.tw."), ACCOUNT, "ssl"), "cn.domain")
    assert f.ok and "agreed domain" in f.message
    f = one(check_request(facts(cn="www.mis.twca.com.tw"), ACCOUNT, "ssl"), "cn.domain")
    assert f.ok and "mis.twca.com.tw" in f.message


def test_cn_domain_without_agreed_domains_or_elsewhere() -> None:
    bare = dataclasses.replace(ACCOUNT, domains=())
    f = one(check_request(facts(cn="www.twca.com.tw"), bare, "ssl"), "cn.domain")
    assert not f.ok and "none" in f.message
    f = one(check_request(facts(cn="www.example.com"), ACCOUNT, "ssl"), "cn.domain")
    assert not f.ok and "twca.com.tw" in f.message and "mis.twca.com.tw" in f.message


def test_domain_match_edge_cases() -> None:
    assert domain_match("", ["twca.com.tw"]) is None
    assert domain_match("x.twca.com.tw", ["", "twca.com.tw"]) == "twca.com.tw"
    assert domain_match("twca.com.tw", ["mis.twca.com.tw", "TWCA.com.tw."]) == "TWCA.com.tw."
    assert domain_match(".twca.com.tw", ["twca.com.tw"]) is None


# ----- san.dns -----

def test_san_dns_names_each_offending_name_and_counts_good_ones() -> None:
    f = one(check_request(facts(sans=(("dns", "www.twca.com.tw"),)), ACCOUNT, "ssl"), "san.dns")
    assert f.ok and f.message.startswith("1 DNS name ")
    f = one(check_request(facts(sans=(("dns", "www.twca.com.tw"), ("dns", "twca.com.tw"))), ACCOUNT, "ssl"), "san.dns")
    assert f.ok and f.message.startswith("2 DNS names ")
    f = one(check_request(facts(sans=(("dns", "www.example.com"), ("dns", "twca.com.tw"))), ACCOUNT, "ssl"), "san.dns")
    assert not f.ok and "www.example.com" in f.message and "DNS SAN" in f.message
    f = one(check_request(facts(sans=(("dns", "www.example.com"),)), None, "ssl"), "san.dns")
    assert f.ok
    f = one(check_request(facts(sans=(("dns", "*.twca.com.tw"),)), ACCOUNT, "wildcard", ), "san.dns")
    assert f.ok


# ----- normalise_domain -----

@pytest.mark.parametrize("bad, fragment", [("*.twca.com.tw", "*"), ("localhost", "localhost"), ("com.tw", "com.tw"),
                                           ("http://twca.com.tw", "twca"), ("a..tw", "a..tw")])
def test_normalise_domain_refuses_with_the_domain_named(bad: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        normalise_domain(bad)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("domain ")


def test_normalise_domain_keeps_a_single_dot_and_folds_ascii_only() -> None:
    assert normalise_domain("Mis.TWCA.com.tw.") == "mis.twca.com.tw"
    with pytest.raises(UsageError):
        normalise_domain(".")


# ----- rules_for -----

def test_rules_for_each_profile() -> None:
    assert "personal.identifier" not in rules_for("ssl") and "cn.syntax" in rules_for("ev")
    assert "personal.identifier" in rules_for("user-enc") and "cn.syntax" not in rules_for("user-sign")
    assert "subject.org" not in rules_for("ssl", with_account=False)
    assert "cn.domain" not in rules_for("wildcard", with_account=False)
    assert "personal.email" not in rules_for("user-sign", with_account=False)
    assert "subject.org" in rules_for("user-sign")
    with pytest.raises(UsageError) as caught:
        rules_for("nope")
    assert "nope" in str(caught.value) and "ssl" in str(caught.value)


# ----- cn.syntax: each URL decoration is named with the text it found -----

@pytest.mark.parametrize("cn, pieces", [
    ("https://www.twca.com.tw/a/b?q#f", ['a scheme "https://"', 'a path "/a/b?q#f"']),
    ("www.twca.com.tw?a?b#c", ['a query "?a?b#c"']),
    ("www.twca.com.tw#a#b", ['a fragment "#a#b"']),
    ("/www.twca.com.tw", ['a path "/www.twca.com.tw"']),
    ("a@b@www.twca.com.tw", ['user info "a@b@"']),
    ("www.twca.com.tw:443", ['a port ":443"']),
    ("www.twca.com.tw:", ['a port ":"']),
    ("[::1]:443", ['a port ":443"']),
    ("[::1]]", ['text after the brackets "]"']),
    ("[www.twca.com.tw]", ["square brackets"]),
    ("https://u@www.twca.com.tw:443/p", ['a scheme "https://"', 'a path "/p"', 'user info "u@"', 'a port ":443"']),
    (" www.twca.com.tw", ["whitespace"]),
])
def test_cn_syntax_names_each_decoration(cn: str, pieces: list[str]) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.syntax")
    assert not f.ok
    for piece in pieces:
        assert piece in f.message, (piece, f.message)


@pytest.mark.parametrize("cn, host", [("https://www.twca.com.tw/a/b", "www.twca.com.tw"),
                                      ("a@b@www.twca.com.tw", "www.twca.com.tw"),
                                      ("www.twca.com.tw?q", "www.twca.com.tw")])
def test_cn_syntax_advises_the_bare_host_and_the_other_rules_see_it(cn: str, host: str) -> None:
    result = check_request(facts(cn=cn), ACCOUNT, "ssl")
    assert one(result, "cn.syntax").message.endswith(f"use the bare host name {host}")
    assert one(result, "cn.domain").ok


def test_bracketed_ipv6_is_not_a_syntax_problem_but_an_ip_address() -> None:
    result = check_request(facts(cn="[::1]"), ACCOUNT, "ssl")
    assert one(result, "cn.syntax").ok
    assert not one(result, "cn.ip-address").ok


# ----- cn.ip-address: the IPv4 address another notation stands for -----

@pytest.mark.parametrize("cn, dotted", [
    ("3232235777", "192.168.1.1"), ("0xC0A80101", "192.168.1.1"), ("192.168.1", "192.168.0.1"),
    ("0300.0250.1.1", "192.168.1.1"), ("0x10.0x10.1", "16.16.0.1"), ("010.1", "8.0.0.1"), ("0x.1", "0.0.0.1"),
    ("01.2.3.4", "1.2.3.4"), ("255.16777215", "255.255.255.255"), ("1.2.65535", "1.2.255.255"),
    ("0x" + "0" * 31 + "1", "0.0.0.1"),
])
def test_ip_address_in_another_notation_names_its_dotted_quad(cn: str, dotted: str) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.ip-address")
    assert not f.ok
    assert f"IPv4 address {dotted} " in f.message


@pytest.mark.parametrize("cn", ["256.1", "255.16777216", "1.2.65536", "1.2.3.4.5", "0x" + "0" * 32 + "1"])
def test_numbers_no_resolver_reads_as_one_address_are_still_refused_without_a_quad(cn: str) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.ip-address")
    assert not f.ok
    assert "IPv4 address" in f.message and "another notation" not in f.message


# ----- subject, SANs, signature -----

def test_subject_country_checks_every_c() -> None:
    f = one(check_request(facts(("C", "tw")), ACCOUNT, "ssl"), "subject.country")
    assert not f.ok and '"tw"' in f.message and "TW" in f.message
    f = one(check_request(facts(("C", "XX")), ACCOUNT, "ssl"), "subject.country")
    assert not f.ok and '"XX"' in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("C", "US"), ("O", "TWCA"))), ACCOUNT, "user-sign"),
            "subject.country")
    assert f.ok and f.message == "TW, US"


def test_subject_org_missing_and_why_it_differs() -> None:
    f = one(check_request(facts(base=(("C", "TW"), ("ST", "T"), ("L", "T"))), ACCOUNT, "ssl"), "subject.org")
    assert not f.ok and "O" in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("O", "twca"))), ACCOUNT, "user-sign"), "subject.org")
    assert not f.ok and '"twca"' in f.message and "case" in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("O", "TAIWAN CA Inc"))), ACCOUNT, "user-sign"), "subject.org")
    assert not f.ok and "punctuation" in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("O", "Other"))), ACCOUNT, "user-sign"), "subject.org")
    assert not f.ok and '"Other"' in f.message and "case" not in f.message and "punctuation" not in f.message


def test_subject_required_names_the_missing_and_present_attributes() -> None:
    f = one(check_request(RequestFacts(subject=()), ACCOUNT, "ssl"), "subject.required")
    assert not f.ok and "none" in f.message
    f = one(check_request(facts(("CN", "x.twca.com.tw")), ACCOUNT, "ssl"), "subject.required")
    assert not f.ok and "CN" in f.message and ";" not in f.message


def test_san_count_counts_the_cn_unless_a_dns_san_repeats_it() -> None:
    def count(cn: str | None, sans: tuple[tuple[str, str], ...], profile: str = "ssl", max_sans: int = 2) -> Finding:
        return one(check_request(facts(cn=cn, sans=sans), ACCOUNT, profile, max_sans=max_sans), "san.count")
    two = (("dns", "a.twca.com.tw"), ("dns", "b.twca.com.tw"))
    f = count("www.twca.com.tw", two)
    assert not f.ok and "3" in f.message
    assert count("WWW.twca.com.tw", (("dns", "www.TWCA.com.tw"), ("dns", "b.twca.com.tw"))).ok
    assert count("www.twca.com.tw", (("dns", "www.twca.com.tw"), ("dns", "b.twca.com.tw"))).ok
    f = count("www.twca.com.tw", (("email", "www.twca.com.tw"), ("dns", "b.twca.com.tw")))
    assert not f.ok
    assert count("www.twca.com.tw", (("dns", "a.twca.com.tw"),)).ok
    assert count(None, two).ok
    f = count("www.twca.com.tw", (), max_sans=1)
    assert f.ok and f.message.startswith("1 subjectAltName entry ")
    assert one(check_request(facts(sans=two), ACCOUNT, "ssl"), "san.count").message.startswith("3 subjectAltName entries")
    assert not one(check_request(facts(sans=tuple(("dns", f"h{i}.twca.com.tw") for i in range(100))), ACCOUNT, "ssl"),
                   "san.count").ok


def test_san_type_names_each_wrong_kind() -> None:
    f = one(check_request(facts(sans=(("email", "a@twca.com.tw"),)), ACCOUNT, "ssl"), "san.type")
    assert not f.ok and "a@twca.com.tw" in f.message and " is not allowed" in f.message
    f = one(check_request(facts(sans=(("email", "a@twca.com.tw"), ("uri", "http://x"))), ACCOUNT, "ev"), "san.type")
    assert not f.ok and " are not allowed" in f.message and "http://x" in f.message and "ev" in f.message
    f = one(check_request(facts(sans=(("weird", "v"),)), ACCOUNT, "ssl"), "san.type")
    assert not f.ok and "weird" in f.message
    assert one(check_request(facts(sans=()), ACCOUNT, "ssl"), "san.type").ok


@pytest.mark.parametrize("state, ok", [("valid", True), ("invalid", False), ("not checked", False), ("odd", False)])
def test_sig_valid_on_each_state(state: str, ok: bool) -> None:
    request = dataclasses.replace(facts(), signature_state=state)  # type: ignore[arg-type]
    f = one(check_request(request, ACCOUNT, "ssl"), "sig.valid")
    assert f.ok is ok
    if state == "odd":
        assert '"odd"' in f.message
    if state == "invalid":
        assert "weak" not in f.message and "odd" not in f.message


def test_check_request_reports_its_profile() -> None:
    assert check_request(facts(), ACCOUNT, "ev").profile == "ev"
    assert check_request(facts(), ACCOUNT).profile == "ssl"


def test_digits_in_the_name_part_of_a_personal_cn_are_not_a_business_number() -> None:
    for cn in ("A123456789-63-Y22099131", "70759028-01-22099131 X"):
        f = one(check_request(personal(cn, ()), ACCOUNT, "user-sign"), "personal.business-number")
        assert f.ok, cn
        assert "22099131" not in f.message


# ----- how request content is shown in a finding -----

def test_a_long_value_is_cut_at_100_characters_and_a_backslash_is_doubled() -> None:
    f = one(check_request(facts(base=(("C", "TW"), ("O", "Z" * 150))), ACCOUNT, "user-sign"), "subject.org")
    assert '"' + "Z" * 100 + '..."' in f.message and "Z" * 101 not in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("O", "Z" * 100))), ACCOUNT, "user-sign"), "subject.org")
    assert '"' + "Z" * 100 + '"' in f.message
    f = one(check_request(facts(base=(("C", "TW"), ("O", "A\\B"))), ACCOUNT, "user-sign"), "subject.org")
    assert '"A\\\\B"' in f.message
    assert "None" not in f.message


def test_at_most_ten_items_are_listed_and_the_rest_counted() -> None:
    eleven = tuple(("email", f"u{i}@twca.com.tw") for i in range(11))
    f = one(check_request(facts(sans=eleven), ACCOUNT, "ssl"), "san.type")
    assert "u9@twca.com.tw" in f.message and "u10@" not in f.message and "and 1 more" in f.message
    f = one(check_request(facts(sans=eleven[:10]), ACCOUNT, "ssl"), "san.type")
    assert "u9@twca.com.tw" in f.message and "more" not in f.message and "u0@twca.com.tw" in f.message


@pytest.mark.parametrize("cn, quoted", [("-a.twca.com.tw", '"-a"'), ("a-.twca.com.tw", '"a-"'),
                                        ("a!b.twca.com.tw", '"a!b"'), ("b" * 64 + ".twca.com.tw", '"' + "b" * 20 + '..."')])
def test_cn_label_names_the_bad_label(cn: str, quoted: str) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.label")
    assert not f.ok and quoted in f.message


@pytest.mark.parametrize("cn", ["a]b.twca.com.tw", "www.twca.com.tw:abc", "."])
def test_text_that_only_looks_like_a_decoration_is_left_to_the_label_rule(cn: str) -> None:
    result = check_request(facts(cn=cn), ACCOUNT, "ssl")
    assert one(result, "cn.syntax").ok
    assert not one(result, "cn.label").ok


def test_a_trailing_dot_after_one_label_is_named() -> None:
    f = one(check_request(facts(cn="a."), ACCOUNT, "ssl"), "cn.syntax")
    assert not f.ok and "trailing dot" in f.message


def test_a_wildcard_needs_two_labels_after_the_star_and_no_more() -> None:
    assert one(check_request(facts(cn="*.twca.tw"), None, "wildcard"), "cn.wildcard").ok
    assert not one(check_request(facts(cn="*.tw"), None, "wildcard"), "cn.wildcard").ok


def test_an_invalid_signature_is_not_reported_as_an_unknown_state() -> None:
    request = dataclasses.replace(facts(), signature_state="invalid")
    f = one(check_request(request, ACCOUNT, "ssl"), "sig.valid")
    assert not f.ok and '"invalid"' not in f.message
