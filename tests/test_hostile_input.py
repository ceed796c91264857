"""Issue 8: hostile input gets a one-line error and the contract's exit code, never a traceback;
attacker-controlled text is shown escaped, never interpreted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ACCOUNT, CaHome, Result, invoke


@pytest.fixture(scope="module")
def good_csr_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.twca.com.tw")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)


def _corpus(tmp: Path, good: bytes) -> dict[str, Path]:
    files: dict[str, bytes] = {
        "empty": b"",
        "blank": b"   \r\n\t\n",
        "truncated-pem": good[: len(good) // 2],
        "truncated-der": x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER)[:40],
        "binary": os.urandom(4096),
        "nul-laden": good.replace(b"\n", b"\x00\n"),
        "all-nul": b"\x00" * 10000,
        "two-blocks": good + good,
        "no-block": b"Dear CA, please issue me a certificate. Thanks!\n",
        "wrong-type": good.replace(b"CERTIFICATE REQUEST", b"CERTIFICATE"),
        "nested": b"\x30\x84\x00\x00\xff\xff" + b"\x30\x80" * 20000,
        "utf16": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n".encode("utf-16"),
    }
    paths = {}
    for name, data in files.items():
        path = tmp / f"{name}.csr"
        path.write_bytes(data)
        paths[name] = path
    huge = tmp / "huge.csr"
    with open(huge, "wb") as fh:  # 100 MB, sparse: costs no disk
        fh.truncate(100 * 1024 * 1024)
    paths["100MB"] = huge
    paths["missing"] = tmp / "does-not-exist.csr"
    paths["directory"] = tmp
    return paths


def one_line_error(result: Result, code: int) -> None:
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines[0].startswith("error: ") and len(lines) <= 2, result.stderr
    assert all(len(line) < 400 for line in lines)


def test_corpus_csr_show_and_issue(tmp_path: Path, good_csr_pem: bytes, ca_home: CaHome) -> None:
    for name, path in _corpus(tmp_path, good_csr_pem).items():
        one_line_error(invoke("csr", "show", path), 3)
        one_line_error(ca_home.run("cert", "issue", path, "--account", ACCOUNT), 3)
        one_line_error(invoke("pfx", "export", "--cert", path, "--key", path, "--out", tmp_path / f"{name}.pfx",
                              "--password", "pass:secret1"), 3)
        assert not (tmp_path / f"{name}.pfx").exists(), name
    assert ca_home.run("--json", "cert", "list").json()["count"] == 0


def _csr_with(cn: str, *, sans: int = 0, ous: int = 0) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TWCA")]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit{i}") for i in range(ous)]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(f"h{i}.twca.com.tw") for i in range(sans)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("cn", ["\x1b[31mred\x1b[0m.twca.com.tw", "www.\u202eexe.twca.com.tw", "[red]x[/red]",
                                "[/x]", "line1\nline2.twca.com.tw", "bell\x07.twca.com.tw"])
def test_hostile_subjects_are_shown_escaped(tmp_path: Path, cn: str, ca_home: CaHome) -> None:
    path = tmp_path / "h.csr"
    path.write_bytes(_csr_with(cn))
    result = invoke("csr", "show", path)
    assert result.code == 0, result.stderr
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in result.stdout
    if "[" in cn and "\x1b" not in cn:
        assert cn in result.stdout, "markup must print literally"
    if "\n" in cn:
        assert "line1\\x0aline2" in result.stdout or "line1\\nline2" in result.stdout
    doc = invoke("--json", "csr", "show", path).json()
    assert any(a["value"] == cn for a in doc["subject"]), "JSON keeps the exact value"
    refused = ca_home.run("cert", "issue", path, "--account", ACCOUNT)
    assert refused.code == 1
    assert "\x1b" not in refused.stderr and "\u202e" not in refused.stderr and "\x07" not in refused.stderr


def test_thousands_of_sans_and_attributes(tmp_path: Path, ca_home: CaHome) -> None:
    many_sans = tmp_path / "sans.csr"
    many_sans.write_bytes(_csr_with("www.twca.com.tw", sans=3000))
    result = invoke("--json", "csr", "show", many_sans)
    assert result.code == 0 and len(result.json()["sans"]) == 3000
    issued = ca_home.run("--json", "cert", "issue", many_sans, "--account", ACCOUNT)
    assert issued.code == 1 and issued.json()["error"]["kind"] == "policy", "refused by rule, not a crash"
    assert "Traceback" not in issued.stderr
    many_attrs = tmp_path / "attrs.csr"
    many_attrs.write_bytes(_csr_with("www.twca.com.tw", ous=2000))
    result = invoke("csr", "show", many_attrs)
    assert result.code == 0
    refused = ca_home.run("cert", "issue", many_attrs, "--account", ACCOUNT)
    assert refused.code == 1 and len(refused.stderr) < 2000


def test_output_paths_that_exist_or_are_symlinks(tmp_path: Path, ca_home: CaHome, openssl_request: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "link.pem"
    link.symlink_to(victim)
    for target in (victim, link):
        r = invoke("csr", "new", "--cn", "x.twca.com.tw", "--key-out", target, "--no-passphrase",
                   "--key-type", "ec-p256")
        assert r.code == 5
        r = ca_home.run("cert", "issue", openssl_request, "--account", ACCOUNT, "--out", target)
        assert r.code == 5
    assert victim.read_text() == "precious"
    assert ca_home.run("--json", "cert", "list").json()["count"] == 0
    out_dir = tmp_path / "bundle"
    out_dir.mkdir()
    (out_dir / "server.cer").symlink_to(victim)
    serial = ca_home.run("--json", "cert", "issue", openssl_request, "--account", ACCOUNT).json()["certificates"][0]["serial"]
    assert ca_home.run("cert", "export", serial, "--out-dir", out_dir).code == 5
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out_dir.iterdir()) == ["server.cer"]
