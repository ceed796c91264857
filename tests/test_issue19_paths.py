"""Issue 19: path validation never crashes on hostile certificates.

Malformed and repeated extensions, an underscore in a DNS name, a
pathological set of same-subject same-key intermediates, RFC 5280 CRL rules
(CRL Number present and non-critical, entry extensions), whole-second
times and zero or negative serials.  Every hostile certificate is built
here with cryptography (its builder's constructor takes extension lists
and serials its setters refuse; ``UnrecognizedExtension`` carries the raw
bytes of a known OID).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from tests.conftest import Result, invoke
from twcactl.pkix.chain import build_path

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
U = x509.UnrecognizedExtension
EKU_SERVER = bytes.fromhex("300a06082b06010505070301")


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(subject: str, issuer: str, public: Any, signer: Any, *, ca: bool,
              extra: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
              serial: int | None = None, issuer_public: Any = None, not_after: dt.datetime | None = None,
              extensions: list[x509.Extension[x509.ExtensionType]] | None = None) -> x509.Certificate:
    """A certificate through the builder's constructor: repeated extensions and zero serials pass."""
    exts = extensions if extensions is not None else [
        x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(ca=ca, path_length=None)),
        x509.Extension(x509.SubjectKeyIdentifier.oid, False, x509.SubjectKeyIdentifier.from_public_key(public)),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False,
                       x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public or signer.public_key())),
    ]
    if ca and extensions is None:
        exts.append(x509.Extension(x509.KeyUsage.oid, True, x509.KeyUsage(
            False, False, False, False, False, True, True, False, False)))
    exts += [x509.Extension(e.oid, critical, e) for e, critical in extra]
    builder = x509.CertificateBuilder(name(issuer), name(subject), public,
                                      x509.random_serial_number() if serial is None else serial,
                                      NOW - dt.timedelta(days=1), not_after or NOW + dt.timedelta(days=30), exts)
    with warnings.catch_warnings():  # a zero serial: cryptography warns when it loads what it signed
        warnings.simplefilter("ignore")
        return builder.sign(signer, hashes.SHA256())


def resign_with_serial(cert: x509.Certificate, serial: int, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """``cert`` with a serial cryptography's signer refuses (negative), re-signed: DER surgery with asn1crypto."""
    from asn1crypto import x509 as asn1_x509

    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"].copy()
    tbs["serial_number"] = serial
    signature = key.sign(tbs.dump(), ec.ECDSA(hashes.SHA256()))
    der = asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
                                 "signature_value": signature}).dump()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(der)


