"""Issue 20: the request-policy mutants (twcactl.policy.checks) that survived test_issue20_policy_mutants.py.

Written from mutmut's survivor list (docs/testing.md, "Mutation testing"): the character boundaries of
``printable_problem``, inner-whitespace collapsing of O, each CN rule bound to ``_name_rule``, and the data a
finding names (which characters, which labels, which SAN kind, the refused value). Each test asserts on a
finding's rule ID and ok flag and on the values it quotes, or on ``printable_problem``'s documented result.
"""

from __future__ import annotations

import dataclasses

import pytest

from twcactl.models import AccountPolicy, CheckResult, Finding, RequestFacts, SubjectAttribute
from twcactl.policy.checks import _analyse_name, check_request, dns_name_problems, printable_problem

ACCOUNT = AccountPolicy(id="70759028-01", org="TWCA", org_aliases=("TAIWAN-CA Inc.",),
                        domains=("twca.com.tw", "mis.twca.com.tw"))
_OIDS = {"C": "2.5.4.6", "ST": "2.5.4.8", "L": "2.5.4.7", "O": "2.5.4.10", "CN": "2.5.4.3", "OU": "2.5.4.11"}
_NAME_RULES = ("cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length", "cn.wildcard")


@pytest.fixture(autouse=True)
def _fresh_name_reports() -> None:
    """``_analyse_name`` caches reports; under mutation testing a report cached by another test would hide
    the mutant, so every test analyses its names afresh."""
    _analyse_name.cache_clear()


def facts(*extra: tuple[str, str], cn: str | None = "www.twca.com.tw", sans: tuple[tuple[str, str], ...] = (),
          org: str = "TWCA") -> RequestFacts:
    pairs = [("C", "TW"), ("ST", "Taiwan"), ("L", "Taipei"), ("O", org), *extra]
    pairs += [("CN", cn)] if cn is not None else []
    return RequestFacts(subject=tuple(SubjectAttribute(n, _OIDS.get(n, n), v) for n, v in pairs), sans=sans)


def one(result: CheckResult, rule: str) -> Finding:
    found = [f for f in result.findings if f.rule == rule]
    assert len(found) == 1, rule
    return found[0]


# ----- printable_problem: the edges of the control and non-ASCII ranges -----

@pytest.mark.parametrize("char, escaped", [
    ("\x1f", "\\x1f"), ("\x7f", "\\x7f"), ("\x80", "\\x80"), ("\x9f", "\\x9f"),
])
def test_c0_del_and_c1_characters_are_control_characters(char: str, escaped: str) -> None:
    """0x00-0x1F, 0x7F and the C1 range 0x80-0x9F are control characters (the first check wins)."""
    assert printable_problem(f"TW{char}CA") == f"contains control character '{escaped}'"


@pytest.mark.parametrize("char, shown", [("\xa0", "\\xa0"), ("\xe9", "\xe9"), ("\u00ff", "\u00ff")])
def test_characters_above_the_c1_range_are_non_ascii_not_control(char: str, shown: str) -> None:
    assert printable_problem(f"TW{char}CA") == f"contains non-ASCII character '{shown}'"


@pytest.mark.parametrize("value", ["~", "TW~CA", "a b", "!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"])
def test_the_printable_ascii_range_ends_at_tilde(value: str) -> None:
    """0x20-0x7E is accepted inside a value: ``~`` (0x7E) is the last printable ASCII character."""
    assert printable_problem(value) is None


def test_a_control_character_is_reported_before_a_non_ascii_one_wherever_it_stands() -> None:
    assert printable_problem("\u53f0\x01") == "contains control character '\\x01'"
    assert printable_problem("\x9f\u53f0") == "contains control character '\\x9f'"


@pytest.mark.parametrize("org, char", [("TW\x80CA", "\\x80"), ("TW\xa0CA", "\\xa0"), ("TW~CA", None)])
def test_subject_printable_applies_the_same_boundaries(org: str, char: str | None) -> None:
    f = one(check_request(facts(org=org), None, "ssl"), "subject.printable")
    assert f.ok is (char is None)
    if char is not None:
        assert f.message.startswith("O contains ") and f"'{char}'" in f.message


# ----- subject.org: inner whitespace collapses, outer padding does not -----

