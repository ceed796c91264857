"""Issue 5, ``chain build``: a shuffled bag of certificates becomes the manual's bundle files, a
missing issuer is named, hostile names never escape the output directory, cycles end."""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ACCOUNT, CaHome, issued_bundle, openssl_csr, require, sh
from twcactl.pkix.chain import MAX_DEPTH, build_path, issued_by


@dataclass
class TwoLevel:
    home: CaHome
    bundle: Path
    root: x509.Certificate
    uca1: x509.Certificate
    uca2: x509.Certificate
    leaf: x509.Certificate


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def two_level(tmp_path_factory: pytest.TempPathFactory) -> TwoLevel:
    """A CA home with two intermediates and one issued server certificate, exported."""
    base = tmp_path_factory.mktemp("chain")
    home, _bundle, _serial = issued_bundle(base, "--intermediates", "2")
    load = lambda n: x509.load_pem_x509_certificate((base / "bundle" / n).read_bytes())
    return TwoLevel(home, base / "bundle", load("root.cer"), load("uca_1.cer"), load("uca_2.cer"), load("server.cer"))


def self_signed(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return signed(name, key.public_key(), name, key, ca=True), key


def signed(subject: x509.Name, public: object, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey, *,
           ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def write_bag(directory: Path, two: TwoLevel, *, with_uca1: bool = True) -> Path:
    """A shuffled bag: PEM bundles, DER files, a zip, unrelated certificates and duplicates."""
    directory.mkdir()
    unrelated_root, unrelated_key = self_signed("Unrelated Root")
    same_name_other_key, _ = self_signed(two.uca1.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)  # type: ignore[arg-type]
    items: list[tuple[str, bytes]] = [
        ("root.der", der(two.root)),
        ("uca2.pem", pem(two.uca2)),
        ("uca2-again.crt", pem(two.uca2)),
        ("unrelated.pem", pem(unrelated_root) + pem(signed(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other Leaf")]),
            ec.generate_private_key(ec.SECP256R1()).public_key(), unrelated_root.subject, unrelated_key, ca=False))),
        ("impostor.pem", pem(same_name_other_key)),  # the right issuer name, the wrong key
        ("notes.txt", b"not a certificate\n"),
    ]
    if with_uca1:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("certs/uca_1.cer", pem(two.uca1))
            archive.writestr("root-copy.cer", pem(two.root))
        items.append(("more.zip", buffer.getvalue()))
    random.Random(5).shuffle(items)
    for name, data in items:
        (directory / name).write_bytes(data)
    return directory


def test_shuffled_bag_builds_the_four_manual_files(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    bag = write_bag(tmp_path / "bag", two_level)
    out = tmp_path / "out"
    result = tw("--home", tmp_path / "no-home", "--json", "chain", "build", two_level.bundle / "server.cer",
                "--certs", bag, "--out-dir", out, "--fullchain", tmp_path / "fullchain.pem",
                "--zip", tmp_path / "cert.zip")
    assert result.code == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["root.cer", "server.cer", "uca_1.cer", "uca_2.cer"]
    read = lambda n: x509.load_pem_x509_certificate((out / n).read_bytes())
    assert read("server.cer") == two_level.leaf
    assert read("uca_2.cer") == two_level.uca2  # the issuing CA: uca_N is nearest the leaf
    assert read("uca_1.cer") == two_level.uca1
    assert read("root.cer") == two_level.root
    assert issued_by(read("server.cer"), read("uca_2.cer")) and issued_by(read("uca_1.cer"), read("root.cer"))
    doc = result.json()
    assert [c["file"] for c in doc["chain"]] == ["server.cer", "uca_2.cer", "uca_1.cer", "root.cer"]
    assert doc["duplicates"] >= 2 and doc["ignored"] >= 3
    assert any(s.endswith("notes.txt") for s in doc["skipped"])

    full = x509.load_pem_x509_certificates((tmp_path / "fullchain.pem").read_bytes())
    assert full == [two_level.leaf, two_level.uca2, two_level.uca1]  # no root: nginx and Apache
    with zipfile.ZipFile(tmp_path / "cert.zip") as archive:
        assert sorted(archive.namelist()) == ["root.cer", "server.cer", "uca_1.cer", "uca_2.cer"]
        assert x509.load_pem_x509_certificate(archive.read("uca_2.cer")) == two_level.uca2
    proc = sh(require("openssl"), "verify", "-CAfile", out / "root.cer", "-untrusted", tmp_path / "fullchain.pem",
              out / "server.cer")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_intermediate_is_named(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    bag = write_bag(tmp_path / "bag", two_level, with_uca1=False)
    out = tmp_path / "out"
    result = tw("--home", tmp_path / "no-home", "--json", "chain", "build", two_level.bundle / "server.cer",
                "--certs", bag, "--out-dir", out, "--fullchain", tmp_path / "full.pem")
    assert result.code == 1
    doc = result.json()
    missing = two_level.uca1.subject.rfc4514_string()
    assert doc["missing_issuer"] == missing
    assert missing in doc["error"]["message"]
    assert not (tmp_path / "full.pem").exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_one_intermediate_is_uca_cer_and_the_ca_home_is_used(ca_home: CaHome, tmp_path: Path) -> None:
    result = ca_home.run("--json", "cert", "issue", openssl_csr(tmp_path), "--account", ACCOUNT)
    assert result.code == 0, result.stdout + result.stderr
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(Path(result.json()["certificates"][0]["path"]).read_bytes())
    result = ca_home.run("--json", "chain", "build", leaf, "--out-dir", tmp_path / "out")
    assert result.code == 0, result.stderr
    assert result.json()["ca_home_certificates"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["root.cer", "server.cer", "uca.cer"]


def test_hostile_names_never_escape_the_output_directory(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escaped.cer", pem(two_level.uca1))
        archive.writestr("/abs/escaped2.cer", pem(two_level.uca2))
        archive.writestr("..\\..\\escaped3.cer", pem(two_level.root))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "evil.zip").write_bytes(buffer.getvalue())
    out = work / "out"
    result = tw("--home", tmp_path / "no-home", "chain", "build", two_level.bundle / "server.cer",
                "--certs", work / "evil.zip", "--out-dir", out)
    assert result.code == 0, result.stderr
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert everything == ["a", "a/b", "a/b/evil.zip", "a/b/out", "a/b/out/root.cer", "a/b/out/server.cer",
                          "a/b/out/uca_1.cer", "a/b/out/uca_2.cer"]


def test_existing_files_are_kept_without_force(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "uca_1.cer").write_text("mine\n")
    args = ["--home", tmp_path / "no-home", "chain", "build", two_level.bundle / "server.cer",
            "--certs", two_level.bundle / "cert.zip", "--out-dir", out]
    assert tw(*args).code == 5
    assert sorted(p.name for p in out.iterdir()) == ["uca_1.cer"]
    assert (out / "uca_1.cer").read_text() == "mine\n"
    assert tw(*args, "--force").code == 0
    assert x509.load_pem_x509_certificate((out / "uca_1.cer").read_bytes()) == two_level.uca1


def test_cross_signed_cycle_ends() -> None:
    key_a, key_b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name_a = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA A")])
    name_b = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA B")])
    a_by_b = signed(name_a, key_a.public_key(), name_b, key_b, ca=True)
    b_by_a = signed(name_b, key_b.public_key(), name_a, key_a, ca=True)
    leaf = signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
                  ec.generate_private_key(ec.SECP256R1()).public_key(), name_a, key_a, ca=False)
    path = build_path(leaf, [a_by_b, b_by_a] * 3)
    assert not path.complete
    assert len(path.cas) == 2
    # with a self-signed B added, the path completes through the cross certificate
    root_b = signed(name_b, key_b.public_key(), name_b, key_b, ca=True)
    path = build_path(leaf, [b_by_a, a_by_b, root_b])
    assert path.complete and path.cas == [a_by_b, root_b]


def test_depth_is_capped() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root, key = self_signed("CA 0", key)
    certs = [root]
    issuer_name, issuer_key = root.subject, key
    for i in range(1, MAX_DEPTH + 3):
        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"CA {i}")])
        certs.append(signed(name, k.public_key(), issuer_name, issuer_key, ca=True))
        issuer_name, issuer_key = name, k
    leaf = signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deep leaf")]),
                  ec.generate_private_key(ec.SECP256R1()).public_key(), issuer_name, issuer_key, ca=False)
    path = build_path(leaf, list(reversed(certs)))
    assert not path.complete
    assert len(path.cas) == MAX_DEPTH
    short = build_path(leaf, list(reversed(certs)), max_depth=MAX_DEPTH + 3)
    assert short.complete and short.cas[-1] == root


def test_malformed_named_input_is_exit_3(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    result = tw("--home", tmp_path / "none", "chain", "build", two_level.bundle / "server.cer", "--certs", junk)
    assert result.code == 3
    broken_zip = tmp_path / "broken.zip"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    result = tw("--home", tmp_path / "none", "chain", "build", two_level.bundle / "server.cer", "--certs", broken_zip)
    assert result.code == 3
    assert tw("chain", "build", tmp_path / "missing.cer").code == 3


def test_fullchain_to_stdout(two_level: TwoLevel, tmp_path: Path, tw) -> None:
    result = tw("--home", tmp_path / "none", "chain", "build", two_level.bundle / "server.cer", "--certs",
                two_level.bundle / "cert.zip", "--fullchain", "-")
    assert result.code == 0, result.stderr
    assert x509.load_pem_x509_certificates(result.stdout.encode()) == [two_level.leaf, two_level.uca2, two_level.uca1]


def test_help_has_examples(tw) -> None:
    for cmd in ("build", "verify"):
        result = tw("chain", cmd, "--help")
        assert result.code == 0
        assert "Example" in result.stdout and "--json" in result.stdout
        assert f"twcactl chain {cmd}" in result.stdout
