"""``csr show``: every field decoded, signature states agreeing with OpenSSL,
Microsoft IIS attributes, requested extensions, and no traceback on any input.

The sweep runs over every CSR of the cryptography_vectors package; OpenSSL's
``req -verify`` is the oracle for the signature state.
"""

from __future__ import annotations

from pathlib import Path

import cryptography_vectors
import pytest
from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import invoke, require, sh

VECTORS = Path(cryptography_vectors.__file__).parent / "x509" / "requests"
VECTOR_FILES = sorted(p for p in VECTORS.iterdir() if p.is_file())
WEAK = {"sha1", "md5", "md4", "md2"}


def openssl_verifies(csr: Path) -> bool:
    """``openssl req -verify`` (DER or PEM); OpenSSL 3.0 exits 0 even on failure, so read what it says."""
    form = "DER" if csr.read_bytes()[:1] == b"\x30" else "PEM"
    proc = sh(require("openssl"), "req", "-in", csr, "-inform", form, "-noout", "-verify")
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert ("verify OK" in text) != ("verify failure" in text), text
    return "verify OK" in text


def test_the_vector_directory_is_there() -> None:
    assert len(VECTOR_FILES) >= 20


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.name)
def test_every_vector_is_shown_without_traceback_and_agrees_with_openssl(path: Path) -> None:
    result = invoke("--json", "csr", "show", path)
    assert "Traceback" not in result.stderr + result.stdout
    doc = result.json()
    if result.code == 3:
        assert doc["error"]["kind"] == "input"
        assert "\n" not in doc["error"]["message"]
        return
    assert result.code == 0, result.stdout
    verified = openssl_verifies(path)
    state = doc["signature"]
    if state == "valid":
        assert verified
    elif state == "invalid":
        assert not verified
    else:
        assert state == "not checked"
        assert doc["signature_hash"] in WEAK and verified, "not checked only for weak hashes OpenSSL still verifies"
    assert doc["signature_reason"]
    for problem in doc["problems"]:
        assert problem["field"] and problem["reason"]
    human = invoke("csr", "show", path)
    assert human.code == 0 and "Traceback" not in human.stderr
    assert f"signature  {doc['signature_algorithm']}: {state}" in human.stdout


def test_vector_sweep_covers_all_three_states() -> None:
    states = {invoke("--json", "csr", "show", p).json().get("signature") for p in VECTOR_FILES}
    assert {"valid", "invalid", "not checked"} <= states


@pytest.mark.parametrize(
    ("name", "state", "hash_name"),
    [("rsa_sha1.pem", "not checked", "sha1"),  # OpenSSL verifies it, cryptography's X.509 layer refuses SHA-1
     ("basic_constraints.pem", "invalid", "sha1"),  # SHA-1 and a bad signature: invalid, not "not checked"
     ("rsa_md4.pem", "invalid", "md4"),  # nobody verifies MD4 any more; the hash is still named
     ("dsa_sha1.pem", "not checked", "sha1"),
     ("ec_sha256.pem", "valid", "sha256"),
     ("invalid_signature.pem", "invalid", "sha256")],
)
def test_signature_states_of_known_vectors(name: str, state: str, hash_name: str) -> None:
    doc = invoke("--json", "csr", "show", VECTORS / name).json()
    assert (doc["signature"], doc["signature_hash"]) == (state, hash_name)


def test_extensions_cryptography_refuses_are_still_listed() -> None:
    doc = invoke("--json", "csr", "show", VECTORS / "two_basic_constraints.pem").json()
    assert [p["field"] for p in doc["problems"]] == ["extensions"]
    assert "Duplicate" in doc["problems"][0]["reason"]
    assert [(e["oid"], e["critical"], e["value"]) for e in doc["extensions"]] == [("2.5.29.19", True, "CA:FALSE")] * 2
    human = invoke("csr", "show", VECTORS / "two_basic_constraints.pem")
    assert human.stdout.count("basicConstraints (critical): CA:FALSE") == 2
    assert "cannot decode extensions: Duplicate" in human.stdout
    # a multi-valued attribute elsewhere: the extensions, SANs included, are read without cryptography
    doc = invoke("--json", "csr", "show", VECTORS / "freeipa-bad-critical.pem").json()
    assert doc["sans"] == ["replica1.ipa.test", "other:1.3.6.1.4.1.311.20.2.3", "other:1.3.6.1.5.2.2"]
    values = {e["oid"]: e["value"] for e in doc["extensions"]}
    assert values["2.5.29.19"] == "CA:FALSE" and values["1.3.6.1.4.1.311.20.2"] is None
    assert len(values["2.5.29.14"]) == 40


