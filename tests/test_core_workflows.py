"""Issue 11: the core owns every workflow.  The account, operator, card-registration, enrolment-planning
and PFX workflows are called here directly, without click, on a real CA home made through the CLI; each
test checks the records, the ledger and the activity log, and that a refusal changes nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.conftest import ACCOUNT, CaHome, issued_bundle, make_ca
from tests.test_pfx import _two_key_pfx
from twcactl.authority.accounts import AccountChange, Credit, NewAccount, add_account, credit_account, update_account
from twcactl.authority.card_issuer import register_card
from twcactl.authority.home import ensure_new_home
from twcactl.authority.operators import OperatorGrant, add_operator, set_operator_role
from twcactl.authority.rekey import rekey_with_new_key
from twcactl.card import plan_enrolment
from twcactl.csr import subject_options
from twcactl.errors import NotFoundError, PolicyError, QuotaError, StateError, UsageError
from twcactl.pfx import change_password, export_pfx, open_pfx
from twcactl.pkix.keys import load_private_key
from twcactl.pkix.pem import load_certificate
from twcactl.store import Store

SECOND = "70759028-02"


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A fresh CA home (no passphrase) whose first manager is ``alice``, with no account yet."""
    return make_ca(tmp_path / "ca", passphrase=None)


@pytest.fixture
def store(home: CaHome) -> Iterator[Store]:
    opened = Store.open(home.path)
    try:
        yield opened
    finally:
        opened.close()


def _log(store: Store, action: str) -> list[dict[str, object]]:
    return [e.to_json() for e in store.log.entries() if e.action == action]


def _with_auditor(store: Store) -> None:
    add_operator(store, OperatorGrant("carol", "auditor"), by="alice")


# ---------------------------------------------------------------- accounts


def test_add_account_writes_the_account_its_opening_ledger_entry_and_the_log(store: Store) -> None:
    new = NewAccount(ACCOUNT, "TWCA  Inc", domains=("TWCA.com.tw.", "twca.com.tw", "mis.twca.com.tw"),
                     aliases=("TWCA",), quota=7)
    account = add_account(store, new, operator="alice")
    assert (account.id, account.org, account.org_aliases) == (ACCOUNT, "TWCA Inc", ("TWCA",))
    assert account.domains == ("twca.com.tw", "mis.twca.com.tw")
    assert account.balance == 7
    assert [(e.delta, e.balance, e.action, e.operator, e.note) for e in account.ledger] == [
        (7, 7, "credit", "alice", "initial quota")]
    [entry] = _log(store, "account.add")
    assert entry["account"] == ACCOUNT and entry["operator"] == "alice"
    expected = {"org": "TWCA  Inc", "org_aliases": ["TWCA"], "domains": ["twca.com.tw", "mis.twca.com.tw"], "quota": 7}
    assert {k: entry["details"][k] for k in expected} == expected  # later issues add keys (issue 13: the result)
    assert entry["details"]["result"] == {"org": "TWCA Inc", "domains": ["mis.twca.com.tw", "twca.com.tw"],
                                          "aliases": ["TWCA"]}


def test_add_account_with_no_quota_writes_no_ledger_entry(store: Store) -> None:
    account = add_account(store, NewAccount(ACCOUNT, "TWCA", domains=("twca.com.tw",)), operator="alice")
    assert account.balance == 0 and account.ledger == ()


@pytest.mark.parametrize("bad", ["12345678-01", "7075902801", "70759028-1", "７０７５９０２８-01"])
def test_a_bad_account_id_is_a_usage_error_before_the_home_is_touched(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        NewAccount(bad, "TWCA", domains=("twca.com.tw",))
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("org", "aliases", "domains", "quota"), [
    ("台灣網路認證", (), ("twca.com.tw",), 0),
    ("TWCA", ("TW\x1bCA",), ("twca.com.tw",), 0),
    ("TWCA", (), ("192.168.1.1",), 0),
    ("TWCA", (), (), 0),
    ("TWCA", (), ("twca.com.tw",), -1),
])
def test_bad_account_values_are_refused(org: str, aliases: tuple[str, ...], domains: tuple[str, ...],
                                        quota: int) -> None:
    with pytest.raises(UsageError):
        NewAccount(ACCOUNT, org, domains=domains, aliases=aliases, quota=quota)