@pytest.mark.parametrize("org, ok", [
    ("ABBA  Ltd", True), ("ABBA\tLtd", True), ("ABBA Ltd", True), ("ABBA \n Ltd", True),
    (" ABBA Ltd", False), ("ABBA Ltd ", False), ("ABBALtd", False),
])
def test_org_inner_whitespace_runs_count_as_one_space(org: str, ok: bool) -> None:
    """The first letter of the name (A) recurs in it: the kept front padding is cut at its first occurrence."""
    account = dataclasses.replace(ACCOUNT, org="ABBA Ltd", org_aliases=())
    f = one(check_request(facts(org=org), account, "ssl"), "subject.org")
    assert f.ok is ok, (org, f.message)


def test_an_alias_with_inner_whitespace_runs_matches_a_single_spaced_o() -> None:
    account = dataclasses.replace(ACCOUNT, org="TWCA", org_aliases=("Alpha   Beta  A",))
    assert one(check_request(facts(org="Alpha Beta A"), account, "ssl"), "subject.org").ok
    assert not one(check_request(facts(org="AlphaBeta A"), account, "ssl"), "subject.org").ok


# ----- the CN rules bound to _name_rule -----

@pytest.mark.parametrize("cn, rule", [
    ("https://www.twca.com.tw", "cn.syntax"),
    ("10.0.0.1", "cn.ip-address"),
    ("www.\u53f0\u7063.twca.com.tw", "cn.idn"),
    ("a_b.twca.com.tw", "cn.label"),
    (".".join(["a" * 60] * 4) + ".twca.com.tw", "cn.length"),
])
def test_each_cn_rule_fails_with_the_reason_of_the_name_analysis(cn: str, rule: str) -> None:
    """Each rule reports its own reason from the CN's analysis, and the other name rules pass."""
    reasons = dict(dns_name_problems(cn, allow_wildcard=False))
    assert rule in reasons
    result = check_request(facts(cn=cn), None, "ssl")
    for name_rule in _NAME_RULES:
        f = one(result, name_rule)
        if name_rule in reasons:
            assert not f.ok and f.message == reasons[name_rule], name_rule
        else:
            assert f.ok, name_rule


def test_each_cn_rule_passes_a_good_name_with_its_own_account_of_it() -> None:
    result = check_request(facts(cn="a.b.twca.com.tw"), None, "ssl")
    messages = {rule: one(result, rule).message for rule in _NAME_RULES}
    assert all(one(result, rule).ok for rule in _NAME_RULES)
    assert len(set(messages.values())) == len(_NAME_RULES)  # each rule says what it checked, none says "no CN"
    assert messages["cn.label"].startswith("5 labels ")
    assert messages["cn.length"].startswith("15 octets ")
    assert "no CN" not in messages.values()


def test_the_cn_rules_fail_without_a_cn_and_pass_with_one_on_every_ssl_profile() -> None:
    for profile in ("ssl", "ev", "wildcard"):
        cn = "*.twca.com.tw" if profile == "wildcard" else "www.twca.com.tw"
        with_cn = check_request(facts(cn=cn), ACCOUNT, profile)
        without = check_request(facts(cn=None), ACCOUNT, profile)
        for rule in _NAME_RULES[:-1]:
            assert one(with_cn, rule).ok, (profile, rule)
            assert (one(without, rule).ok, one(without, rule).message) == (False, "no CN"), (profile, rule)


# ----- what a finding names: lists of values, field names, stand-ins for nothing -----

def _decorations(message: str, name: str) -> str:
    """The list of what cn.syntax found, between ``<name> has `` and the advice after ``; ``."""
    head = f"{name} has "
    assert message.startswith(head), message
    return message[len(head):].rsplit("; ", 1)[0]


@pytest.mark.parametrize("cn, found", [
    (" www.twca.com.tw", "whitespace"),
    ("[www.twca.com.tw]", "square brackets"),
    ("www.twca.com.tw:443", 'a port ":443"'),
    ("https://www.twca.com.tw/", 'a scheme "https://" and a path "/"'),
    ("https://u@www.twca.com.tw:443/p", 'a scheme "https://", a path "/p", user info "u@" and a port ":443"'),
    ("\twww.twca.com.tw.", "whitespace and a trailing dot"),
])
def test_cn_syntax_lists_every_decoration_in_order(cn: str, found: str) -> None:
    f = one(check_request(facts(cn=cn), ACCOUNT, "ssl"), "cn.syntax")
    assert not f.ok
    shown = cn.replace("\t", "\\t")
    assert _decorations(f.message, shown) == found


