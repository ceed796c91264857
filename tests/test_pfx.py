"""Issue 5, PFX files: export, show, rekey (password and key pair), split, checked with the real
OpenSSL 3, Java keytool, NSS pk12util and GnuTLS certtool, and the legacy files of cryptography_vectors."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cryptography_vectors
import pytest
from asn1crypto import pkcs12 as asn1_p12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, openssl_csr, require, sh
from twcactl.pkix.pkcs12_info import (
    MAX_ITERATIONS,
    bmp_password,
    mac_matches,
    parse_pfx,
    pkcs12_kdf,
)

PW = "pfx-secret-42"
NEW_PW = "new-secret-77"
VECTORS = Path(cryptography_vectors.__file__).parent / "pkcs12"


def spki(key_or_cert: object) -> bytes:
    public = key_or_cert.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Issued:
    home: CaHome
    dir: Path
    cert: Path
    key: Path
    chain: list[Path]
    serial: str


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """A CA home (no passphrase) with one issued server certificate, its key and exported bundle."""
    base = tmp_path_factory.mktemp("pfx")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20").code == 0
    csr = openssl_csr(base, name="www")
    result = home.run("--json", "cert", "issue", str(csr), "--account", ACCOUNT)
    assert result.code == 0, result.stderr
    serial = result.json()["certificates"][0]["serial"]
    assert home.run("cert", "export", serial, "--out-dir", base / "bundle").code == 0
    b = base / "bundle"
    return Issued(home, base, b / "server.cer", base / "www.key", [b / "uca.cer", b / "root.cer"], serial)


def export(issued: Issued, out: Path, *extra: str) -> Path:
    args: list[str | Path] = ["pfx", "export", "--cert", issued.cert, "--key", issued.key, "--out", out,
                              "--password", f"pass:{PW}"]
    for c in issued.chain:
        args += ["--chain", c]
    result = issued.home.run(*args, *extra)
    assert result.code == 0, result.stderr
    return out


def protection(path: Path, password: str) -> dict:
    """``pfx show --json``'s protection document: the schemes, iterations and MAC as twcactl parses them."""
    result = invoke("--json", "pfx", "show", path, "--password", f"pass:{password}")
    assert result.code == 0, result.stdout + result.stderr
    return dict(result.json()["protection"])


AES_SCHEME = "PBES2 PBKDF2-HMAC-SHA256 AES-256-CBC"
TDES_SCHEME = "pbeWithSHA1And3-KeyTripleDES-CBC"


def certs_in_pem(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode()) if "BEGIN CERTIFICATE" in text else []


def expected_serials(issued: Issued) -> set[int]:
    return {x509.load_pem_x509_certificate(p.read_bytes()).serial_number for p in [issued.cert, *issued.chain]}


# ---------------------------------------------------------------- export, checked by four implementations


def test_default_export_opens_in_openssl_keytool_nss_and_gnutls(issued: Issued, tmp_path: Path) -> None:
    pfx = export(issued, tmp_path / "www.pfx", "--name", "www backup")
    serials = expected_serials(issued)
    leaf = x509.load_pem_x509_certificate(issued.cert.read_bytes())

    # OpenSSL 3, without -legacy: the algorithms on stderr, the objects on stdout
    proc = sh(require("openssl"), "pkcs12", "-in", pfx, "-info", "-passin", f"pass:{PW}", "-nodes")
    assert proc.returncode == 0, proc.stderr
    prot = protection(pfx, PW)
    assert (prot["certificate_encryption"]["scheme"], prot["key_encryption"]["scheme"], prot["mac"]["algorithm"]) == \
        (AES_SCHEME, AES_SCHEME, "sha256")
    out = proc.stdout.decode()
    assert {c.serial_number for c in certs_in_pem(out)} == serials
    key = serialization.load_pem_private_key(re.search(r"-----BEGIN PRIVATE KEY-----.*?-----END PRIVATE KEY-----",
                                                       out, re.DOTALL).group(0).encode(), None)  # type: ignore[union-attr]
    assert spki(key) == spki(leaf)
    assert "friendlyName: www backup" in out

    # Java keytool: one private-key entry with the whole chain
    proc = sh(require("keytool"), "-list", "-v", "-storetype", "PKCS12", "-keystore", pfx, "-storepass", PW)
    listing = proc.stdout.decode()
    assert proc.returncode == 0, listing
    assert "Entry type: PrivateKeyEntry" in listing
    assert "Certificate chain length: 3" in listing
    assert "Alias name: www backup" in listing

    # NSS pk12util
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text(PW + "\n")
    proc = sh(require("pk12util"), "-l", pfx, "-w", pwfile)
    nss = proc.stdout.decode()
    assert proc.returncode == 0, nss + proc.stderr.decode()
    assert nss.count("Key(shrouded):") == 1
    assert nss.count("Certificate(has private key):") == 1
    assert len(re.findall(r"^Certificate", nss, re.MULTILINE)) == 3
    for s in serials:
        assert format(s, "x")[-6:] in nss.replace(":", "").lower()

    # GnuTLS certtool
    proc = sh(require("certtool"), "--p12-info", "--inder", "--infile", pfx, "--password", PW)
    gnutls = proc.stdout.decode()
    assert proc.returncode == 0, gnutls + proc.stderr.decode()
    assert "PKCS #8 Encrypted key" in gnutls
    assert {c.serial_number for c in certs_in_pem(gnutls)} == serials


