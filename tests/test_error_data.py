"""Issue 11, errors carry data: a refused PIN shows the token's PIN state in the JSON error
document, a policy refusal carries typed findings, and a bug inside a block that once caught
``Exception`` now exits 70 instead of passing for bad input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.card_support import OPENCRYPTOKI_PIN, PIN, Opencryptoki, SoftHsm, stop_pkcsslotd
from tests.conftest import ACCOUNT, CaHome, invoke, require
from twcactl import csr as csr_mod
from twcactl.authority.lifecycle import CsrInput, check_csr
from twcactl.backends import PinState, locked_pin_error, wrong_pin_error
from twcactl.cli.output import error_document
from twcactl.errors import InputError, PinError, PolicyError
from twcactl.models import AccountPolicy, Finding
from twcactl.pkix.cms_request import build_renewal_request, verify_renewal_request
from twcactl.pkix.pem import load_csr
from twcactl.rules.pin import PinCondition, PinFailure

WRONG = "99990000"
_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                   x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"),
                   x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.level2.twca.com.tw")])
CSR = (x509.CertificateSigningRequestBuilder().subject_name(_NAME)
       .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.level2.twca.com.tw")]), critical=False)
       .sign(_KEY, hashes.SHA256()))
CSR_PEM = CSR.public_bytes(serialization.Encoding.PEM)
POLICY = AccountPolicy(ACCOUNT, "TWCA", (), ("twca.com.tw",))


# --------------------------------------------------------------------------
# PIN state, without a device


def test_pin_errors_carry_the_state_read_after_the_refusal() -> None:
    final = wrong_pin_error(PinState(count_low=True, final_try=True))
    assert isinstance(final, PinError) and final.exit_code == 4
    assert final.failure is PinFailure.INCORRECT and final.pin_state.condition is PinCondition.FINAL_TRY
    assert error_document(final)["error"]["pin"] == {
        "state": "final_try", "failure": "incorrect", "role": "user", "flags": PinState(True, True).to_json()}
    locked = wrong_pin_error(PinState(locked=True))
    assert (locked.failure, locked.pin_state.condition) == (PinFailure.LOCKED, PinCondition.LOCKED)
    so = locked_pin_error(PinState(locked=True), what="SO PIN")
    assert error_document(so)["error"]["pin"]["role"] == "so"
    short = wrong_pin_error(PinState(), failure=PinFailure.LENGTH_INVALID)
    assert error_document(short)["error"]["pin"]["failure"] == "length_invalid"
    assert error_document(short)["error"]["pin"]["state"] == "ok"


def test_pin_conditions_follow_the_flags_worst_first() -> None:
    assert PinState().condition is PinCondition.OK
    assert PinState(count_low=True).condition is PinCondition.TRIES_LOW
    assert PinState(count_low=True, final_try=True, to_be_changed=True).condition is PinCondition.FINAL_TRY
    assert PinState(to_be_changed=True).condition is PinCondition.MUST_CHANGE
    assert PinState(final_try=True, locked=True).condition is PinCondition.LOCKED


# --------------------------------------------------------------------------
# PIN state from real tokens


def test_softhsm_wrong_pin_document_shows_the_pin_state(hsm: SoftHsm) -> None:
    label = hsm.new_token(prefix="errdata")
    result = invoke("card", "verify-pin", "--token", label, "--pin", f"pass:{WRONG}", "--json", env=hsm.env())
    assert result.code == 4
    error = result.json()["error"]
    assert error["kind"] == "auth"
    assert error["pin"]["failure"] == "incorrect" and error["pin"]["role"] == "user"
    assert error["pin"]["state"] in {s.value for s in PinCondition} and error["pin"]["flags"]["locked"] is False
    good = invoke("card", "verify-pin", "--token", label, "--pin", f"pass:{PIN}", "--json", env=hsm.env())
    assert good.code == 0, good.stdout + good.stderr


@pytest.fixture(scope="module")
def ock_daemon() -> Iterator[Opencryptoki]:
    require("pkcsconf")
    if not Path(Opencryptoki.module).is_file():
        pytest.fail("opencryptoki is not installed; scripts/test.sh installs it")
    ock = Opencryptoki()
    try:
        yield ock
    finally:
        ock.release()
        stop_pkcsslotd()


def test_opencryptoki_pin_state_goes_tries_low_final_try_locked(ock_daemon: Opencryptoki) -> None:
    ock_daemon.reset_token()

    def pin_doc(pin: str) -> tuple[int, dict]:
        result = invoke("card", "verify-pin", "--pin", f"pass:{pin}", "--json", env=ock_daemon.env())
        return result.code, result.json()["error"]["pin"] if result.code else {}

    states = [pin_doc(WRONG) for _ in range(3)]
    assert [code for code, _ in states] == [4, 4, 4]
    assert [doc["state"] for _, doc in states] == ["tries_low", "final_try", "locked"]
    assert [doc["failure"] for _, doc in states] == ["incorrect", "incorrect", "locked"]
    assert states[2][1]["flags"]["locked"] is True
    code, doc = pin_doc(OPENCRYPTOKI_PIN)  # the right PIN is not even tried once locked
    assert code == 4 and doc["failure"] == "locked" and doc["state"] == "locked"
    ock_daemon.reset_token()


# --------------------------------------------------------------------------
# Policy findings


def test_policy_error_carries_typed_findings_and_the_document_lists_them() -> None:
    with pytest.raises(PolicyError) as err:
        check_csr(CsrInput(name="level2.csr", data=CSR_PEM), POLICY, "ssl")
    findings = err.value.findings
    assert findings and all(isinstance(f, Finding) for f in findings)
    assert any(not f.ok for f in findings)
    doc = error_document(err.value)
    assert list(doc) == ["error", "findings", "profile"]
    assert doc["findings"] == [{"rule": f.rule, "ok": f.ok, "message": f.message} for f in findings]
    assert "findings" not in err.value.details


def test_cert_issue_refusal_document_keeps_the_findings(ca_home: CaHome, tmp_path: Path) -> None:
    path = tmp_path / "level2.csr"
    path.write_bytes(CSR_PEM)
    result = ca_home.run("--json", "cert", "issue", path, "--account", ACCOUNT)
    assert result.code == 1
    doc = result.json()
    assert doc["error"]["kind"] == "policy" and doc["profile"] == "ssl"
    assert any(f["ok"] is False for f in doc["findings"])
    assert set(doc["findings"][0]) == {"rule", "ok", "message"}


# --------------------------------------------------------------------------
# A bug inside a formerly broad block is a bug (exit 70), not bad input


def _boom(*_args: object, **_kwargs: object) -> object:
    raise RuntimeError("a bug")


def test_a_bug_while_describing_a_csr_exits_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csr"
    path.write_bytes(CSR_PEM)
    assert invoke("csr", "show", path, "--json").code == 0
    monkeypatch.setattr(csr_mod.names, "rfc4514", _boom)  # inside describe()'s subject guard
    result = invoke("csr", "show", path, "--json")
    assert result.code == 70 and result.json()["error"]["kind"] == "internal"


def test_a_bug_while_reading_csr_facts_exits_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csr"
    path.write_bytes(CSR_PEM)
    before = invoke("csr", "check", path, "--json")
    assert before.code == 1 and before.json()["ok"] is False  # no ST/L: a policy finding, not a bug
    monkeypatch.setattr(csr_mod, "describe_public_key", _boom)  # inside the facts() guard of csr check
    assert invoke("csr", "check", path, "--json").code == 70


def test_a_bug_while_parsing_a_pfx_exits_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import twcactl.pkix.pkcs12_info as info

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_NAME).issuer_name(_NAME).public_key(_KEY.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(_KEY, hashes.SHA256()))
    path = tmp_path / "a.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"a", _KEY, cert, None, serialization.BestAvailableEncryption(b"secret1")))
    assert invoke("pfx", "show", path, "--password", "pass:secret1", "--json").code == 0
    monkeypatch.setattr(info, "_attributes", _boom)  # inside the SafeBag guard of parse_pfx
    result = invoke("pfx", "show", path, "--password", "pass:secret1", "--json")
    assert result.code == 70, result.stdout


# --------------------------------------------------------------------------
# The narrowed guards still catch everything hostile input makes the libraries raise


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 40))
def test_mutated_csrs_raise_only_the_named_facts_errors(flips: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(CSR.public_bytes(serialization.Encoding.DER))
    for pos, value in flips:
        buf[pos % len(buf)] = value
    try:
        request = load_csr(bytes(buf[: max(1, len(buf) - cut)]))
    except InputError:
        return
    csr_mod.describe(request)  # never raises: problems are listed
    try:
        csr_mod.facts(request)
    except csr_mod.FACTS_ERRORS:
        pass


_CERT = (x509.CertificateBuilder().subject_name(_NAME).issuer_name(_NAME).public_key(_KEY.public_key())
         .serial_number(7).not_valid_before(dt.datetime.now(dt.UTC))
         .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).sign(_KEY, hashes.SHA256()))
RENEWAL = build_renewal_request(CSR, _CERT, _KEY)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6), st.integers(0, 40))
def test_mutated_renewal_requests_are_refused_not_crashes(flips: list[tuple[int, int]], cut: int) -> None:
    """asn1crypto decodes lazily: damage deep in the SignedData once escaped as exit 70 (found by fuzzing)."""
    buf = bytearray(RENEWAL)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    try:
        verify_renewal_request(bytes(buf[: max(1, len(buf) - cut)]))
    except (InputError, PolicyError):
        pass