def test_multi_valued_challenge_password_is_a_problem_not_a_crash() -> None:
    doc = invoke("--json", "csr", "show", VECTORS / "challenge-multi-valued.der").json()
    attr = doc["attributes"][0]
    assert attr["name"] == "challengePassword" and "2 values" in attr["error"]
    assert {"field": "attribute challengePassword", "reason": attr["error"]} in doc["problems"]


def test_challenge_password_is_never_shown() -> None:
    result = invoke("--json", "csr", "show", VECTORS / "challenge.pem")
    attr = result.json()["attributes"][0]
    assert attr == {"oid": "1.2.840.113549.1.9.7", "name": "challengePassword", "value": "(present, not shown)"}


# ---------------------------------------------------------------- IIS requests


class _Values(core.SetOf):
    _child_spec = core.Any


class _Attribute(core.Sequence):
    # asn1crypto's CRIAttribute forces a DirectoryString on the OS version; IIS writes an IA5String.
    _fields = [("type", core.ObjectIdentifier), ("values", _Values)]


class _Attributes(core.SetOf):
    _child_spec = _Attribute


class _RequestInfo(core.Sequence):
    _fields = [("version", core.Integer), ("subject", core.Any), ("subject_pk_info", core.Any),
               ("attributes", _Attributes, {"implicit": 0, "optional": True})]


def _attribute(oid: str, *values: core.Asn1Value) -> _Attribute:
    return _Attribute({"type": oid, "values": [core.Any.load(v.dump()) for v in values]})


def resign(der: bytes, key: rsa.RSAPrivateKey, extra: list[_Attribute]) -> bytes:
    """``der`` with ``extra`` attributes in front of its own, signed again with ``key`` (SHA-256)."""
    base = asn1_csr.CertificationRequest.load(der)
    info = base["certification_request_info"]
    own = [_Attribute.load(a.dump()) for a in info["attributes"]]
    new_info = _RequestInfo({"version": 0, "subject": core.Any.load(info["subject"].dump()),
                             "subject_pk_info": core.Any.load(info["subject_pk_info"].dump()),
                             "attributes": extra + own})
    tbs = new_info.dump()
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    # Loaded from DER, the info keeps its encoding byte for byte when dumped again.
    return asn1_csr.CertificationRequest({
        "certification_request_info": asn1_csr.CertificationRequestInfo.load(tbs),
        "signature_algorithm": base["signature_algorithm"], "signature": signature}).dump()


def iis_request(key: rsa.RSAPrivateKey, *, os_version: core.Asn1Value | None = None, csp: bool = True) -> bytes:
    """A request as IIS Manager writes it: subject, KU/EKU/SKI extensions, and the
    Microsoft attributes (OS version, client info, enrollment CSP), signed with ``key``.

    cryptography cannot add SEQUENCE-valued attributes, so the request is made
    with cryptography, given the Microsoft attributes with asn1crypto, and signed again.
    """
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "www.twca.com.tw"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "SYSTEM"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TWCA"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Taipei"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        ]))
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    extra = [
        _attribute("1.3.6.1.4.1.311.13.2.3", os_version if os_version is not None else core.IA5String("10.0.17763.2")),
        _attribute("1.3.6.1.4.1.311.21.20", asn1_csr.MicrosoftRequestClientInfo({
            "clientid": 5, "machinename": "WEB01.twca.local", "username": "TWCA\\iisadmin",
            "processname": "InetMgr.exe"})),
    ]
    if csp:
        extra.append(_attribute("1.3.6.1.4.1.311.13.2.2", asn1_csr.MicrosoftEnrollmentCSProvider({
            "keyspec": 1, "cspname": "Microsoft RSA SChannel Cryptographic Provider", "signature": ()})))
    return resign(der, key, extra)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(der: bytes, label: str = "NEW CERTIFICATE REQUEST") -> bytes:
    import base64
    import textwrap

    body = "\r\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\r\n{body}\r\n-----END {label}-----\r\n".encode()