def test_cn_label_lists_at_most_five_bad_characters_of_a_label() -> None:
    f = one(check_request(facts(cn="a)(&%$!b.twca.com.tw"), ACCOUNT, "ssl"), "cn.label")
    assert not f.ok
    assert "\"a)(&%$!b\" contains '!', '$', '%', '&', '('; " in f.message  # sorted, the sixth left out


def test_cn_label_lists_every_bad_label_comma_separated() -> None:
    f = one(check_request(facts(cn="-a.b-.twca.com.tw"), ACCOUNT, "ssl"), "cn.label")
    assert not f.ok
    listed = f.message.split(": ", 1)[1].split("; ")[0]
    assert [item.split(" ")[0] for item in listed.split(", ")] == ['"-a"', '"b-"']
    assert f.message.startswith('-a.b-.twca.com.tw has bad labels: ')
    f = one(check_request(facts(cn="-a.twca.com.tw"), ACCOUNT, "ssl"), "cn.label")
    assert f.message.startswith('-a.twca.com.tw has a bad label: "-a" ')


def test_an_empty_value_is_shown_as_two_quotes() -> None:
    f = one(check_request(facts(cn=""), None, "ssl"), "cn.label")
    assert not f.ok and f.message == '"" is empty'
    f = one(check_request(facts(org=""), ACCOUNT, "ssl"), "subject.org")
    assert not f.ok and f.message.startswith('O "" is not ')


def test_subject_org_names_the_accepted_names_last_when_no_difference_is_spotted() -> None:
    f = one(check_request(facts(org="Other"), ACCOUNT, "ssl"), "subject.org")
    assert not f.ok and f.message.endswith('"TWCA" or "TAIWAN-CA Inc."')


def test_subject_required_separates_missing_and_repeated_attributes() -> None:
    request = RequestFacts(subject=(SubjectAttribute("CN", "2.5.4.3", "a.twca.com.tw"),
                                    SubjectAttribute("CN", "2.5.4.3", "b.twca.com.tw")))
    f = one(check_request(request, None, "ssl"), "subject.required")
    parts = f.message.split("; ")
    assert not f.ok and len(parts) == 2
    assert parts[0] == "missing C, ST, L, O (present: CN)" and parts[1].startswith("more than one CN")
    f = one(check_request(RequestFacts(subject=()), None, "user-sign"), "subject.required")
    assert f.message == "missing C, O, CN (present: none)"


def test_subject_printable_lists_each_bad_value_by_attribute_separated_by_semicolons() -> None:
    f = one(check_request(facts(("OU", "R\xe9seau"), org="TW\x01CA"), None, "ssl"), "subject.printable")
    assert not f.ok
    parts = f.message.split("; ")
    assert parts[0] == "O contains control character '\\x01'"
    assert parts[1] == "OU contains non-ASCII character '\xe9'"


def test_subject_identity_lists_the_stated_and_the_account_values() -> None:
    account = dataclasses.replace(ACCOUNT, jurisdiction_country="TW")  # business number 70759028 from the ID
    stated = (("serialNumber", "70759028"), ("jurisdictionC", "TW"))
    f = one(check_request(facts(*stated), account, "ev"), "subject.identity")
    assert f.ok
    assert f.message.startswith("serialNumber, jurisdictionC ")
    assert f.message.endswith("(serialNumber 70759028, jurisdictionC TW, businessCategory Private Organization)")


def test_personal_business_number_names_the_field_that_carries_it() -> None:
    personal = RequestFacts(subject=(SubjectAttribute("C", "2.5.4.6", "TW"), SubjectAttribute("O", "2.5.4.10", "TWCA"),
                                     SubjectAttribute("CN", "2.5.4.3", "22099131-01-OTHER")))
    f = one(check_request(personal, ACCOUNT, "user-sign"), "personal.business-number")
    assert not f.ok and f.message.split(" ")[:2] == ["CN", "carries"]
    serial = dataclasses.replace(personal, subject=(*personal.subject[:2], SubjectAttribute("CN", "2.5.4.3",
                                 "A123456789-63-YIRU"), SubjectAttribute("serialNumber", "2.5.4.5", "22099131")))
    f = one(check_request(serial, ACCOUNT, "user-sign"), "personal.business-number")
    assert not f.ok and f.message.split(" ")[:2] == ["serialNumber", "carries"]


