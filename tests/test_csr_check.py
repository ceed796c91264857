"""``csr check``: every rule of a profile, in the fixed order, against an account of
the CA home or one defined in a TOML policy file; the same findings as ``cert issue``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, CaHome, invoke, openssl_csr, require, sh
from twcactl.errors import InputError
from twcactl.models import AccountPolicy
from twcactl.policy.checks import rules_for
from twcactl.policy.toml_policy import parse_account_policy

POLICY_TOML = """\
id = "70759028-01"
org = "TWCA"
org_aliases = ["TAIWAN-CA  Inc."]
domains = ["TWCA.com.tw.", "mis.twca.com.tw", "twca.com.tw"]
"""


@pytest.fixture(scope="module")
def csr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check")


@pytest.fixture(scope="module")
def good_csr(csr_dir: Path) -> Path:
    return openssl_csr(csr_dir, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.twca.com.tw", name="good")


@pytest.fixture(scope="module")
def level2_csr(csr_dir: Path) -> Path:
    """The ux.md example: two labels below the agreed domain."""
    return openssl_csr(csr_dir, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.level2.twca.com.tw", name="level2")


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "twca.toml"
    path.write_text(POLICY_TOML, encoding="utf-8")
    return path


@pytest.mark.usefixtures("store_engine")  # the issue-time policy on both store engines (issue 14)
def test_a_good_request_passes_every_rule_and_exits_0(ca_home: CaHome, good_csr: Path) -> None:
    result = ca_home.run("--json", "csr", "check", good_csr, "--account", ACCOUNT)
    assert result.code == 0, result.stdout
    doc = result.json()
    assert doc["ok"] is True and doc["profile"] == "ssl"
    assert [f["rule"] for f in doc["findings"]] == list(rules_for("ssl"))
    assert all(f["ok"] and f["message"] for f in doc["findings"])
    assert doc["account"]["id"] == ACCOUNT and doc["account"]["source"] == "store"
    assert doc["csr"]["cn"] == "www.twca.com.tw" and doc["csr"]["signature"] == "valid"
    human = ca_home.run("csr", "check", good_csr, "--account", ACCOUNT)
    assert human.code == 0 and human.stdout.rstrip().endswith(f"All {len(rules_for('ssl'))} rules passed.")


@pytest.mark.usefixtures("store_engine")  # the issue-time policy on both store engines (issue 14)
def test_the_ux_example_fails_cn_domain_with_exit_1(ca_home: CaHome, level2_csr: Path) -> None:
    result = ca_home.run("csr", "check", level2_csr, "--account", ACCOUNT)
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "CSR  www.level2.twca.com.tw  (RSA 2048, SHA-256, signature valid)"
    assert lines[1] == "profile ssl, account 70759028-01 (TWCA; twca.com.tw)"
    rows = [line.split()[:2] for line in lines[3:] if line.startswith("  ") and line.split()[0] in ("ok", "FAIL")]
    assert [rule for _status, rule in rows] == list(rules_for("ssl"))
    assert [rule for status, rule in rows if status == "FAIL"] == ["cn.domain"]
    assert "is two labels below twca.com.tw" in result.stdout
    assert lines[-1] == "1 rule failed."

    doc = ca_home.run("--json", "csr", "check", level2_csr, "--account", ACCOUNT)
    assert doc.code == 1
    body = doc.json()  # exactly one JSON document, the check document
    assert body["ok"] is False and "error" not in body
    assert [f["rule"] for f in body["findings"] if not f["ok"]] == ["cn.domain"]


@pytest.mark.usefixtures("store_engine")  # the issue-time policy on both store engines (issue 14)
def test_cert_issue_refuses_with_exactly_the_findings_of_csr_check(ca_home: CaHome, level2_csr: Path) -> None:
    check = ca_home.run("--json", "csr", "check", level2_csr, "--account", ACCOUNT).json()
    issue = ca_home.run("--json", "cert", "issue", level2_csr, "--account", ACCOUNT)
    assert issue.code == 1
    refused = issue.json()
    assert refused["error"]["kind"] == "policy"
    assert refused["findings"] == check["findings"]
    assert ca_home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 10


@pytest.mark.usefixtures("store_engine")  # the issue-time policy on both store engines (issue 14)
def test_policy_file_needs_no_ca_home_and_matches_the_store(ca_home: CaHome, level2_csr: Path, good_csr: Path,
                                                            policy_file: Path, tmp_path: Path) -> None:
    for csr in (good_csr, level2_csr):
        from_store = ca_home.run("--json", "csr", "check", csr, "--account", ACCOUNT)
        from_file = invoke("--home", tmp_path / "no-home", "--json", "csr", "check", csr, "--policy", policy_file)
        assert from_file.code == from_store.code
        assert from_file.json()["findings"] == from_store.json()["findings"]
    doc = invoke("--json", "csr", "check", level2_csr, "--policy", policy_file).json()
    assert doc["account"] == {"id": ACCOUNT, "org": "TWCA", "org_aliases": ["TAIWAN-CA Inc."],
                              "domains": ["twca.com.tw", "mis.twca.com.tw"], "source": str(policy_file)}
    assert not (tmp_path / "no-home").exists()


def test_without_an_account_only_the_independent_rules_run(level2_csr: Path) -> None:
    result = invoke("--json", "csr", "check", level2_csr)
    assert result.code == 0, "two labels below is an account question"
    doc = result.json()
    assert [f["rule"] for f in doc["findings"]] == list(rules_for("ssl", with_account=False))
    assert doc["account"] is None
    human = invoke("csr", "check", level2_csr)
    assert "no account: subject.org and cn.domain not applied" in human.stdout


def test_profiles_change_the_rules(csr_dir: Path, policy_file: Path) -> None:
    wildcard = openssl_csr(csr_dir, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN=*.twca.com.tw", name="wild")
    assert invoke("csr", "check", wildcard, "--policy", policy_file, "--profile", "wildcard").code == 0
    ssl = invoke("--json", "csr", "check", wildcard, "--policy", policy_file)
    assert ssl.code == 1
    assert [f["rule"] for f in ssl.json()["findings"] if not f["ok"]] == ["cn.wildcard"]

    personal = openssl_csr(csr_dir, "/C=TW/O=TWCA/OU=RD/CN=A123456789-63-YIRU", name="person")
    doc = invoke("--json", "csr", "check", personal, "--policy", policy_file, "--profile", "user-sign").json()
    assert doc["ok"] is True and doc["profile"] == "user-sign"
    assert [f["rule"] for f in doc["findings"]] == list(rules_for("user-sign"))
    typo = openssl_csr(csr_dir, "/C=TW/O=TWCA/CN=A123456788-63-YIRU", name="person-typo")
    doc = invoke("--json", "csr", "check", typo, "--policy", policy_file, "--profile", "user-enc").json()
    assert [f["rule"] for f in doc["findings"] if not f["ok"]] == ["personal.identifier"]


def test_weak_and_hostile_requests(csr_dir: Path, policy_file: Path) -> None:
    sha1 = csr_dir / "sha1.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "rsa:1024", "-nodes", "-sha1", "-keyout", csr_dir / "sha1.key",
              "-subj", r"/C=tw/ST=Taiwan/L=Taipei/O=twca/CN=https:\/\/www.twca.com.tw\/", "-out", sha1)
    assert proc.returncode == 0, proc.stderr
    result = invoke("--json", "csr", "check", sha1, "--policy", policy_file)
    assert result.code == 1
    failed = [f["rule"] for f in result.json()["findings"] if not f["ok"]]
    assert failed == ["subject.country", "subject.org", "cn.syntax", "key.strength", "sig.hash", "sig.valid"]
    human = invoke("csr", "check", sha1, "--policy", policy_file)
    assert human.stdout.splitlines()[0] == "CSR  https://www.twca.com.tw/  (RSA 1024, SHA-1, signature not checked)"
    assert human.stdout.splitlines()[-1] == "6 rules failed."


@pytest.mark.usefixtures("store_engine")  # the issue-time policy on both store engines (issue 14)
def test_refusals_and_bad_inputs(ca_home: CaHome, good_csr: Path, policy_file: Path, tmp_path: Path) -> None:
    both = invoke("--json", "csr", "check", good_csr, "--account", ACCOUNT, "--policy", policy_file)
    assert both.code == 2 and both.json()["error"]["kind"] == "usage"
    assert ca_home.run("--json", "csr", "check", good_csr, "--account", "70759028-09").code == 5
    junk = tmp_path / "junk.csr"
    junk.write_text("not a csr")
    assert invoke("--json", "csr", "check", junk).code == 3
    assert invoke("--json", "csr", "check", tmp_path / "missing.csr").code == 3
    assert invoke("--json", "csr", "check", good_csr, "--policy", tmp_path / "missing.toml").code == 3
    assert invoke("csr", "check", good_csr, "--profile", "server").code == 2


# ---------------------------------------------------------------- the policy file


def test_parse_account_policy_normalises_like_account_add() -> None:
    policy = parse_account_policy(POLICY_TOML.encode(), name="p.toml")
    assert policy == AccountPolicy(id="70759028-01", org="TWCA", org_aliases=("TAIWAN-CA Inc.",),
                                   domains=("twca.com.tw", "mis.twca.com.tw"))
    minimal = parse_account_policy(b'id = "70759028-01"\norg = "TWCA"\ndomains = ["twca.com.tw"]\n')
    assert minimal.org_aliases == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('id = "70759028-01"\norg = "TWCA"\ndomains = ["twca.com.tw"]\nquota = 3\n', "unknown key(s) 'quota'"),
        ('id = "70759028-01"\norg = "TWCA"\n', "missing key(s) domains"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = "twca.com.tw"\n', "domains must be a list of strings"),
        ('id = "70759028-01"\norg = ["TWCA"]\ndomains = ["twca.com.tw"]\n', "org must be a string"),
        ('id = "12345678-01"\norg = "TWCA"\ndomains = ["twca.com.tw"]\n', "is not an account ID"),
        ('id = "70759028-01"\norg = "台灣"\ndomains = ["twca.com.tw"]\n', "org contains non-ASCII"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = []\n', "domains is empty"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = ["192.168.1.1"]\n', "IPv4 address"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = ["*.twca.com.tw"]\n', "contains '*'"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = ["tw"]\n', "only one label"),
        ('id = "70759028-01"\norg = "TWCA"\ndomains = [1]\n', "must be a list of strings"),
        ('[account]\nid = "70759028-01"\n', "unknown key(s) 'account'"),
        ('id = "70759028-01\n', "not a TOML file"),
    ],
)
def test_policy_file_is_parsed_strictly(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_account_policy(text.encode(), name="p.toml")
    assert fragment in info.value.message
    assert info.value.message.startswith("p.toml")


def test_bad_policy_file_is_exit_3_on_the_command_line(good_csr: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'id = "70759028-01"\norg = "TWCA"\ndomains = ["twca.com.tw"]\nextra = 1\n')
    result = invoke("--json", "csr", "check", good_csr, "--policy", path)
    assert result.code == 3 and result.json()["error"]["kind"] == "input"
    assert "extra" in result.json()["error"]["message"]
    path.write_bytes(b"\xff\xfe not utf-8")
    assert invoke("--json", "csr", "check", good_csr, "--policy", path).code == 3