def test_iis_request_attributes_and_extensions_are_decoded(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "iis.txt"
    path.write_bytes(_pem(iis_request(rsa_key)))  # the IIS header with CRLF line ends
    assert openssl_verifies(path), "the fixture itself is a well-formed, correctly signed request"
    result = invoke("--json", "csr", "show", path)
    assert result.code == 0, result.stdout
    doc = result.json()
    assert doc["signature"] == "valid" and doc["problems"] == []
    by_name = {a["name"]: a for a in doc["attributes"]}
    assert by_name["Microsoft OS version"] == {"oid": "1.3.6.1.4.1.311.13.2.3", "name": "Microsoft OS version",
                                               "value": "10.0.17763.2"}
    assert by_name["Microsoft enrollment CSP"]["value"] == {
        "key_spec": 1, "key_spec_name": "AT_KEYEXCHANGE",
        "csp_name": "Microsoft RSA SChannel Cryptographic Provider", "signature": ""}
    assert by_name["Microsoft request client info"]["value"] == {
        "client_id": 5, "machine_name": "WEB01.twca.local", "user_name": "TWCA\\iisadmin",
        "process_name": "InetMgr.exe"}
    exts = {e["name"]: e for e in doc["extensions"]}
    assert exts["keyUsage"]["critical"] is True
    assert exts["keyUsage"]["value"] == ["digitalSignature", "keyEncipherment", "dataEncipherment"]
    assert exts["extendedKeyUsage"]["value"] == ["serverAuth"]
    ski = x509.SubjectKeyIdentifier.from_public_key(rsa_key.public_key()).digest.hex()
    assert exts["subjectKeyIdentifier"]["value"] == ski
    assert [a["name"] for a in doc["subject"]] == ["CN", "OU", "O", "L", "ST", "C"], "encoded order, as IIS writes it"

    human = invoke("csr", "show", path).stdout
    assert "Microsoft OS version: 10.0.17763.2" in human
    assert "csp_name=Microsoft RSA SChannel Cryptographic Provider" in human
    assert "keyUsage (critical): digitalSignature, keyEncipherment, dataEncipherment" in human


def test_malformed_microsoft_attribute_is_shown_with_its_reason(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    # a UTF8String OS version (MS-WCCE says IA5String) and a CSP that is an INTEGER, not a SEQUENCE
    der = iis_request(rsa_key, os_version=core.UTF8String("6.3.9600.2"), csp=False)
    der = resign(der, rsa_key, [_attribute("1.3.6.1.4.1.311.13.2.2", core.Integer(1))])
    path = tmp_path / "bad-ms.der"
    path.write_bytes(der)
    assert openssl_verifies(path)
    result = invoke("--json", "csr", "show", path)
    assert result.code == 0, result.stdout
    doc = result.json()
    by_oid = {a["oid"]: a for a in doc["attributes"]}
    assert "value" not in by_oid["1.3.6.1.4.1.311.13.2.3"]
    assert "not an IA5String" in by_oid["1.3.6.1.4.1.311.13.2.3"]["error"]
    assert "error" in by_oid["1.3.6.1.4.1.311.13.2.2"]
    assert by_oid["1.3.6.1.4.1.311.21.20"]["value"]["process_name"] == "InetMgr.exe", "the others still decode"
    assert {p["field"] for p in doc["problems"]} == {"attribute Microsoft OS version",
                                                     "attribute Microsoft enrollment CSP"}
    assert doc["signature"] == "valid"
    human = invoke("csr", "show", path)
    assert human.code == 0 and "Microsoft OS version: cannot decode: " in human.stdout


# ---------------------------------------------------------------- real tools' requests


def test_requests_of_openssl_keytool_and_certtool(openssl_request: Path, keytool_request: Path,
                                                  certtool_request: Path) -> None:
    for path in (openssl_request, keytool_request, certtool_request):
        doc = invoke("--json", "csr", "show", path).json()
        assert doc["signature"] == "valid" and doc["key"]["size"] == 2048
        assert doc["cn"] == "www.twca.com.tw"
        assert {a["name"] for a in doc["subject"]} == {"C", "ST", "L", "O", "OU", "CN"}
    assert invoke("--json", "csr", "show", certtool_request).json()["sans"] == ["www.twca.com.tw"]


def test_openssl_extensions_are_decoded(tmp_path: Path) -> None:
    csr = tmp_path / "ext.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", tmp_path / "k", "-subj", "/C=TW/CN=www.twca.com.tw", "-out", csr,
              "-addext", "basicConstraints=critical,CA:FALSE",
              "-addext", "keyUsage=critical,digitalSignature",
              "-addext", "extendedKeyUsage=serverAuth,clientAuth",
              "-addext", "subjectAltName=DNS:www.twca.com.tw,IP:192.0.2.1,email:ops@twca.com.tw",
              "-addext", "1.2.3.4=ASN1:UTF8String:hello")
    assert proc.returncode == 0, proc.stderr
    doc = invoke("--json", "csr", "show", csr).json()
    values = {e["name"]: (e["critical"], e["value"]) for e in doc["extensions"]}
    assert values["basicConstraints"] == (True, "CA:FALSE")
    assert values["keyUsage"] == (True, ["digitalSignature"])
    assert values["extendedKeyUsage"] == (False, ["serverAuth", "clientAuth"])
    assert values["subjectAltName"] == (False, ["www.twca.com.tw", "ip:192.0.2.1", "email:ops@twca.com.tw"])
    assert values["1.2.3.4"] == (False, "hex:0c0568656c6c6f")
    assert doc["key"] == {"type": "ec", "size": 256, "label": "EC P-256"}


def test_sha1_request_not_checked_and_tampered_one_invalid(tmp_path: Path) -> None:
    csr = tmp_path / "sha1.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha1", "-keyout", tmp_path / "k",
              "-subj", "/C=TW/O=TWCA/CN=www.twca.com.tw", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    assert openssl_verifies(csr)
    assert invoke("--json", "csr", "show", csr).json()["signature"] == "not checked"
    # flip one bit of the signature's last octet: OpenSSL fails, and so do we
    der = bytearray(x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    bad = tmp_path / "sha1-bad.der"
    bad.write_bytes(bytes(der))
    assert not openssl_verifies(bad)
    doc = invoke("--json", "csr", "show", bad).json()
    assert doc["signature"] == "invalid" and "does not verify" in doc["signature_reason"]


def test_ecdsa_sha1_request_is_not_checked(tmp_path: Path) -> None:
    csr = tmp_path / "ec-sha1.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-sha1", "-keyout", tmp_path / "k", "-subj", "/C=TW/CN=www.twca.com.tw", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    assert openssl_verifies(csr)
    doc = invoke("--json", "csr", "show", csr).json()
    assert (doc["signature"], doc["signature_hash"], doc["signature_algorithm"]) == (
        "not checked", "sha1", "ecdsa-with-SHA1")
    assert "weak hash" in doc["signature_reason"]


def test_hostile_subject_is_escaped_in_human_output(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    req = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "[bold]TWCA[/x]\x1b[2J"),
        x509.NameAttribute(NameOID.COMMON_NAME, "www.twca.com.tw\u202egpj.exe")]))
        .sign(key, hashes.SHA256()))
    path = tmp_path / "evil.csr"
    path.write_bytes(req.public_bytes(serialization.Encoding.PEM))
    result = invoke("csr", "show", path)
    assert result.code == 0
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "[bold]TWCA[/x]\\x1b[2J" in result.stdout, "markup printed as written, the escape escaped"
    assert "\\u202e" in result.stdout


@pytest.mark.parametrize("content", [b"hello\n", b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n",
                                     b"\x30\x03\x02\x01\x00", b""])
def test_garbage_is_a_clean_exit_3(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.csr"
    path.write_bytes(content)
    result = invoke("--json", "csr", "show", path)
    assert result.code == 3 and result.json()["error"]["kind"] == "input"
    human = invoke("csr", "show", path)
    assert human.code == 3 and human.stderr.startswith("error: ") and "Traceback" not in human.stderr