def test_personal_identifier_quotes_the_refused_cn() -> None:
    personal = RequestFacts(subject=(SubjectAttribute("C", "2.5.4.6", "TW"), SubjectAttribute("O", "2.5.4.10", "TWCA"),
                                     SubjectAttribute("CN", "2.5.4.3", "YIRU CHEN")))
    f = one(check_request(personal, ACCOUNT, "user-sign"), "personal.identifier")
    assert not f.ok and f.message.startswith('CN "YIRU CHEN" ')


def _personal(*sans: tuple[str, str]) -> RequestFacts:
    subject = (SubjectAttribute("C", "2.5.4.6", "TW"), SubjectAttribute("O", "2.5.4.10", "TWCA"),
               SubjectAttribute("CN", "2.5.4.3", "A123456789-63-YIRU"))
    return RequestFacts(subject=subject, sans=sans)


def test_personal_email_lists_the_agreed_domains_or_none_and_counts_addresses() -> None:
    f = one(check_request(_personal(("email", "a@example.com")), ACCOUNT, "user-sign"), "personal.email")
    assert not f.ok and f.message.endswith("agreed domains: twca.com.tw, mis.twca.com.tw")
    bare = dataclasses.replace(ACCOUNT, domains=())
    f = one(check_request(_personal(("email", "a@example.com")), bare, "user-sign"), "personal.email")
    assert not f.ok and f.message.endswith("agreed domains: none")
    f = one(check_request(_personal(("email", "a@twca.com.tw")), ACCOUNT, "user-sign"), "personal.email")
    assert f.ok and f.message.startswith("1 e-mail address ")
    f = one(check_request(_personal(("email", "a@twca.com.tw"), ("email", "b@twca.com.tw")), ACCOUNT, "user-sign"),
            "personal.email")
    assert f.ok and f.message.startswith("2 e-mail addresses ")


def test_san_type_names_each_refused_san_by_its_kind_comma_separated() -> None:
    sans = (("email", "a@twca.com.tw"), ("uri", "http://x"), ("ip", "10.0.0.1"))
    f = one(check_request(facts(sans=sans), ACCOUNT, "ssl"), "san.type")
    assert not f.ok
    assert f.message.startswith("e-mail address SAN a@twca.com.tw, URI SAN http://x, IP address SAN 10.0.0.1 are ")


def test_an_unknown_profile_is_refused_with_every_profile_listed() -> None:
    from twcactl.errors import UsageError
    from twcactl.models import PROFILES

    with pytest.raises(UsageError) as caught:
        check_request(facts(), None, "server")
    assert str(caught.value).endswith("choose one of " + ", ".join(PROFILES))


@pytest.mark.parametrize("name, ok, shown", [("SHA_256", True, "SHA-256"), ("sha_384", True, "SHA-384"),
                                             ("SHA_1", False, "SHA-1"), ("sha-512", True, "SHA-512")])
def test_signature_hash_names_ignore_hyphens_and_underscores(name: str, ok: bool, shown: str) -> None:
    f = one(check_request(dataclasses.replace(facts(), signature_hash=name), None, "ssl"), "sig.hash")
    assert f.ok is ok and f.message.split(" ")[0] == shown


def test_an_ec_key_without_a_curve_is_refused_as_curve_unknown() -> None:
    request = dataclasses.replace(facts(), key_type="EC", key_size=256, key_curve=None)
    f = one(check_request(request, None, "ssl"), "key.strength")
    assert not f.ok and f.message.startswith("EC curve unknown ")


@pytest.mark.parametrize("cn", ["1.2.3.4.0", "0.0.0.0.0", "10.1.2.3.0"])
def test_five_numeric_parts_are_not_read_as_an_address_in_another_notation(cn: str) -> None:
    """inet_aton reads 1 to 4 parts: five numeric labels are refused as numeric labels, no quad is named."""
    f = one(check_request(facts(cn=cn), None, "ssl"), "cn.ip-address")
    assert not f.ok
    assert "IPv4 address" in f.message and "another notation" not in f.message