def test_an_auditor_is_refused_and_nothing_changes(store: Store) -> None:
    _with_auditor(store)
    add_account(store, NewAccount(ACCOUNT, "TWCA", domains=("twca.com.tw",), quota=3), operator="alice")
    head = len(store.log.entries())
    refusals = [
        lambda: add_account(store, NewAccount(SECOND, "TWCA", domains=("twca.com.tw",)), operator="carol"),
        lambda: update_account(store, ACCOUNT, AccountChange(add_domains=("mis.twca.com.tw",)), operator="carol"),
        lambda: credit_account(store, Credit(ACCOUNT, 5), operator="carol"),
        lambda: add_operator(store, OperatorGrant("dave", "manager"), by="carol"),
        lambda: set_operator_role(store, OperatorGrant("carol", "manager"), by="carol"),
    ]
    for refused in refusals:
        with pytest.raises(StateError) as caught:
            refused()
        assert caught.value.exit_code == 5
    assert [a.id for a in store.accounts.all()] == [ACCOUNT]
    account = store.accounts.get(ACCOUNT)
    assert account.balance == 3 and account.domains == ("twca.com.tw",) and len(account.ledger) == 1
    assert {o["name"]: o["role"] for o in store.operators.all()} == {"alice": "manager", "carol": "auditor"}
    assert len(store.log.entries()) == head


def test_update_account_changes_domains_and_aliases_and_logs_it(store: Store) -> None:
    add_account(store, NewAccount(ACCOUNT, "TWCA", domains=("twca.com.tw",)), operator="alice")
    change = AccountChange(org="TWCA   Inc", add_domains=("MIS.twca.com.tw",), remove_domains=("TWCA.com.tw.",),
                           add_aliases=("TWCA",))
    account = update_account(store, ACCOUNT, change, operator="alice")
    assert (account.org, account.domains, account.org_aliases) == ("TWCA Inc", ("mis.twca.com.tw",), ("TWCA",))
    [entry] = _log(store, "account.set")
    expected = {"org": "TWCA   Inc", "add_domains": ["mis.twca.com.tw"], "remove_domains": ["twca.com.tw"],
                "add_aliases": ["TWCA"], "remove_aliases": []}
    assert {k: entry["details"][k] for k in expected} == expected  # later issues add keys (issue 13: the result)
    assert entry["details"]["result"] == {"org": "TWCA Inc", "domains": ["mis.twca.com.tw"], "aliases": ["TWCA"]}


def test_update_account_refuses_to_drop_the_last_domain_and_rolls_back(store: Store) -> None:
    add_account(store, NewAccount(ACCOUNT, "TWCA", domains=("twca.com.tw",)), operator="alice")
    with pytest.raises(UsageError):
        update_account(store, ACCOUNT, AccountChange(org="Other", remove_domains=("twca.com.tw",)), operator="alice")
    account = store.accounts.get(ACCOUNT)
    assert (account.org, account.domains) == ("TWCA", ("twca.com.tw",))
    assert _log(store, "account.set") == []


def test_an_empty_change_is_refused() -> None:
    with pytest.raises(UsageError):
        AccountChange()


def test_credit_account_writes_ledger_and_log_and_a_debit_never_goes_below_zero(store: Store) -> None:
    add_account(store, NewAccount(ACCOUNT, "TWCA", domains=("twca.com.tw",), quota=2), operator="alice")
    account = credit_account(store, Credit(ACCOUNT, 5, "order 2026-118"), operator="alice")
    assert account.balance == 7
    assert (account.ledger[0].delta, account.ledger[0].balance, account.ledger[0].note) == (5, 7, "order 2026-118")
    [entry] = _log(store, "account.credit")
    assert entry["details"] == {"delta": 5, "balance": 7, "note": "order 2026-118"}
    with pytest.raises(QuotaError) as caught:
        credit_account(store, Credit(ACCOUNT, -8), operator="alice")
    assert caught.value.exit_code == 5
    assert store.accounts.get(ACCOUNT).balance == 7 and len(_log(store, "account.credit")) == 1
    with pytest.raises(NotFoundError):
        credit_account(store, Credit(SECOND, 1), operator="alice")
    with pytest.raises(UsageError):
        Credit(ACCOUNT, 0)


