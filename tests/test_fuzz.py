"""Issue 8: property-based fuzzing of the loaders and the policy checker, bounded by example count."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twcactl import csr as csr_mod
from twcactl.errors import InputError
from twcactl.models import AccountPolicy, RequestFacts, SubjectAttribute
from twcactl.pkix.pem import load_certificates, load_csr
from twcactl.policy.checks import check_request

_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                   x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.twca.com.tw")])
CSR_DER = (x509.CertificateSigningRequestBuilder().subject_name(_NAME)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.twca.com.tw")]), critical=False)
           .sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
_NOW = dt.datetime.now(dt.UTC)
CERT_DER = (x509.CertificateBuilder().subject_name(_NAME).issuer_name(_NAME).public_key(_KEY.public_key())
            .serial_number(7).not_valid_before(_NOW).not_valid_after(_NOW + dt.timedelta(days=1))
            .sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    return bytes(buf[: max(1, len(buf) - cut)])


@FUZZ
@given(st.binary(max_size=2048))
def test_loaders_accept_or_refuse_arbitrary_bytes(data: bytes) -> None:
    for loader in (load_csr, load_certificates):
        try:
            loader(data)
        except InputError:
            pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 40),
       st.booleans())
def test_mutated_csrs_never_crash_show_or_policy(flips: list[tuple[int, int]], cut: int, as_pem: bool) -> None:
    data = mutate(CSR_DER, flips, cut)
    if as_pem:
        import base64

        data = b"-----BEGIN NEW CERTIFICATE REQUEST-----\r\n" + base64.encodebytes(data) + \
            b"-----END NEW CERTIFICATE REQUEST-----\r\n"
    try:
        request = load_csr(data)
    except InputError:
        return
    csr_mod.describe(request)
    try:
        facts = csr_mod.facts(request)
    except Exception:
        return  # the CLI turns an undecodable extensionRequest into InputError (lifecycle.check_csr)
    check_request(facts, AccountPolicy("70759028-01", "TWCA", (), ("twca.com.tw",)), "ssl")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 40))
def test_mutated_certificates_load_or_refuse(flips: list[tuple[int, int]], cut: int) -> None:
    try:
        for cert in load_certificates(mutate(CERT_DER, flips, cut)):
            cert.subject.rfc4514_string()
    except InputError:
        pass


_text = st.text(max_size=80)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["C", "ST", "L", "O", "OU", "CN", "2.5.4.99"]), _text), max_size=8),
       st.lists(st.tuples(st.sampled_from(["dns", "ip", "email", "uri", "other"]), _text), max_size=5),
       st.sampled_from(["ssl", "wildcard", "ev", "user-sign", "user-enc"]),
       st.sampled_from(["rsa", "ec", "dsa", "ed25519", "unknown"]), st.integers(0, 16384),
       st.sampled_from([None, "sha256", "sha1", "md5", "sha512"]),
       st.sampled_from(["valid", "invalid", "not checked"]))
def test_policy_never_raises(subject: list[tuple[str, str]], sans: list[tuple[str, str]], profile: str, key_type: str,
                             bits: int, hash_name: str | None, state: str) -> None:
    facts = RequestFacts(subject=tuple(SubjectAttribute(n, n, v) for n, v in subject), sans=tuple(sans),
                         key_type=key_type, key_size=bits, signature_hash=hash_name,
                         signature_state=state)  # type: ignore[arg-type]
    result = check_request(facts, AccountPolicy("70759028-01", "TWCA", ("TWCA Inc",), ("twca.com.tw",)), profile)
    assert result.findings and all(f.rule for f in result.findings)


def _pfx_and_crl() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from twcactl.pfx import export_pfx
    from twcactl.pkix.crl import RevokedEntry, build_crl

    cert = x509.load_der_x509_certificate(CERT_DER)
    pfx = export_pfx(_KEY, cert, [], password="fuzz-password")  # type: ignore[arg-type]
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "fuzz CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(_NOW).not_valid_after(_NOW + dt.timedelta(days=1))
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    crl = build_crl(issuer_cert=ca, issuer_key=ca_key, number=1, this_update=_NOW,
                    next_update=_NOW + dt.timedelta(days=1),
                    entries=[RevokedEntry(i, _NOW, "keyCompromise") for i in range(1, 4)])
    return pfx, crl.public_bytes(serialization.Encoding.DER)


PFX_DER, CRL_DER = _pfx_and_crl()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4), st.integers(0, 40),
       st.sampled_from(["fuzz-password", "wrong-password"]))
def test_mutated_pfx_files_are_input_or_auth_errors(flips: list[tuple[int, int]], cut: int, password: str) -> None:
    from twcactl.errors import AuthError, PolicyError
    from twcactl.pfx import open_pfx
    from twcactl.pkix.pkcs12_info import parse_pfx

    data = mutate(PFX_DER, flips, cut)
    try:
        parse_pfx(data, name="f.pfx")
        open_pfx(data, password, name="f.pfx")
    except (InputError, AuthError, PolicyError):
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4), st.integers(0, 40))
def test_mutated_crls_load_or_refuse(flips: list[tuple[int, int]], cut: int) -> None:
    from twcactl.pkix.pem import load_crls

    try:
        for crl in load_crls(mutate(CRL_DER, flips, cut)):
            list(crl)
    except InputError:
        pass