def test_legacy_export_is_3des_with_sha1_mac(issued: Issued, tmp_path: Path) -> None:
    pfx = export(issued, tmp_path / "legacy.pfx", "--legacy")
    proc = sh(require("openssl"), "pkcs12", "-in", pfx, "-info", "-passin", f"pass:{PW}", "-noout")
    assert proc.returncode == 0, proc.stderr
    prot = protection(pfx, PW)
    assert (prot["certificate_encryption"]["scheme"], prot["key_encryption"]["scheme"], prot["mac"]["algorithm"]) == \
        (TDES_SCHEME, TDES_SCHEME, "sha1")
    proc = sh(require("keytool"), "-list", "-storetype", "PKCS12", "-keystore", pfx, "-storepass", PW)
    assert proc.returncode == 0 and b"PrivateKeyEntry" in proc.stdout


def test_export_refuses_a_key_of_another_certificate(issued: Issued, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "other.key"
    key.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    out = tmp_path / "bad.pfx"
    result = issued.home.run("--json", "pfx", "export", "--cert", issued.cert, "--key", key, "--out", out,
                             "--password", f"pass:{PW}")
    assert result.code == 1
    assert result.json()["error"]["kind"] == "policy"
    assert not out.exists()


# the new password asked twice at a real terminal: tests/test_issue20_prompts.py


# ---------------------------------------------------------------- show


LEGACY_VECTORS = [
    # file, password, certificate scheme, key scheme, MAC
    ("cert-rc2-key-3des.p12", "cryptography", "pbeWithSHA1And40BitRC2-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC", "sha1"),
    ("cert-key-aes256cbc.p12", "cryptography", "PBES2 PBKDF2-HMAC-SHA1 AES-256-CBC",
     "PBES2 PBKDF2-HMAC-SHA1 AES-256-CBC", "sha1"),
    ("cert-none-key-none.p12", "cryptography", "none", "none", "sha1"),
    ("name-all-pwd.p12", "password", "pbeWithSHA1And3-KeyTripleDES-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC", "sha1"),
    ("name-unicode-pwd.p12", "password", "pbeWithSHA1And3-KeyTripleDES-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC",
     "sha1"),
]


def openssl_info(path: Path, password: str, *extra: str) -> str:
    proc = sh(require("openssl"), "pkcs12", "-in", path, "-info", "-noout", "-passin", f"pass:{password}", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.decode()


@pytest.mark.parametrize(("name", "password", "cert_scheme", "key_scheme", "mac"), LEGACY_VECTORS,
                         ids=[v[0] for v in LEGACY_VECTORS])
def test_show_reports_the_protection_of_each_vector(tw, name: str, password: str, cert_scheme: str, key_scheme: str,
                                                    mac: str) -> None:
    path = VECTORS / name
    result = tw("--json", "pfx", "show", path, "--password", f"pass:{password}")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    prot = doc["protection"]
    assert prot["certificate_encryption"]["scheme"] == cert_scheme
    assert prot["key_encryption"]["scheme"] == key_scheme
    assert prot["mac"]["algorithm"] == mac
    # the same facts as OpenSSL reads them
    info = openssl_info(path, password, "-legacy")
    mac_line = re.search(r"MAC: (\w+), Iteration (\d+)", info)
    assert mac_line is not None
    assert (prot["mac"]["algorithm"], prot["mac"]["iterations"]) == (mac_line.group(1), int(mac_line.group(2)))
    if cert_scheme.startswith("pbeWith"):
        assert f"PKCS7 Encrypted data: {cert_scheme}, Iteration {prot['certificate_encryption']['iterations']}" in info
    if key_scheme.startswith("pbeWith"):
        assert f"Shrouded Keybag: {key_scheme}, Iteration {prot['key_encryption']['iterations']}" in info
    loaded = pkcs12.load_pkcs12(path.read_bytes(), password.encode())
    assert doc["key"]["certificate_serial"] == format(loaded.cert.certificate.serial_number, "x")  # type: ignore[union-attr]
    assert len(doc["certificates"]) == 1 + len(loaded.additional_certs)
    assert doc["certificates"][0]["is_key_certificate"] is True


def test_show_friendly_names_and_local_key_ids(tw) -> None:
    result = tw("--json", "pfx", "show", VECTORS / "name-all-pwd.p12", "--password", "pass:password")
    doc = result.json()
    names = [c["friendly_name"] for c in doc["certificates"]]
    assert names == ["name", "name2", "name3"]
    assert doc["key"]["friendly_name"] == "name"
    assert doc["certificates"][0]["local_key_id"] == doc["key"]["local_key_id"] is not None
    assert doc["key"]["type"] == "ec" and doc["key"]["bits"] == 256


def test_show_our_export(issued: Issued, tmp_path: Path) -> None:
    pfx = export(issued, tmp_path / "s.pfx")
    result = issued.home.run("--json", "pfx", "show", pfx, "--password", f"pass:{PW}")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["protection"]["certificate_encryption"] == {"scheme": "PBES2 PBKDF2-HMAC-SHA256 AES-256-CBC",
                                                           "iterations": 100_000, "legacy": False}
    assert doc["protection"]["mac"]["algorithm"] == "sha256"
    assert {int(c["serial"], 16) for c in doc["certificates"]} == expected_serials(issued)
    assert doc["key"]["type"] == "rsa" and doc["key"]["bits"] == 2048
    assert doc["key"]["certificate_serial"] == issued.serial


def test_java_truststore_is_shown_and_split_without_a_password(tw, tmp_path: Path) -> None:
    path = VECTORS / "java-truststore.p12"
    result = tw("--json", "pfx", "show", path)
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["key"] is None and doc["key_count"] == 0
    assert len(doc["certificates"]) == 2
    assert doc["certificates"][0]["friendly_name"] == "cert1"
    result = tw("--json", "pfx", "split", path, "--out-dir", tmp_path / "ts")
    assert result.code == 0, result.stdout + result.stderr
    assert sorted(os.listdir(tmp_path / "ts")) == ["chain.pem"]
    assert len(x509.load_pem_x509_certificates((tmp_path / "ts" / "chain.pem").read_bytes())) == 2


def test_wrong_password_is_4_and_malformed_is_3(tw, tmp_path: Path) -> None:
    path = VECTORS / "name-all-pwd.p12"
    assert tw("pfx", "show", path, "--password", "pass:wrong-one").code == 4
    truncated = tmp_path / "truncated.p12"
    truncated.write_bytes(path.read_bytes()[:400])
    result = tw("--json", "pfx", "show", truncated, "--password", "pass:password")
    assert result.code == 3 and result.json()["error"]["kind"] == "input"
    not_pfx = tmp_path / "cert.p12"
    not_pfx.write_bytes(x509.load_pem_x509_certificates(
        (VECTORS.parent / "x509" / "cryptography.io.pem").read_bytes())[0].public_bytes(serialization.Encoding.DER))
    assert tw("pfx", "show", not_pfx, "--password", "pass:password").code == 3


def _with_mac_iterations(data: bytes, iterations: int) -> bytes:
    pfx = asn1_p12.Pfx.load(data)
    mac = pfx["mac_data"]
    new_mac = asn1_p12.MacData({"mac": mac["mac"].native, "mac_salt": mac["mac_salt"].native, "iterations": iterations})
    return asn1_p12.Pfx({"version": 3, "auth_safe": pfx["auth_safe"], "mac_data": new_mac}).dump()


@pytest.mark.parametrize("iterations", [MAX_ITERATIONS + 1, 2**62])
def test_absurd_iteration_counts_are_refused_before_any_work(tw, tmp_path: Path, iterations: int) -> None:
    path = tmp_path / "hostile.p12"
    path.write_bytes(_with_mac_iterations((VECTORS / "name-all-pwd.p12").read_bytes(), iterations))
    with pytest.MonkeyPatch.context() as mp:
        # any key derivation at all would be a failure of this rule
        import twcactl.pkix.pkcs12_info as info

        def no_kdf(*_a: object, **_k: object) -> bytes:
            raise AssertionError("KDF called on a hostile file")

        mp.setattr(info, "pkcs12_kdf", no_kdf)
        result = tw("--json", "pfx", "show", path, "--password", "pass:password")
    assert result.code == 3, result.stdout
    assert "iterations" in result.json()["error"]["message"]


def test_zero_iterations_refused(tw, tmp_path: Path) -> None:
    path = tmp_path / "zero.p12"
    path.write_bytes(_with_mac_iterations((VECTORS / "name-all-pwd.p12").read_bytes(), 0))
    assert tw("pfx", "show", path, "--password", "pass:password").code == 3


# ---------------------------------------------------------------- the PKCS#12 KDF against OpenSSL


def test_mac_check_agrees_with_openssl_made_files(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cert = tmp_path / "c.pem"
    proc = sh(require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-subj", "/CN=kdf", "-keyout", key, "-out", cert, "-days", "2")
    assert proc.returncode == 0, proc.stderr
    for macalg, password in [("sha256", "pässwörd-1"), ("sha1", "abcdef"), ("sha512", "x" * 70)]:
        out = tmp_path / f"{macalg}.p12"
        proc = sh("openssl", "pkcs12", "-export", "-in", cert, "-inkey", key, "-out", out, "-macalg", macalg,
                  "-passout", f"pass:{password}")
        assert proc.returncode == 0, proc.stderr
        structure = parse_pfx(out.read_bytes())
        assert structure.mac is not None and structure.mac.algorithm == macalg
        assert mac_matches(structure, password) is True
        assert mac_matches(structure, password + "x") is False


def test_kdf_known_answer() -> None:
    # RFC 7292 B.2 over SHA-1: deterministic and sensitive to every input
    base = pkcs12_kdf("sha1", bmp_password("smeg"), bytes.fromhex("0a58cf64530d823f"), 1, 1, 24)
    assert len(base) == 24
    assert base.hex() == "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
    assert pkcs12_kdf("sha1", bmp_password("smeg"), bytes.fromhex("0a58cf64530d823f"), 2, 1, 8).hex() == \
        "79993dfe048d3b76"


# ---------------------------------------------------------------- rekey


REKEY_VECTORS = [("cert-rc2-key-3des.p12", "cryptography"), ("name-all-pwd.p12", "password"),
                 ("cert-key-aes256cbc.p12", "cryptography"), ("name-unicode-pwd.p12", "password")]


@pytest.mark.parametrize(("name", "password"), REKEY_VECTORS, ids=[v[0] for v in REKEY_VECTORS])
def test_rekey_of_legacy_vectors_gives_aes_that_openssl_opens_only_with_the_new_password(
        tw, tmp_path: Path, name: str, password: str) -> None:
    src = VECTORS / name
    out = tmp_path / "new.p12"
    result = tw("--json", "pfx", "rekey", src, "--out", out, "--password", f"pass:{password}",
                "--new-password", f"pass:{NEW_PW}")
    assert result.code == 0, result.stdout + result.stderr
    assert out.stat().st_mode & 0o077 == 0
    openssl_info(out, NEW_PW)  # no -legacy: plain OpenSSL 3 opens it
    prot = protection(out, NEW_PW)
    assert (prot["certificate_encryption"]["scheme"], prot["key_encryption"]["scheme"], prot["mac"]["algorithm"]) == \
        (AES_SCHEME, AES_SCHEME, "sha256")
    bad = sh("openssl", "pkcs12", "-in", out, "-info", "-noout", "-passin", f"pass:{password}")
    assert bad.returncode != 0

    old = pkcs12.load_pkcs12(src.read_bytes(), password.encode())
    new = pkcs12.load_pkcs12(out.read_bytes(), NEW_PW.encode())
    assert new.key is not None and old.key is not None
    assert spki(new.key) == spki(old.key)
    assert new.cert is not None and old.cert is not None
    assert new.cert.certificate == old.cert.certificate
    assert new.cert.friendly_name == old.cert.friendly_name
    assert [(c.certificate, c.friendly_name) for c in new.additional_certs] == \
        [(c.certificate, c.friendly_name) for c in old.additional_certs]


def test_rekey_legacy_downgrades_on_purpose(tw, tmp_path: Path) -> None:
    out = tmp_path / "old-windows.p12"
    result = tw("pfx", "rekey", VECTORS / "cert-key-aes256cbc.p12", "--out", out, "--password", "pass:cryptography",
                "--new-password", f"pass:{NEW_PW}", "--legacy")
    assert result.code == 0, result.stderr
    openssl_info(out, NEW_PW)  # OpenSSL 3 opens 3DES without -legacy
    prot = protection(out, NEW_PW)
    assert (prot["certificate_encryption"]["scheme"], prot["key_encryption"]["scheme"], prot["mac"]["algorithm"]) == \
        (TDES_SCHEME, TDES_SCHEME, "sha1")


def test_rekey_wrong_password_writes_nothing(tw, tmp_path: Path) -> None:
    out = tmp_path / "never.p12"
    result = tw("--json", "pfx", "rekey", VECTORS / "name-all-pwd.p12", "--out", out, "--password", "pass:nope-nope",
                "--new-password", f"pass:{NEW_PW}")
    assert result.code == 4
    assert result.json()["error"]["kind"] == "auth"
    assert not out.exists()
    assert [p for p in tmp_path.iterdir()] == []


def test_rekey_never_overwrites_the_input_unless_in_place(tw, tmp_path: Path) -> None:
    src = tmp_path / "www.p12"
    src.write_bytes((VECTORS / "name-all-pwd.p12").read_bytes())
    before = src.read_bytes()
    result = tw("pfx", "rekey", src, "--out", src, "--password", "pass:password", "--new-password", f"pass:{NEW_PW}")
    assert result.code == 2
    assert src.read_bytes() == before
    result = tw("pfx", "rekey", src, "--password", "pass:password", "--new-password", f"pass:{NEW_PW}")
    assert result.code == 2
    short = tw("pfx", "rekey", src, "--in-place", "--password", "pass:password", "--new-password", "pass:12345")
    assert short.code == 2 and src.read_bytes() == before
    result = tw("pfx", "rekey", src, "--in-place", "--password", "pass:password", "--new-password", f"pass:{NEW_PW}")
    assert result.code == 0, result.stderr
    assert pkcs12.load_pkcs12(src.read_bytes(), NEW_PW.encode()).key is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www.p12"]  # no temporary left behind


def _two_key_pfx(password: str) -> bytes:
    """A PFX with two plain key bags and a valid MAC, which no library writes but a hand-edit can make."""
    from asn1crypto import cms
    from asn1crypto import keys as asn1_keys

    first = ec.generate_private_key(ec.SECP256R1())
    second = ec.generate_private_key(ec.SECP256R1())
    bags = []
    for k in (first, second):
        der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        bags.append(asn1_p12.SafeBag({"bag_id": "key_bag", "bag_value": asn1_keys.PrivateKeyInfo.load(der)}))
    safe = asn1_p12.SafeContents(bags)
    auth = asn1_p12.AuthenticatedSafe([cms.ContentInfo({"content_type": "data", "content": safe.dump()})])
    auth_der = auth.dump()
    salt = os.urandom(8)
    import hmac

    mac_key = pkcs12_kdf("sha256", bmp_password(password), salt, 3, 2048, 32)
    digest = hmac.new(mac_key, auth_der, "sha256").digest()
    mac = asn1_p12.MacData({"mac": {"digest_algorithm": {"algorithm": "sha256"}, "digest": digest},
                            "mac_salt": salt, "iterations": 2048})
    return asn1_p12.Pfx({"version": 3, "auth_safe": {"content_type": "data", "content": auth_der},
                         "mac_data": mac}).dump()


def test_a_file_with_two_keys_is_refused_not_halved(tw, tmp_path: Path) -> None:
    src = tmp_path / "two.p12"
    src.write_bytes(_two_key_pfx(PW))
    # OpenSSL agrees the MAC (our KDF) is right and sees both keys
    proc = sh(require("openssl"), "pkcs12", "-in", src, "-info", "-nodes", "-passin", f"pass:{PW}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().count("BEGIN PRIVATE KEY") == 2
    shown = tw("--json", "pfx", "show", src, "--password", f"pass:{PW}")
    assert shown.code == 0 and shown.json()["key_count"] == 2
    out = tmp_path / "one.p12"
    result = tw("--json", "pfx", "rekey", src, "--out", out, "--password", f"pass:{PW}",
                "--new-password", f"pass:{NEW_PW}")
    assert result.code == 1
    assert "2 private keys" in result.json()["error"]["message"]
    assert not out.exists()
    assert tw("pfx", "split", src, "--out-dir", tmp_path / "s", "--password", f"pass:{PW}",
              "--no-passphrase").code == 1


# ---------------------------------------------------------------- split


def test_split_writes_encrypted_key_cert_and_chain(issued: Issued, tmp_path: Path) -> None:
    pfx = export(issued, tmp_path / "w.pfx")
    out = tmp_path / "parts"
    result = issued.home.run("--json", "pfx", "split", pfx, "--out-dir", out, "--password", f"pass:{PW}",
                             "--key-passphrase", "pass:key-pass-123")
    assert result.code == 0, result.stderr
    assert sorted(os.listdir(out)) == ["cert.pem", "chain.pem", "key.pem"]
    assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
    key_pem = (out / "key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key_pem
    key = serialization.load_pem_private_key(key_pem, b"key-pass-123")
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert spki(key) == spki(cert)
    assert cert == x509.load_pem_x509_certificate(issued.cert.read_bytes())
    chain = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())
    assert [c.subject for c in chain] == [x509.load_pem_x509_certificate(p.read_bytes()).subject
                                          for p in issued.chain]  # issuer first, root last
    proc = sh(require("openssl"), "verify", "-CAfile", issued.chain[1], "-untrusted", out / "chain.pem",
              out / "cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a second split refuses to overwrite, and --no-passphrase writes a plain key
    assert issued.home.run("pfx", "split", pfx, "--out-dir", out, "--password", f"pass:{PW}",
                           "--no-passphrase").code == 5
    result = issued.home.run("pfx", "split", pfx, "--out-dir", tmp_path / "plain", "--password", f"pass:{PW}",
                             "--no-passphrase")
    assert result.code == 0
    assert serialization.load_pem_private_key((tmp_path / "plain" / "key.pem").read_bytes(), None) is not None


# ---------------------------------------------------------------- rekey --new-key


def test_rekey_new_key_replaces_the_certificate_and_revokes_the_old(issued: Issued, tmp_path: Path) -> None:
    pfx = export(issued, tmp_path / "old.pfx", "--name", "www")
    out = tmp_path / "new.pfx"
    result = issued.home.run("--json", "pfx", "rekey", pfx, "--out", out, "--new-key", "--revoke-old", "--early",
                             "--password", f"pass:{PW}", "--new-password", f"pass:{NEW_PW}")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["new_key"]["renewed"] == issued.serial and doc["new_key"]["old_revoked"] is True
    old = pkcs12.load_pkcs12(pfx.read_bytes(), PW.encode())
    new = pkcs12.load_pkcs12(out.read_bytes(), NEW_PW.encode())
    assert new.key is not None and new.cert is not None and old.key is not None and old.cert is not None
    assert spki(new.key) != spki(old.key)
    assert spki(new.key) == spki(new.cert.certificate)
    assert new.cert.certificate.subject == old.cert.certificate.subject
    assert format(new.cert.certificate.serial_number, "x") == doc["new_key"]["serial"]
    assert new.cert.friendly_name == b"www"
    assert len(new.additional_certs) == 2
    assert new.key.key_size == old.key.key_size  # type: ignore[union-attr]
    shown = issued.home.run("--json", "cert", "show", issued.serial)
    assert shown.json()["certificate"]["status"] == "revoked"
    fresh = issued.home.run("--json", "cert", "show", doc["new_key"]["serial"])
    assert fresh.json()["certificate"]["status"] in ("valid", "expiring")
    proc = sh(require("openssl"), "pkcs12", "-in", out, "-noout", "-passin", f"pass:{NEW_PW}")
    assert proc.returncode == 0, proc.stderr


def test_rekey_new_key_needs_the_issuing_home(tw, tmp_path: Path) -> None:
    home = make_ca(tmp_path / "other", passphrase=None)
    result = home.run("pfx", "rekey", VECTORS / "name-all-pwd.p12", "--out", tmp_path / "n.p12", "--new-key",
                      "--password", "pass:password", "--new-password", f"pass:{NEW_PW}")
    assert result.code == 5
    assert not (tmp_path / "n.p12").exists()


def test_help_has_examples(tw) -> None:
    for cmd in ("show", "rekey", "split", "export"):
        result = tw("pfx", cmd, "--help")
        assert result.code == 0
        assert "Example" in result.stdout and "--json" in result.stdout
        assert f"twcactl pfx {cmd}" in result.stdout