# ---------------------------------------------------------------- operators


def test_operators_are_added_and_changed_with_a_log_entry_each(store: Store) -> None:
    operators = add_operator(store, OperatorGrant("bob", "auditor"), by="alice")
    assert {o["name"]: (o["role"], o["created_by"]) for o in operators}["bob"] == ("auditor", "alice")
    operators = set_operator_role(store, OperatorGrant("bob", "manager"), by="alice")
    assert {o["name"]: o["role"] for o in operators}["bob"] == "manager"
    assert [e["details"] for e in _log(store, "operator.update")] == [{"name": "bob", "role": "manager"}]
    assert {"name": "bob", "role": "auditor"} in [e["details"] for e in _log(store, "operator.add")]
    with pytest.raises(StateError):
        add_operator(store, OperatorGrant("bob", "auditor"), by="alice")
    with pytest.raises(NotFoundError):
        set_operator_role(store, OperatorGrant("nobody", "auditor"), by="alice")


@pytest.mark.parametrize(("name", "role"), [("bob\x1b[2J", "manager"), ("", "auditor"), ("bob", "root")])
def test_bad_operator_grants_are_usage_errors(name: str, role: str) -> None:
    with pytest.raises(UsageError):
        OperatorGrant(name, role)


# ---------------------------------------------------------------- ca init


