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
    _request_check_refuses_only_by_contract(data)


#: A request every ssl rule accepts (C, ST, L, O, CN and its SAN), so mutants reach the accepted path too.
FULL_CSR_DER = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
    x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"), x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
    x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Taipei"), x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"),
    x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.twca.com.tw")]))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.twca.com.tw")]), critical=False)
    .sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
_POLICY = AccountPolicy("70759028-01", "TWCA", (), ("twca.com.tw",))


def _request_check_refuses_only_by_contract(data: bytes) -> None:
    """Issue 20: the request check (lifecycle.check_csr: load, facts, policy) either accepts ``data`` or refuses
    it with the contract's errors: InputError (exit 3; an undecodable key or extensionRequest arrives as
    InputError caused by one of ``csr.FACTS_ERRORS``), PolicyError (exit 1) or UsageError (exit 2).  Any other
    exception propagates and fails the test."""
    from twcactl.authority.lifecycle import CsrInput, check_csr
    from twcactl.errors import PolicyError, UsageError

    try:
        request = load_csr(data)
    except InputError:
        request = None
    facts_error: Exception | None = None
    if request is not None:
        csr_mod.describe(request)
        try:
            csr_mod.facts(request)
        except csr_mod.FACTS_ERRORS as exc:
            facts_error = exc
    try:
        accepted = check_csr(CsrInput("fuzz.csr", data), _POLICY, "ssl")
    except InputError as exc:
        assert request is None or isinstance(exc.__cause__, csr_mod.FACTS_ERRORS), exc
        return
    except (PolicyError, UsageError) as exc:
        assert request is not None and facts_error is None, exc
        return
    assert request is not None and facts_error is None, "an undecodable request was accepted"
    assert accepted.public_bytes(serialization.Encoding.DER) == request.public_bytes(serialization.Encoding.DER)


def test_the_unmutated_requests_take_the_expected_paths() -> None:
    from twcactl.authority.lifecycle import CsrInput, check_csr
    from twcactl.errors import PolicyError

    assert check_csr(CsrInput("full.csr", FULL_CSR_DER), _POLICY, "ssl") is not None
    try:
        check_csr(CsrInput("bare.csr", CSR_DER), _POLICY, "ssl")
    except PolicyError:
        pass
    else:
        raise AssertionError("a request without ST/L/O must fail the ssl rules")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 40))
def test_mutated_full_requests_pass_or_are_refused_by_contract(flips: list[tuple[int, int]], cut: int) -> None:
    _request_check_refuses_only_by_contract(mutate(FULL_CSR_DER, flips, cut))


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


# ---------------------------------------------------------------- issue 19: hostile extensions in chain verify/build

_CHAIN_ROOT_KEY, _CHAIN_INTER_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
_EXTENSION_OIDS = [x509.ExtensionOID.EXTENDED_KEY_USAGE, x509.ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
                   x509.ExtensionOID.NAME_CONSTRAINTS, x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                   x509.ExtensionOID.KEY_USAGE, x509.ExtensionOID.BASIC_CONSTRAINTS,
                   x509.ExtensionOID.AUTHORITY_KEY_IDENTIFIER, x509.ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                   x509.ExtensionOID.CRL_DISTRIBUTION_POINTS, x509.ExtensionOID.CERTIFICATE_POLICIES,
                   x509.ExtensionOID.POLICY_CONSTRAINTS, x509.ExtensionOID.INHIBIT_ANY_POLICY,
                   x509.ExtensionOID.ISSUER_ALTERNATIVE_NAME, x509.ExtensionOID.TLS_FEATURE]
#: well-formed values to mutate, so mutants get past the outer SEQUENCE
_SEEDS = [bytes.fromhex("300a06082b06010505070301"), bytes.fromhex("3009a0073005870401020304"),
          bytes.fromhex("300d820b612e6578616d706c652e"), bytes.fromhex("03020780"), bytes.fromhex("30030101ff"),
          bytes.fromhex("3016801401020304050607080910111213141516171819ff"), b"\x30\x00", b""]


def _chain_cert(subject: str, issuer: str, public: object, signer: ec.EllipticCurvePrivateKey, *, ca: bool,
                extra: list[x509.Extension[x509.ExtensionType]]) -> x509.Certificate:
    exts = [x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(ca=ca, path_length=None)),
            x509.Extension(x509.SubjectKeyIdentifier.oid, False,
                           x509.SubjectKeyIdentifier.from_public_key(public)),  # type: ignore[arg-type]
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False,
                           x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())), *extra]
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    issuer_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)])
    # the builder's constructor: repeated OIDs pass (its add_extension refuses them)
    return x509.CertificateBuilder(issuer_name, name, public, 7, _NOW - dt.timedelta(days=1),  # type: ignore[arg-type]
                                   _NOW + dt.timedelta(days=1), exts).sign(signer, hashes.SHA256())


_CHAIN_ROOT = _chain_cert("fuzz root", "fuzz root", _CHAIN_ROOT_KEY.public_key(), _CHAIN_ROOT_KEY, ca=True, extra=[])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_EXTENSION_OIDS),
                          st.one_of(st.binary(max_size=48), st.sampled_from(_SEEDS)),
                          st.lists(st.tuples(st.integers(0, 64), st.integers(0, 255)), max_size=3),
                          st.booleans()), min_size=1, max_size=3),
       st.booleans(), st.booleans())
def test_hostile_extensions_never_crash_chain_verify_or_build(
        extensions: list[tuple[x509.ObjectIdentifier, bytes, list[tuple[int, int]], bool]], on_leaf: bool,
        server: bool) -> None:
    """Issue 19: raw extension bytes under known OIDs (malformed, repeated) on the leaf or the intermediate:
    the chain loaders, ``chain build``'s path and ``chain verify`` accept or refuse by contract (TwcaError)."""
    from twcactl.errors import PolicyError, UsageError
    from twcactl.pkix.chain import build_path, require_complete
    from twcactl.pkix.verify import verify_chain

    extra: list[x509.Extension[x509.ExtensionType]] = []
    for oid, seed, flips, critical in extensions:
        value = bytearray(seed)
        for pos, byte in flips:
            if value:
                value[pos % len(value)] = byte
        extra.append(x509.Extension(oid, critical, x509.UnrecognizedExtension(oid, bytes(value))))
    inter = _chain_cert("fuzz inter", "fuzz root", _CHAIN_INTER_KEY.public_key(), _CHAIN_ROOT_KEY, ca=True,
                        extra=[] if on_leaf else extra)
    leaf = _chain_cert("fuzz leaf", "fuzz inter", _KEY.public_key(), _CHAIN_INTER_KEY, ca=False,
                       extra=extra if on_leaf else [])
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter, _CHAIN_ROOT))
    try:
        loaded_leaf, loaded_inter, loaded_root = load_certificates(pem)
    except InputError:
        return
    try:
        require_complete(build_path(loaded_leaf, [loaded_inter, loaded_root]))
    except (InputError, PolicyError):
        pass
    try:
        verify_chain(loaded_leaf, roots=[loaded_root], untrusted=[loaded_inter],
                     purpose="server" if server else None, hostname="fuzz.example" if server else None)
    except (PolicyError, InputError, UsageError):
        pass