def write(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass
class Pki:
    dir: Path
    root_key: ec.EllipticCurvePrivateKey
    inter_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: Path
    inter: Path

    def leaf(self, filename: str, extra: list[tuple[x509.ExtensionType, bool]], *, serial: int | None = None,
             **kw: Any) -> Path:
        cert = make_cert("leaf", "inter", self.leaf_key.public_key(), self.inter_key, ca=False, extra=extra,
                         serial=None if serial is not None and serial < 0 else serial, **kw)
        if serial is not None and serial < 0:
            cert = resign_with_serial(cert, serial, self.inter_key)
        return write(self.dir / filename, cert)

    def intermediate(self, filename: str, extra: list[tuple[x509.ExtensionType, bool]]) -> Path:
        cert = make_cert("inter", "root", self.inter_key.public_key(), self.root_key, ca=True, extra=extra)
        return write(self.dir / filename, cert)

    def verify(self, leaf: Path, *extra: str | Path, inter: Path | None = None) -> Result:
        return invoke("--json", "--home", self.dir / "no-home", "chain", "verify", leaf, "--root", self.root,
                      "--untrusted", inter or self.inter, *extra)

    def build(self, leaf: Path, *, inter: Path | None = None, more: tuple[Path, ...] = ()) -> Result:
        args: list[str | Path] = ["--json", "--home", self.dir / "no-home", "chain", "build", leaf,
                                  "--certs", inter or self.inter, "--certs", self.root]
        for extra in more:
            args += ["--certs", extra]
        return invoke(*args, "--fullchain", self.dir / "full.pem", "--force")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("issue19")
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make_cert("root", "root", root_key.public_key(), root_key, ca=True)
    inter = make_cert("inter", "root", inter_key.public_key(), root_key, ca=True)
    return Pki(base, root_key, inter_key, leaf_key, write(base / "root.pem", root), write(base / "inter.pem", inter))


def refusal(result: Result) -> dict[str, Any]:
    assert result.code == 1, (result.code, result.stdout, result.stderr)
    doc = result.json()
    assert doc["error"]["kind"] == "policy"
    return doc


#: (label, extension, critical): each makes cryptography's ``.extensions`` raise
HOSTILE: list[tuple[str, x509.ExtensionType, bool, str]] = [
    ("empty EKU", U(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00"), False, "2.5.29.37"),
    ("malformed AIA", U(ExtensionOID.AUTHORITY_INFORMATION_ACCESS, b"\x30\x03\x01\x02\x03"), False,
     "1.3.6.1.5.5.7.1.1"),
    ("IPv4 of 3 bytes in name constraints", U(ExtensionOID.NAME_CONSTRAINTS, bytes.fromhex("3009a0073005870301020304")),
     True, "2.5.29.30"),
    ("IPv4 with a bad netmask", U(ExtensionOID.NAME_CONSTRAINTS, bytes.fromhex("300ea00c300a87080a0000000aff00ff")),
     True, "2.5.29.30"),
    ("IPv6 of 15 bytes in name constraints", U(ExtensionOID.NAME_CONSTRAINTS,
                                               bytes.fromhex("3015a0133011870f" + "00" * 15)), True, "2.5.29.30"),
]


@pytest.mark.parametrize(("label", "ext", "critical", "oid"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_malformed_leaf_extension_is_a_finding(pki: Pki, label: str, ext: x509.ExtensionType, critical: bool,
                                               oid: str) -> None:
    leaf = pki.leaf(f"leaf-{oid}-{critical}.pem", [(ext, critical)])
    doc = refusal(pki.verify(leaf))
    assert doc["failure"]["reason"] == "malformed-extension"
    assert doc["findings"][0]["rule"] == "malformed-extension" and doc["findings"][0]["ok"] is False
    assert doc["findings"][0]["message"].startswith("certificate 0:")
    assert doc["extension"] == {"oid": oid, "repeated": False}
    # a server check with a host name reads the same extensions
    assert refusal(pki.verify(leaf, "--purpose", "server", "--hostname", "a.example"))["failure"]["reason"] == \
        "malformed-extension"
    built = pki.build(leaf)
    assert built.code == 3, built.stderr
    assert built.json()["findings"][0]["rule"] == "malformed-extension"


@pytest.mark.parametrize(("label", "ext", "critical", "oid"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_malformed_intermediate_is_a_finding(pki: Pki, label: str, ext: x509.ExtensionType, critical: bool,
                                             oid: str) -> None:
    leaf = pki.leaf("plain-leaf.pem", [])
    bad = pki.intermediate(f"inter-{oid}-{critical}.pem", [(ext, critical)])
    doc = refusal(pki.verify(leaf, inter=bad))
    assert doc["failure"]["reason"] == "malformed-extension"
    assert [f["rule"] for f in doc["findings"]] == ["malformed-extension"]
    built = pki.build(leaf, inter=bad)
    assert built.code == 3 and built.json()["findings"][0]["rule"] == "malformed-extension"
    # with a good copy of the intermediate beside it, the path is built and verified
    assert pki.build(leaf, inter=bad, more=(pki.inter,)).code == 0
    assert invoke("--home", pki.dir / "no-home", "chain", "verify", leaf, "--root", pki.root, "--untrusted", bad,
                  "--untrusted", pki.inter).code == 0


def test_repeated_extension_is_a_finding(pki: Pki) -> None:
    twice: list[tuple[x509.ExtensionType, bool]] = [(U(ExtensionOID.EXTENDED_KEY_USAGE, EKU_SERVER), False)] * 2
    leaf = pki.leaf("dup.pem", twice)
    doc = refusal(pki.verify(leaf))
    assert doc["failure"]["reason"] == "malformed-extension"
    assert doc["extension"] == {"oid": "2.5.29.37", "repeated": True}
    built = pki.build(leaf)
    assert built.code == 3 and built.json()["extension"]["repeated"] is True
    dup_inter = pki.intermediate("dup-inter.pem", [(U(ExtensionOID.SUBJECT_KEY_IDENTIFIER, b"\x04\x01\x01"), False)])
    assert refusal(pki.verify(pki.leaf("plain-leaf.pem", []), inter=dup_inter))["failure"]["reason"] == \
        "malformed-extension"


def test_malformed_root_is_a_finding(pki: Pki, tmp_path: Path) -> None:
    root = make_cert("root", "root", pki.root_key.public_key(), pki.root_key, ca=True,
                     extra=[(U(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00"), False)])
    result = invoke("--json", "--home", tmp_path / "none", "chain", "verify", pki.leaf("plain-leaf.pem", []),
                    "--root", write(tmp_path / "root.pem", root), "--untrusted", pki.inter)
    assert refusal(result)["failure"]["reason"] in ("malformed-extension", "missing-issuer")
    assert result.code != 70


def test_underscore_in_a_dns_name_is_a_verification_failure(pki: Pki) -> None:
    leaf = pki.leaf("underscore.pem", [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                                       (x509.SubjectAlternativeName([x509.DNSName("a_b.example")]), False)])
    doc = refusal(pki.verify(leaf, "--hostname", "a_b.example"))
    assert doc["failure"]["reason"] == "invalid-name" and doc["findings"][0]["rule"] == "invalid-name"
    assert refusal(pki.verify(leaf, "--hostname", "x.example"))["failure"]["reason"] == "hostname"
    assert pki.verify(leaf).code == 0  # no host name asked: the path itself is fine


def test_self_signed_leaf_that_is_not_the_root(pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    own = write(tmp_path / "self.pem", make_cert("leaf", "leaf", key.public_key(), key, ca=False))
    doc = refusal(pki.verify(own))
    assert doc["failure"]["reason"] == "untrusted-root" and doc["failure"]["certificate"] == "CN=leaf"
    assert refusal(invoke("--json", "--home", tmp_path / "none", "chain", "verify", own, "--root",
                          pki.root))["failure"]["reason"] == "untrusted-root"


# ---------------------------------------------------------------- bounded work


def _same_subject_same_key(pki: Pki, count: int) -> list[x509.Certificate]:
    """``count`` CAs named ``CN=inter`` with one key, each issued by that key (self-issued, untrusted)."""
    return [make_cert("inter", "inter", pki.inter_key.public_key(), pki.inter_key, ca=True, serial=1000 + i)
            for i in range(count)]


def test_thirty_same_subject_same_key_intermediates_end_quickly(pki: Pki, tmp_path: Path) -> None:
    bag = write(tmp_path / "bag.pem", *_same_subject_same_key(pki, 30))
    leaf = pki.leaf("plain-leaf.pem", [])
    start = time.monotonic()
    doc = refusal(pki.verify(leaf, inter=bag))
    assert time.monotonic() - start < 10  # a bound, not a benchmark: cryptography alone runs for minutes
    assert doc["failure"]["reason"] == "untrusted-root"
    # the same bag with the real intermediate in it: the path is found and verifies, still quickly
    start = time.monotonic()
    result = invoke("--json", "--home", tmp_path / "none", "chain", "verify", leaf, "--root", pki.root,
                    "--untrusted", bag, "--untrusted", pki.inter)
    assert result.code == 0, result.stderr
    assert [c["subject"] for c in result.json()["chain"]] == ["CN=leaf", "CN=inter", "CN=root"]
    start = time.monotonic()
    built = invoke("--json", "--home", tmp_path / "none", "chain", "build", leaf, "--certs", bag, "--certs",
                   pki.inter, "--certs", pki.root, "--fullchain", tmp_path / "full.pem")
    assert built.code == 0, built.stderr  # chain build has no trust: the first self-signed CN=inter ends it
    assert time.monotonic() - start < 10


def test_the_verifier_gets_one_path(pki: Pki) -> None:
    inter = x509.load_pem_x509_certificate(pki.inter.read_bytes())
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    leaf = x509.load_pem_x509_certificate(pki.leaf("plain-leaf.pem", []).read_bytes())
    bag = _same_subject_same_key(pki, 30)
    path = build_path(leaf, [*bag, inter, root], anchors=[root], at=NOW)
    assert path.complete and path.cas == [inter, root]
    stuck = build_path(leaf, [*bag, root], anchors=[root], at=NOW)
    assert not stuck.complete and len(stuck.cas) == 1 and not stuck.exhausted


# ---------------------------------------------------------------- CRLs (RFC 5280 5.2.3, 5.3)


def _crl(pki: Pki, path: Path, *, extensions: list[x509.Extension[x509.ExtensionType]],
         entries: list[x509.RevokedCertificate] = ()) -> Path:  # type: ignore[assignment]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=name("inter"), last_update=NOW - dt.timedelta(hours=1), next_update=NOW + dt.timedelta(days=1),
        extensions=extensions, revoked_certificates=list(entries))
    path.write_bytes(builder.sign(pki.inter_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def _number(critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(x509.CRLNumber.oid, critical, x509.CRLNumber(7))


def test_crl_number_is_required_and_non_critical(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.leaf("plain-leaf.pem", [])
    good = _crl(pki, tmp_path / "good.crl", extensions=[_number(False)])
    result = pki.verify(leaf, "--crl", good)
    assert result.code == 0, result.stderr
    assert result.json()["revocation"][0]["status"] == "good"
    for label, exts in (("none", []), ("critical", [_number(True)])):
        doc = refusal(pki.verify(leaf, "--crl", _crl(pki, tmp_path / f"{label}.crl", extensions=exts)))
        assert doc["failure"]["reason"] == "crl-number", label
        assert doc["findings"] == [{"rule": "crl-number", "ok": False, "message": doc["findings"][0]["message"]}]


def test_crl_critical_extensions_not_processed_refuse_the_crl(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.leaf("plain-leaf.pem", [])
    delta = x509.Extension(x509.DeltaCRLIndicator.oid, True, x509.DeltaCRLIndicator(6))
    doc = refusal(pki.verify(leaf, "--crl", _crl(pki, tmp_path / "delta.crl", extensions=[_number(False), delta])))
    assert doc["failure"]["reason"] == "crl-extension"
    # RFC 5280 5.3: an entry (of another certificate) with a critical extension not processed
    other_issuer = x509.CertificateIssuer([x509.DNSName("other.example")])
    entry = x509.RevokedCertificateBuilder(12345, NOW - dt.timedelta(hours=2), [
        x509.Extension(other_issuer.oid, True, other_issuer)]).build()
    doc = refusal(pki.verify(leaf, "--crl", _crl(pki, tmp_path / "indirect.crl", extensions=[_number(False)],
                                                 entries=[entry])))
    assert doc["failure"]["reason"] == "crl-extension"
    # a reasonCode entry is processed
    reason = x509.CRLReason(x509.ReasonFlags.superseded)
    fine = x509.RevokedCertificateBuilder(12345, NOW - dt.timedelta(hours=2), [
        x509.Extension(reason.oid, False, reason)]).build()
    assert pki.verify(leaf, "--crl", _crl(pki, tmp_path / "fine.crl", extensions=[_number(False)],
                                          entries=[fine])).code == 0


# ---------------------------------------------------------------- whole seconds, serials, warnings


def test_times_compare_at_whole_seconds(pki: Pki) -> None:
    not_after = NOW + dt.timedelta(days=2)
    leaf = pki.leaf("short.pem", [], not_after=not_after)
    within = (not_after + dt.timedelta(microseconds=500_000)).isoformat().replace("+00:00", "Z")
    result = pki.verify(leaf, "--at", within)
    assert result.code == 0, result.stderr
    assert result.json()["at"] == not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    after = (not_after + dt.timedelta(seconds=1, microseconds=500_000)).isoformat().replace("+00:00", "Z")
    assert refusal(pki.verify(leaf, "--at", after))["failure"]["reason"] == "expired"


@pytest.mark.parametrize("serial", [0, -5])
def test_zero_or_negative_serial_is_a_finding_not_a_python_warning(pki: Pki, serial: int) -> None:
    leaf = pki.leaf(f"serial{serial}.pem", [], serial=serial)
    result = pki.verify(leaf)
    # cryptography's verifier takes a zero serial and refuses a negative one; either way it is a finding
    assert result.code == (0 if serial == 0 else 1), result.stderr
    assert [f["rule"] for f in result.json()["findings"]] == ["serial-positive"]
    built = pki.build(leaf)
    assert built.code == 0 and [f["rule"] for f in built.json()["findings"]] == ["serial-positive"]
    # a real process: pytest would otherwise capture the warning before it reaches stderr
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "twcactl", "--home", str(pki.dir / "no-home"),
                           "chain", "verify", str(leaf), "--root", str(pki.root), "--untrusted", str(pki.inter)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == result.code, proc.stderr
    assert "Warning" not in proc.stderr and "serial" in proc.stderr


def test_a_plain_path_has_no_findings(pki: Pki) -> None:
    result = pki.verify(pki.leaf("plain-leaf.pem", []))
    assert result.code == 0 and result.json()["findings"] == []


def test_build_path_orders_a_malformed_leaf_by_name_and_signature(pki: Pki) -> None:
    """``pfx split`` orders a PFX's certificates with build_path: a broken leaf must not stop it."""
    leaf = x509.load_pem_x509_certificate(
        pki.leaf("dup-eku.pem", [(U(ExtensionOID.EXTENDED_KEY_USAGE, EKU_SERVER), False)] * 2).read_bytes())
    inter = x509.load_pem_x509_certificate(pki.inter.read_bytes())
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    path = build_path(leaf, [root, inter])
    assert path.complete and path.cas == [inter, root]
    assert path.leaf_finding is not None and path.leaf_finding.oid == "2.5.29.37" and path.leaf_finding.repeated


_CRL_OIDS = [ExtensionOID.CRL_NUMBER, ExtensionOID.DELTA_CRL_INDICATOR, ExtensionOID.ISSUING_DISTRIBUTION_POINT,
             ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.FRESHEST_CRL]
_ENTRY_OIDS = [x509.CRLEntryExtensionOID.CRL_REASON, x509.CRLEntryExtensionOID.INVALIDITY_DATE,
               x509.CRLEntryExtensionOID.CERTIFICATE_ISSUER]


def test_hostile_crl_extensions_are_refused_by_contract(pki: Pki) -> None:
    """RFC 5280 5.2/5.3 checks over raw CRL and entry extension bytes: a status or a PolicyError, nothing else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from twcactl.errors import PolicyError
    from twcactl.pkix.verify import check_revocation

    leaf = x509.load_pem_x509_certificate(pki.leaf("plain-leaf.pem", []).read_bytes())
    inter = x509.load_pem_x509_certificate(pki.inter.read_bytes())
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    raw = st.tuples(st.binary(max_size=24), st.booleans())

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["good", "none", "critical"]), st.lists(st.tuples(st.sampled_from(_CRL_OIDS), raw),
                                                                   max_size=2),
           st.lists(st.tuples(st.sampled_from(_ENTRY_OIDS), raw), max_size=2), st.booleans())
    def check(number: str, crl_exts: list[tuple[x509.ObjectIdentifier, tuple[bytes, bool]]],
              entry_exts: list[tuple[x509.ObjectIdentifier, tuple[bytes, bool]]], listed: bool) -> None:
        entry = x509.RevokedCertificateBuilder(
            leaf.serial_number if listed else 99, NOW - dt.timedelta(hours=2),
            [x509.Extension(oid, critical, U(oid, value)) for oid, (value, critical) in entry_exts]).build()
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=name("inter"), last_update=NOW - dt.timedelta(hours=1),
            next_update=NOW + dt.timedelta(days=1), revoked_certificates=[entry],
            extensions=([] if number == "none" else [_number(number == "critical")])
            + [x509.Extension(oid, critical, U(oid, value)) for oid, (value, critical) in crl_exts])
        try:
            crl = x509.load_der_x509_crl(builder.sign(pki.inter_key, hashes.SHA256()).public_bytes(
                serialization.Encoding.DER))
        except ValueError:
            return  # cryptography will not sign or load it: nothing reaches chain verify
        try:
            statuses = check_revocation([leaf, inter, root], [crl], NOW)
        except PolicyError as exc:
            assert exc.details["failure"]["reason"].startswith(("crl-", "revoked"))
            return
        assert statuses[0].status == "good" and not listed

    check()
