"""``csr new``: key types, subject options, SANs, renewal from a certificate, templates,
the key file's protection, and refusals before any key is generated.

Every request is checked by OpenSSL (``req -verify``) and every key opened by
``openssl pkey``; assertions are on parsed objects.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import invoke, require, sh

TWCA = ("--org", "TWCA", "--ou", "SYSTEM", "--locality", "Taipei", "--state", "Taiwan", "--country", "TW")


def openssl_verifies(csr: Path) -> bool:
    """``openssl req -verify``; OpenSSL 3.0 exits 0 even on failure, so read what it says."""
    proc = sh(require("openssl"), "req", "-in", csr, "-noout", "-verify")
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert ("verify OK" in text) != ("verify failure" in text), text
    return "verify OK" in text


def load(csr: Path) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(csr.read_bytes())


def dns_sans(req: x509.CertificateSigningRequest) -> list[str]:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def subject_pairs(name: x509.Name) -> list[tuple[str, str]]:
    return [(a.oid.dotted_string, str(a.value)) for a in name]


@pytest.mark.parametrize(
    ("key_type", "kind", "size"),
    [("rsa2048", rsa.RSAPublicKey, 2048), ("rsa3072", rsa.RSAPublicKey, 3072), ("rsa4096", rsa.RSAPublicKey, 4096),
     ("ec-p256", ec.EllipticCurvePublicKey, 256), ("ec-p384", ec.EllipticCurvePublicKey, 384)],
)
def test_every_key_type_verifies_with_openssl_and_its_key_opens(tmp_path: Path, key_type: str, kind: type,
                                                                size: int) -> None:
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    result = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--key-type", key_type,
                    "--key-out", key, "--out", csr, "--key-passphrase", "env:KP", env={"KP": "pass-phrase-1"})
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["key_type"] == key_type and doc["key_encrypted"] is True and doc["csr_file"] == str(csr)
    req = load(csr)
    assert isinstance(req.public_key(), kind) and req.public_key().key_size == size
    assert isinstance(req.signature_hash_algorithm, hashes.SHA256)
    assert openssl_verifies(csr)
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    proc = sh(require("openssl"), "pkey", "-in", key, "-passin", "pass:pass-phrase-1", "-pubout")
    assert proc.returncode == 0, proc.stderr
    assert serialization.load_pem_public_key(proc.stdout) == req.public_key()
    assert sh(require("openssl"), "pkey", "-in", key, "-passin", "pass:wrong", "-noout").returncode != 0


def test_default_is_rsa2048_with_subject_in_order_and_cn_in_the_sans(tmp_path: Path) -> None:
    csr = tmp_path / "r.csr"
    result = invoke("csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--ou", "RD", "--san", "twca.com.tw",
                    "--san", "WWW.twca.com.tw", "--key-out", tmp_path / "k", "--out", csr, "--no-passphrase")
    assert result.code == 0, result.stderr
    req = load(csr)
    assert req.public_key().key_size == 2048
    assert [(a.oid, a.value) for a in req.subject] == [
        (NameOID.COUNTRY_NAME, "TW"), (NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"), (NameOID.LOCALITY_NAME, "Taipei"),
        (NameOID.ORGANIZATION_NAME, "TWCA"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "SYSTEM"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "RD"), (NameOID.COMMON_NAME, "www.twca.com.tw"),
    ]
    assert dns_sans(req) == ["www.twca.com.tw", "twca.com.tw"], "CN first, case-insensitive duplicates dropped"
    # an unencrypted key on request, still 0600
    key = serialization.load_pem_private_key((tmp_path / "k").read_bytes(), None)
    assert key.public_key() == req.public_key()
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_csr_on_stdout_or_inside_the_json_document(tmp_path: Path) -> None:
    human = invoke("csr", "new", "--cn", "a.twca.com.tw", *TWCA, "--key-type", "ec-p256",
                   "--key-out", tmp_path / "k1", "--no-passphrase")
    assert human.code == 0, human.stderr
    req = x509.load_pem_x509_csr(human.stdout.encode())
    assert req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a.twca.com.tw"
    doc = invoke("--json", "csr", "new", "--cn", "b.twca.com.tw", *TWCA, "--key-type", "ec-p256",
                 "--key-out", tmp_path / "k2", "--no-passphrase").json()
    assert doc["csr_file"] is None
    assert x509.load_pem_x509_csr(doc["csr"].encode()).is_signature_valid
    assert doc["sans"] == ["b.twca.com.tw"] and doc["warnings"] == []


def test_personal_profile_reads_san_as_email(tmp_path: Path) -> None:
    csr = tmp_path / "r.csr"
    result = invoke("--json", "csr", "new", "--profile", "user-sign", "--cn", "A123456789-63-YIRU", "--org", "TWCA",
                    "--ou", "RD", "--country", "TW", "--san", "yiru@twca.com.tw", "--key-out", tmp_path / "k",
                    "--out", csr, "--no-passphrase", "--key-type", "ec-p256")
    assert result.code == 0, result.stderr
    san = load(csr).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["yiru@twca.com.tw"]
    assert san.get_values_for_type(x509.DNSName) == []
    assert result.json()["warnings"] == []


def test_account_independent_rules_are_warnings_not_refusals(tmp_path: Path) -> None:
    result = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "TWCA", "--country", "TW",
                    "--key-type", "ec-p256", "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 0
    assert [w["rule"] for w in result.json()["warnings"]] == ["subject.required"]
    assert "warning: subject.required: missing ST, L" in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        # non-English text breaks the profile's rule subject.printable: exit 1 unless --force (issue 17)
        (("--cn", "www.twca.com.tw", "--org", "台灣網路認證"), 1),
        (("--cn", "www.台灣.tw"), 1),
        # a control character, padding, a SAN or C that cannot be encoded: usage errors
        (("--cn", "www.twca.com.tw", "--ou", "SYS\x1b[31mTEM"), 2),
        (("--cn", "www.twca.com.tw", "--locality", " Taipei"), 2),
        (("--cn", "www.twca.com.tw", "--san", "ｗｗｗ.twca.com.tw"), 2),
        (("--cn", "www.twca.com.tw", "--country", "TWN"), 2),
        (("--org", "TWCA"), 2),  # no CN at all
    ],
)
def test_bad_values_are_refused_before_any_key_is_generated(tmp_path: Path, args: tuple[str, ...], code: int) -> None:
    key = tmp_path / "k"
    result = invoke("csr", "new", *args, "--key-out", key, "--no-passphrase")
    assert result.code == code, result.stderr
    assert not key.exists()
    assert "Generating" not in result.stderr
    assert "\x1b" not in result.stderr


def test_never_over_an_existing_file_without_force(tmp_path: Path) -> None:
    key, csr = tmp_path / "k", tmp_path / "r.csr"
    key.write_bytes(b"precious")
    result = invoke("csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--key-out", key, "--no-passphrase",
                    "--key-type", "ec-p256")
    assert result.code == 5 and key.read_bytes() == b"precious"
    csr.write_bytes(b"old csr")
    result = invoke("csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--key-out", tmp_path / "k2", "--out", csr,
                    "--no-passphrase", "--key-type", "ec-p256")
    assert result.code == 5 and csr.read_bytes() == b"old csr" and not (tmp_path / "k2").exists()
    result = invoke("csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--key-out", key, "--out", csr,
                    "--no-passphrase", "--key-type", "ec-p256", "--force")
    assert result.code == 0, result.stderr
    key_obj = serialization.load_pem_private_key(key.read_bytes(), None)
    assert key_obj.public_key() == load(csr).public_key()
    assert key.stat().st_mode & 0o777 == 0o600


def test_missing_passphrase_without_a_terminal_is_exit_4_and_writes_nothing(tmp_path: Path) -> None:
    result = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", *TWCA, "--key-out", tmp_path / "k")
    assert result.code == 4
    assert "--key-passphrase" in result.json()["error"]["hint"]
    assert not (tmp_path / "k").exists()
    both = invoke("csr", "new", "--cn", "www.twca.com.tw", "--key-out", tmp_path / "k", "--no-passphrase",
                  "--key-passphrase", "pass:xxxxxxxx")
    assert both.code == 2


# ---------------------------------------------------------------- renewal from a certificate


def _self_signed(tmp_path: Path, subj: str, sans: str) -> Path:
    """A certificate made by OpenSSL, as a site would hold it before renewal."""
    cert = tmp_path / "old.cer"
    proc = sh(require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", tmp_path / "old.key", "-subj", subj, "-addext", f"subjectAltName={sans}",
              "-addext", "extendedKeyUsage=serverAuth", "-days", "30", "-out", cert)
    assert proc.returncode == 0, proc.stderr
    return cert


def test_from_cert_keeps_subject_order_and_sans_with_a_new_key(tmp_path: Path) -> None:
    cert_file = _self_signed(tmp_path, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/OU=WEB/CN=www.twca.com.tw",
                             "DNS:www.twca.com.tw,DNS:shop.twca.com.tw")
    old = x509.load_pem_x509_certificate(cert_file.read_bytes())
    csr = tmp_path / "renew.csr"
    result = invoke("--json", "csr", "new", "--from-cert", cert_file, "--key-out", tmp_path / "new.key",
                    "--out", csr, "--no-passphrase", "--key-type", "ec-p256")
    assert result.code == 0, result.stderr
    req = load(csr)
    assert subject_pairs(req.subject) == subject_pairs(old.subject)
    assert dns_sans(req) == ["www.twca.com.tw", "shop.twca.com.tw"]
    assert req.public_key() != old.public_key()
    assert openssl_verifies(csr)
    doc = result.json()
    assert doc["profile"] == "ssl"
    assert doc["from_cert"] == {"file": str(cert_file), "serial": format(old.serial_number, "x"),
                                "subject": old.subject.rfc4514_string()}


def test_from_cert_options_override_in_place(tmp_path: Path) -> None:
    cert_file = _self_signed(tmp_path, "/C=TW/ST=Taiwan/L=Taipei/O=Old Name/OU=A/OU=B/CN=www.twca.com.tw",
                             "DNS:www.twca.com.tw,DNS:old.twca.com.tw")
    csr = tmp_path / "renew.csr"
    result = invoke("csr", "new", "--from-cert", cert_file, "--org", "TWCA", "--ou", "NEW", "--san", "api.twca.com.tw",
                    "--key-out", tmp_path / "k", "--out", csr, "--no-passphrase", "--key-type", "ec-p256")
    assert result.code == 0, result.stderr
    req = load(csr)
    assert [(a.oid, a.value) for a in req.subject] == [
        (NameOID.COUNTRY_NAME, "TW"), (NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"), (NameOID.LOCALITY_NAME, "Taipei"),
        (NameOID.ORGANIZATION_NAME, "TWCA"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "NEW"),
        (NameOID.COMMON_NAME, "www.twca.com.tw"),
    ]
    assert dns_sans(req) == ["www.twca.com.tw", "api.twca.com.tw"], "--san replaces the old SANs; the CN stays"


def test_from_cert_refuses_a_non_english_subject_before_keygen(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "台灣網路認證"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "www.twca.com.tw")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_file = tmp_path / "old.cer"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = invoke("csr", "new", "--from-cert", cert_file, "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 1 and not (tmp_path / "k").exists()
    doc = invoke("--json", "csr", "new", "--from-cert", cert_file, "--key-out", tmp_path / "k", "--no-passphrase")
    assert doc.code == 1 and [f["rule"] for f in doc.json()["findings"] if not f["ok"]] == ["subject.printable"]
    assert not (tmp_path / "k").exists()
    # ...but the override fixes it
    fixed = invoke("csr", "new", "--from-cert", cert_file, "--org", "TWCA", "--key-out", tmp_path / "k",
                   "--no-passphrase", "--key-type", "ec-p256")
    assert fixed.code == 0, fixed.stderr


def test_from_cert_that_is_not_a_certificate_is_exit_3(tmp_path: Path) -> None:
    bogus = tmp_path / "x.cer"
    bogus.write_text("hello\n")
    result = invoke("--json", "csr", "new", "--from-cert", bogus, "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 3 and result.json()["error"]["kind"] == "input"
    assert invoke("csr", "new", "--from-cert", tmp_path / "none.cer", "--key-out", tmp_path / "k",
                  "--no-passphrase").code == 3
    assert not (tmp_path / "k").exists()


# ---------------------------------------------------------------- templates


def test_template_gives_every_field_and_options_override(tmp_path: Path) -> None:
    template = tmp_path / "www.toml"
    template.write_text('cn = "www.twca.com.tw"\norg = "TWCA"\nou = ["SYSTEM", "WEB"]\nlocality = "Taipei"\n'
                        'state = "Taiwan"\ncountry = "TW"\nsan = ["twca.com.tw"]\nkey_type = "ec-p384"\n'
                        'profile = "ssl"\n', encoding="utf-8")
    csr = tmp_path / "r.csr"
    result = invoke("--json", "csr", "new", "--template", template, "--locality", "Kaohsiung",
                    "--key-out", tmp_path / "k", "--out", csr, "--no-passphrase")
    assert result.code == 0, result.stderr
    req = load(csr)
    assert isinstance(req.public_key(), ec.EllipticCurvePublicKey) and req.public_key().key_size == 384
    assert [a.value for a in req.subject] == ["TW", "Taiwan", "Kaohsiung", "TWCA", "SYSTEM", "WEB", "www.twca.com.tw"]
    assert dns_sans(req) == ["www.twca.com.tw", "twca.com.tw"]
    assert result.json()["key_type"] == "ec-p384"
    assert openssl_verifies(csr)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('cn = "www.twca.com.tw"\ncommon_name = "x"\n', "unknown key"),
        ('cn = "www.twca.com.tw"\nou = "SYSTEM"\n', "ou must be a list of strings"),
        ('cn = 42\n', "cn must be a string"),
        ('cn = "www.twca.com.tw"\nkey_type = "rsa1024"\n', "key_type must be one of"),
        ('cn = "www.twca.com.tw"\nprofile = "server"\n', "profile must be one of"),
        ('cn = "www.twca.com.tw\n', "not a TOML file"),
    ],
)
def test_template_is_parsed_strictly(tmp_path: Path, text: str, fragment: str) -> None:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    result = invoke("--json", "csr", "new", "--template", template, "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 3, result.stdout
    assert fragment in result.json()["error"]["message"]
    assert not (tmp_path / "k").exists()


def test_template_with_non_english_value_is_refused_before_keygen(tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('cn = "www.twca.com.tw"\norg = "臺灣"\n', encoding="utf-8")
    result = invoke("csr", "new", "--template", template, "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 1 and not (tmp_path / "k").exists()


# ---------------------------------------------------------------- the core values behind the options


def test_override_replaces_in_place_and_inserts_in_canonical_order() -> None:
    from twcactl.csr import RequestSpec

    spec = RequestSpec(subject=(("C", "TW"), ("O", "Old"), ("OU", "A"), ("OU", "B"), ("CN", "x.twca.com.tw"),
                                ("2.5.4.5", "70759028")))
    spec = spec.override(subject={"O": ["TWCA"], "OU": ["NEW"], "ST": ["Taiwan"], "L": [], "CN": []})
    assert spec.subject == (("C", "TW"), ("ST", "Taiwan"), ("O", "TWCA"), ("OU", "NEW"), ("CN", "x.twca.com.tw"),
                            ("2.5.4.5", "70759028"))
    assert spec.override(sans=["a.twca.com.tw"]).dns_names == ("a.twca.com.tw",)
    assert spec.override(sans=["a@twca.com.tw"], profile="user-sign").emails == ("a@twca.com.tw",)
    assert spec.override(sans=[]).dns_names == spec.dns_names, "no --san keeps what the certificate had"


def test_renewal_of_a_personal_certificate_keeps_its_email_and_profile(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TWCA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "A123456789-63-YIRU")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x5F1C).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("yiru@twca.com.tw")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file = tmp_path / "user.cer"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    csr = tmp_path / "r.csr"
    result = invoke("--json", "csr", "new", "--from-cert", cert_file, "--key-out", tmp_path / "k", "--out", csr,
                    "--no-passphrase", "--key-type", "ec-p256")
    assert result.code == 0, result.stderr
    assert result.json()["profile"] == "user-sign" and result.json()["warnings"] == []
    san = load(csr).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.RFC822Name("yiru@twca.com.tw")]