def test_ensure_new_home_refuses_a_home_that_holds_a_ca(home: CaHome, tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        ensure_new_home(home.path)
    assert caught.value.exit_code == 5
    ensure_new_home(tmp_path / "empty")  # no CA there: nothing raised


# ---------------------------------------------------------------- card enrolment planning and registration


def test_plan_enrolment_of_a_pair_and_of_an_ssl_key() -> None:
    subject = subject_options(cn="A123456789-01-YIRU", org="TWCA", ous=(), locality=None, state=None, country="TW")
    plan = plan_enrolment(subject, sans=("yiru@twca.com.tw",), profile="user-sign", pair=True, key_type="ec-p256",
                          label="YIRU")
    assert [(s.profile, s.label, s.key_type, s.encryption) for s in plan.specs] == [
        ("user-sign", "YIRU sign", "ec-p256", False), ("user-enc", "YIRU enc", "ec-p256", True)]
    assert plan.subject_pairs == (("C", "TW"), ("O", "TWCA"), ("CN", "A123456789-01-YIRU"))
    assert plan.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "A123456789-01-YIRU"
    assert plan.sans_for(plan.specs[1]) == [x509.RFC822Name("yiru@twca.com.tw")]

    ssl = subject_options(cn="www.twca.com.tw", org="TWCA", ous=(), locality=None, state=None, country="TW")
    plan = plan_enrolment(ssl, sans=("twca.com.tw", "www.twca.com.tw"), profile="ssl", pair=False,
                          key_type="rsa2048", label=None)
    assert [(s.profile, s.label) for s in plan.specs] == [("ssl", "ssl")]
    assert plan.sans_for(plan.specs[0]) == [x509.DNSName("www.twca.com.tw"), x509.DNSName("twca.com.tw")]


@pytest.mark.parametrize(("cn", "sans", "profile", "pair"), [
    ("A123456789-01-YIRU", (), "ssl", True),
    ("A123456789-01-怡如", (), "user-sign", False),
    ("A123456789-01-YIRU", ("怡如@twca.com.tw",), "user-sign", False),
])
def test_plan_enrolment_refusals(cn: str, sans: tuple[str, ...], profile: str, pair: bool) -> None:
    subject = subject_options(cn=cn, org="TWCA", ous=(), locality=None, state=None, country="TW")
    with pytest.raises(UsageError):
        plan_enrolment(subject, sans=sans, profile=profile, pair=pair, key_type="rsa2048", label=None)


def _foreign_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


def test_register_card_links_this_cas_certificates_and_logs_them(tmp_path: Path) -> None:
    home, bundle, serial = issued_bundle(tmp_path)
    ours = load_certificate((bundle / "server.cer").read_bytes(), name="server.cer")
    store = Store.open(home.path)
    try:
        found = register_card(store, [(ours, "a.cer"), (_foreign_certificate(), "b.cer")], token_label="TWCA Card",
                              token_serial="0001", operator="bob")
        assert found.records[0] is not None and found.records[0].serial == serial and found.records[1] is None
        assert found.renewal_window_days == 30
        [entry] = _log(store, "card.register")
        assert (entry["operator"], entry["account"], entry["serial"]) == ("bob", ACCOUNT, serial)
        assert entry["details"] == {"token": "TWCA Card", "token_serial": "0001", "file": "a.cer"}
        head = len(store.log.entries())
        register_card(store, [(_foreign_certificate(), "c.cer")], token_label="x", token_serial="y", operator="bob")
        assert len(store.log.entries()) == head
    finally:
        store.close()


# ---------------------------------------------------------------- PFX


def _never() -> str:
    raise AssertionError("the new password was asked for although the file is refused")


def test_change_password_rewrites_under_the_new_password(tmp_path: Path) -> None:
    home, bundle, _serial = issued_bundle(tmp_path)
    cert = load_certificate((bundle / "server.cer").read_bytes(), name="server.cer")
    key = load_private_key((tmp_path / "www.key").read_bytes(), None, name="www.key")
    data = export_pfx(key, cert, [], password="old-secret", friendly_name="www", legacy=True)
    opened = open_pfx(data, "old-secret")
    result = change_password(opened, old_password="old-secret", new_password=lambda: "new-secret", legacy=False)
    again = pkcs12.load_pkcs12(result.data, b"new-secret")
    assert again.key is not None and again.cert is not None and again.cert.friendly_name == b"www"
    assert result.was.certificate_protection.legacy and not result.protection.certificate_protection.legacy
    assert (result.certificates, result.has_key, result.same_password) == (1, True, False)
    same = change_password(opened, old_password="old-secret", new_password=lambda: "old-secret")
    assert same.same_password
    with pytest.raises(UsageError):
        change_password(opened, old_password="old-secret", new_password=lambda: "short")


def test_a_two_key_file_is_refused_before_the_new_password_is_asked() -> None:
    opened = open_pfx(_two_key_pfx("pfx-secret-42"), "pfx-secret-42")
    with pytest.raises(PolicyError):
        change_password(opened, old_password="pfx-secret-42", new_password=_never)


def test_rekey_with_new_key_renews_charges_and_revokes(tmp_path: Path) -> None:
    home, bundle, serial = issued_bundle(tmp_path)
    cert = load_certificate((bundle / "server.cer").read_bytes(), name="server.cer")
    key = load_private_key((tmp_path / "www.key").read_bytes(), None, name="www.key")
    opened = open_pfx(export_pfx(key, cert, [], password="old-secret", friendly_name="www"), "old-secret")
    store = Store.open(home.path)
    try:
        before = store.accounts.get(ACCOUNT).balance
        result, outcome = rekey_with_new_key(store, opened, old_password="old-secret",
                                             new_password=lambda: "new-secret", legacy=False, early=True,
                                             revoke_old=True, operator="alice", passphrase=lambda: "")
        assert outcome.renewed == serial and outcome.revoked
        assert store.certificates.get(serial).state == "revoked"
        assert store.accounts.get(ACCOUNT).balance == outcome.balance_after
        assert outcome.balance_before == before
        assert [e["serial"] for e in _log(store, "cert.revoke")] == [serial]
    finally:
        store.close()
    again = pkcs12.load_pkcs12(result.data, b"new-secret")
    assert again.cert is not None and again.cert.certificate.serial_number == outcome.certificate.serial_number
    assert result.certificates == 1 + len(outcome.chain) == 3


def test_rekey_with_new_key_refuses_a_certificate_only_file_first(home: CaHome, store: Store) -> None:
    trust = pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(_foreign_certificate(), b"x")],
                                             serialization.BestAvailableEncryption(b"changeit"))
    with pytest.raises(PolicyError):
        rekey_with_new_key(store, open_pfx(trust, "changeit"), old_password="changeit", new_password=_never,
                           legacy=False, early=False, revoke_old=False, operator="alice", passphrase=lambda: "")
