"""Issue 17, "Friction found": each item of the list, through the CLI, checked on parsed results.

csr new --from-cert (key type kept; fullchain or cert.zip), csr new refusing what breaks the
profile's rules, pfx export chains (zip, directory, fullchain; each certificate once; a warning
without one), pfx change-password, serial prefixes, cert show / renew output, cert suspend /
resume, cert list --sort expiry, batch directories with stray files, and the card items
(module search, default PIN, register file names) on real SoftHSM2 tokens.

Card tests need the card lock: run this file under ``flock /tmp/card-tests.lock``.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.card_support import PIN, SoftHsm
from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, require, sh

SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN={cn}"


def _csr(directory: Path, cn: str, newkey: tuple[str, ...] = ("-newkey", "rsa:2048")) -> Path:
    """A CSR made by ``openssl req`` (key next to it as NAME.key)."""
    csr, key = directory / f"{cn}.csr", directory / f"{cn}.key"
    proc = sh(require("openssl"), "req", "-new", *newkey, "-nodes", "-subj", SUBJ.format(cn=cn),
              "-keyout", key, "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _issue(home: CaHome, csr: Path, *extra: str) -> dict[str, Any]:
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *extra)
    assert result.code == 0, result.stdout + result.stderr
    cert: dict[str, Any] = result.json()["certificates"][0]
    return cert


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One CA home (no passphrase) with an EC P-384 certificate exported as the manuals' bundle, a fullchain
    PEM of it, and its key."""
    base = tmp_path_factory.mktemp("issue17")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "60").code == 0
    csr = _csr(base, "ec.twca.com.tw", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"))
    cert = _issue(home, csr, "--contact", "ops@twca.com.tw", "--note", "front web")
    bundle = base / "bundle"
    assert home.run("cert", "export", cert["serial"], "--out-dir", bundle).code == 0
    fullchain = base / "fullchain.pem"
    fullchain.write_bytes(b"".join((bundle / n).read_bytes() for n in ("server.cer", "uca.cer", "root.cer")))
    return {"base": base, "home": home, "serial": cert["serial"], "bundle": bundle, "fullchain": fullchain,
            "key": base / "ec.twca.com.tw.key"}


def _load_csr(path: Path) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(path.read_bytes())


# ------------------------------------------------------------------ csr new --from-cert


@pytest.mark.parametrize("source", ["server.cer", "cert.zip", "fullchain"])
def test_from_cert_keeps_the_key_type_and_takes_a_bundle(world: dict[str, Any], tmp_path: Path, source: str) -> None:
    given = world["fullchain"] if source == "fullchain" else world["bundle"] / source
    out = tmp_path / "renew.csr"
    result = invoke("--json", "csr", "new", "--from-cert", given, "--key-out", tmp_path / "new.key", "--out", out,
                    "--no-passphrase")
    assert result.code == 0, result.stderr
    req = _load_csr(out)
    public = req.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1", "not RSA-2048"
    assert result.json()["key_type"] == "ec-p384"
    old = x509.load_pem_x509_certificate((world["bundle"] / "server.cer").read_bytes())
    assert req.subject == old.subject
    assert result.json()["from_cert"]["serial"] == world["serial"]
    new_key = serialization.load_pem_private_key((tmp_path / "new.key").read_bytes(), None)
    assert new_key.public_key() == public and public != old.public_key()


def test_from_cert_keeps_an_rsa_size(world: dict[str, Any], tmp_path: Path) -> None:
    csr = _csr(tmp_path, "big.twca.com.tw", ("-newkey", "rsa:3072"))
    cert = _issue(world["home"], csr)
    result = invoke("--json", "csr", "new", "--from-cert", cert["path"], "--key-out", tmp_path / "k",
                    "--out", tmp_path / "r.csr", "--no-passphrase")
    assert result.code == 0, result.stderr
    public = _load_csr(tmp_path / "r.csr").public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072
    override = invoke("--json", "csr", "new", "--from-cert", cert["path"], "--key-type", "ec-p256",
                      "--key-out", tmp_path / "k2", "--out", tmp_path / "r2.csr", "--no-passphrase")
    assert override.code == 0 and isinstance(_load_csr(tmp_path / "r2.csr").public_key(), ec.EllipticCurvePublicKey)


# ------------------------------------------------------------------ csr new refuses what breaks the profile


@pytest.mark.parametrize(("args", "rule"), [
    (("--cn", "https://www.twca.com.tw", "--country", "TW"), "cn.syntax"),
    (("--cn", "www.twca.com.tw", "--country", "tw"), "subject.country"),
    (("--cn", "www.twca.com.tw"), "subject.country"),
])
def test_csr_new_refuses_a_broken_request_unless_forced(tmp_path: Path, args: tuple[str, ...], rule: str) -> None:
    key, out = tmp_path / "k", tmp_path / "r.csr"
    common = ("--org", "TWCA", "--state", "Taiwan", "--locality", "Taipei", "--key-type", "ec-p256",
              "--key-out", key, "--out", out, "--no-passphrase")
    refused = invoke("--json", "csr", "new", *args, *common)
    assert refused.code == 1, refused.stdout + refused.stderr
    doc = refused.json()
    assert doc["error"]["kind"] == "policy"
    assert rule in [f["rule"] for f in doc["findings"] if not f["ok"]]
    assert not key.exists() and not out.exists(), "nothing written"
    forced = invoke("--json", "csr", "new", *args, *common, "--force")
    assert forced.code == 0, forced.stderr
    assert rule in [w["rule"] for w in forced.json()["warnings"]]
    assert _load_csr(out).public_key() == serialization.load_pem_private_key(key.read_bytes(), None).public_key()


def test_csr_new_warnings_stay_warnings_and_non_english_is_refused(tmp_path: Path) -> None:
    ok = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "TWCA", "--country", "TW",
                "--key-type", "ec-p256", "--key-out", tmp_path / "k", "--no-passphrase")
    assert ok.code == 0 and [w["rule"] for w in ok.json()["warnings"]] == ["subject.required"]
    chinese = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "台灣網路認證", "--country", "TW",
                     "--key-out", tmp_path / "k2", "--no-passphrase")
    assert chinese.code == 1 and not (tmp_path / "k2").exists()  # refused before any key is made
    assert chinese.json()["error"]["kind"] == "policy"
    assert [f["rule"] for f in chinese.json()["findings"] if not f["ok"]] == ["subject.printable"]
    forced = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "台灣網路認證", "--country", "TW",
                    "--key-out", tmp_path / "k2", "--no-passphrase", "--out", tmp_path / "r2.csr", "--force")
    assert forced.code == 0, forced.stderr
    assert "subject.printable" in [w["rule"] for w in forced.json()["warnings"]]
    written = _load_csr(tmp_path / "r2.csr")
    assert written.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "台灣網路認證"
    # a control character is never "another script": a usage error, --force or not
    escape = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--ou", "A\x1bB", "--country", "TW",
                    "--key-out", tmp_path / "k3", "--no-passphrase", "--force")
    assert escape.code == 2 and not (tmp_path / "k3").exists()


# ------------------------------------------------------------------ pfx export chains


def _pfx_certs(path: Path, password: str) -> tuple[Any, x509.Certificate, list[x509.Certificate]]:
    loaded = pkcs12.load_pkcs12(path.read_bytes(), password.encode())
    assert loaded.cert is not None
    return loaded.key, loaded.cert.certificate, [c.certificate for c in loaded.additional_certs]


def _fingerprints(certs: list[x509.Certificate]) -> list[bytes]:
    return [c.fingerprint(hashes.SHA256()) for c in certs]


@pytest.mark.parametrize("chain", ["cert.zip", "directory", "fullchain", "files"])
def test_pfx_export_chain_forms_put_each_certificate_in_once(world: dict[str, Any], tmp_path: Path,
                                                              chain: str) -> None:
    bundle = world["bundle"]
    chain_args: list[Any] = {
        "cert.zip": ["--chain", bundle / "cert.zip"],
        "directory": ["--chain", bundle],
        "fullchain": ["--chain", world["fullchain"]],
        "files": ["--chain", world["fullchain"], "--chain", bundle / "root.cer", "--chain", bundle / "uca.cer"],
    }[chain]
    out = tmp_path / "x.pfx"
    result = invoke("--home", tmp_path / "no-home", "--json", "pfx", "export", "--cert", bundle / "server.cer",
                    "--key", world["key"], *chain_args, "--out", out, "--password", "pass:secret-17")
    assert result.code == 0, result.stderr
    assert result.json()["chain_source"] == "files" and result.json()["warnings"] == []
    _key, leaf, extra = _pfx_certs(out, "secret-17")
    uca = x509.load_pem_x509_certificate((bundle / "uca.cer").read_bytes())
    root = x509.load_pem_x509_certificate((bundle / "root.cer").read_bytes())
    assert leaf == x509.load_pem_x509_certificate((bundle / "server.cer").read_bytes())
    assert _fingerprints(extra) == _fingerprints([uca, root]), "issuer first, each once, never the leaf"
    assert result.json()["certificates"] == 3
    shown = invoke("--json", "pfx", "show", out, "--password", "pass:secret-17").json()
    assert len({c["fingerprint_sha256"] for c in shown["certificates"]}) == len(shown["certificates"]) == 3


def test_pfx_export_takes_a_fullchain_as_cert(world: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "fc.pfx"
    result = invoke("--home", tmp_path / "no-home", "--json", "pfx", "export", "--cert", world["fullchain"],
                    "--key", world["key"], "--out", out, "--password", "pass:secret-17")
    assert result.code == 0, result.stderr
    assert result.json()["chain_source"] == "cert"
    _key, leaf, extra = _pfx_certs(out, "secret-17")
    assert leaf == x509.load_pem_x509_certificate((world["bundle"] / "server.cer").read_bytes())
    assert len(extra) == 2 and leaf not in extra


def test_pfx_export_without_home_or_chain_warns(world: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "alone.pfx"
    result = invoke("--home", tmp_path / "no-home", "--json", "pfx", "export", "--cert",
                    world["bundle"] / "server.cer", "--key", world["key"], "--out", out, "--password", "pass:secret-17")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["chain_source"] == "none" and len(doc["warnings"]) == 1 and "--chain" in doc["warnings"][0]
    assert "warning:" in result.stderr
    _key, _leaf, extra = _pfx_certs(out, "secret-17")
    assert extra == []
    # with the CA home that issued it: its chain, no warning
    home = world["home"]
    at_home = home.run("--json", "pfx", "export", "--cert", world["bundle"] / "server.cer", "--key", world["key"],
                       "--out", tmp_path / "home.pfx", "--password", "pass:secret-17")
    assert at_home.code == 0 and at_home.json()["chain_source"] == "ca-home" and at_home.json()["warnings"] == []
    assert len(_pfx_certs(tmp_path / "home.pfx", "secret-17")[2]) == 2


# ------------------------------------------------------------------ pfx change-password


def test_pfx_change_password(world: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "old.pfx"
    assert invoke("--home", tmp_path / "h", "pfx", "export", "--cert", world["fullchain"], "--key", world["key"],
                  "--out", src, "--password", "pass:old-secret").code == 0
    new = tmp_path / "new.pfx"
    wrong = invoke("--json", "pfx", "change-password", src, "--out", new, "--password", "pass:not-it",
                   "--new-password", "pass:new-secret")
    assert wrong.code == 4 and not new.exists()
    result = invoke("--json", "pfx", "change-password", src, "--out", new, "--password", "pass:old-secret",
                    "--new-password", "pass:new-secret")
    assert result.code == 0, result.stderr
    assert result.json()["new_key"] is None and result.json()["certificates"] == 3
    key, leaf, extra = _pfx_certs(new, "new-secret")
    old_key, old_leaf, old_extra = _pfx_certs(src, "old-secret")
    assert leaf == old_leaf and _fingerprints(extra) == _fingerprints(old_extra)
    assert key.public_key() == old_key.public_key()
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(new.read_bytes(), b"old-secret")
    assert new.stat().st_mode & 0o777 == 0o600
    proc = sh(require("openssl"), "pkcs12", "-in", new, "-passin", "pass:new-secret", "-noout")
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ serial prefixes


def test_a_unique_prefix_works_wherever_a_serial_does(world: dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    cert = _issue(home, _csr(tmp_path, "prefix.twca.com.tw"))
    serial, prefix = cert["serial"], cert["serial"][:8]
    shown = home.run("--json", "cert", "show", prefix.upper())
    assert shown.code == 0 and shown.json()["certificate"]["serial"] == serial
    out = tmp_path / "exp"
    exported = home.run("--json", "cert", "export", serial[:10], "--out-dir", out)
    assert exported.code == 0 and exported.json()["serial"] == serial
    assert format(x509.load_pem_x509_certificate((out / "server.cer").read_bytes()).serial_number, "x") == serial
    suspended = home.run("--json", "cert", "suspend", prefix)
    assert suspended.code == 0 and suspended.json()["certificate"]["serial"] == serial
    resumed = home.run("--json", "cert", "resume", prefix)
    assert resumed.code == 0 and resumed.json()["certificate"]["status"] == "valid"
    revoked = home.run("--json", "cert", "revoke", prefix, "--reason", "superseded")
    assert revoked.code == 0 and revoked.json()["certificate"]["status"] == "revoked"
    too_short = home.run("--json", "cert", "show", serial[:7])
    assert too_short.code == 5 and too_short.json()["error"]["kind"] == "state"
    assert home.run("--json", "cert", "show", "xyz12345").code == 2


def test_an_ambiguous_prefix_exits_2_listing_the_matches(tmp_path: Path) -> None:
    from twcactl.store import Store

    home = make_ca(tmp_path / "ca", passphrase=None)
    der = (tmp_path / "ca" / "ca" / "root.cer").read_bytes()
    leaf = x509.load_pem_x509_certificate(der).public_bytes(serialization.Encoding.DER)
    serials = ["3f9a0c17e2" + "0" * 30, "3f9a0c17e2" + "1" * 30, "3f9a0c18" + "2" * 32]
    store = Store.open(home.path)
    try:
        ca_name = store.cas.all()[0].name
        store.certificates.bulk_add({"serial": s, "ca_name": ca_name, "cn": "x.twca.com.tw", "subject": "CN=x",
                                     "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
                                     "der": leaf} for s in serials)
    finally:
        store.close()
    ambiguous = home.run("--json", "cert", "show", "3f9a0c17")
    assert ambiguous.code == 2, ambiguous.stdout
    doc = ambiguous.json()
    assert doc["error"]["kind"] == "usage" and doc["matches"] == serials[:2]
    assert home.run("--json", "cert", "show", "3F9A0C17E21").json()["certificate"]["serial"] == serials[1]
    assert home.run("--json", "cert", "show", "3f9a0c18").json()["certificate"]["serial"] == serials[2]
    assert home.run("--json", "cert", "show", "3f9a0c19").code == 5


def test_prefix_query_on_postgresql(pg_server: Any, tmp_path: Path) -> None:
    from twcactl.store import Store
    from twcactl.store.postgres import PostgresEngine

    engine = PostgresEngine.connect(pg_server.new_database(), lock_timeout=5.0)
    engine.create_schema()
    (tmp_path / "node").mkdir()
    store = Store(tmp_path / "node", engine)
    try:
        with store.transaction():
            store.cas.add(name="uca", position=1, issuing=True, subject="CN=uca", serial="1",
                          not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                          not_after=dt.datetime(2030, 1, 1, tzinfo=dt.UTC), cert_file="ca/uca.cer",
                          key_file="ca/uca.key", der=b"0")
        rows = [{"serial": s, "ca_name": "uca", "cn": "x", "subject": "CN=x", "not_before": "2026-01-01T00:00:00Z",
                 "not_after": "2027-01-01T00:00:00Z", "der": s.encode()}
                for s in ("ab12cd34ef", "ab12cd34f0", "ab12cd35", "ab12cd3")]
        store.certificates.bulk_add(rows)
        assert store.certificates.with_prefix("ab12cd34") == ["ab12cd34ef", "ab12cd34f0"]
        assert store.certificates.with_prefix("ab12cd3") == ["ab12cd3", "ab12cd34ef", "ab12cd34f0", "ab12cd35"]
        assert store.certificates.with_prefix("ab12cd34", limit=1) == ["ab12cd34ef"]
        assert store.certificates.with_prefix("ab12cd36") == []
    finally:
        store.close()


SERIAL_IN_DOCS = re.compile(r"twcactl (?:cert|pfx) (?:show|renew|revoke|hold|release|suspend|resume|export) "
                            r"([0-9a-fA-F:x]+)\b")


def test_the_docs_show_real_serials() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs"
    found = [m.group(1) for page in sorted(docs.glob("*.md")) for m in SERIAL_IN_DOCS.finditer(page.read_text())]
    assert found, "the docs show cert commands with serials"
    for serial in found:
        # x509.random_serial_number(): 159 random bits, 39 or 40 hex digits as printed; or a prefix of 8+
        assert re.fullmatch(r"[0-9a-f]{8,40}", serial), serial
        assert len(serial) >= 39 or len(serial) <= 12, f"{serial}: a whole 159-bit serial or a short prefix"


# ------------------------------------------------------------------ cert show, renew, suspend, list


def _openssl_fingerprint(pem: Path, digest: str) -> str:
    proc = sh(require("openssl"), "x509", "-in", pem, "-noout", "-fingerprint", f"-{digest}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip().split("=", 1)[1]


def test_cert_show_human_output_has_what_the_json_has(world: dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    doc = home.run("--json", "cert", "show", world["serial"]).json()
    pem = world["bundle"] / "server.cer"
    sha256, sha1 = _openssl_fingerprint(pem, "sha256"), _openssl_fingerprint(pem, "sha1")
    assert doc["sha256"] == sha256.replace(":", "").lower() and doc["sha1"] == sha1.replace(":", "").lower()
    human = home.run("cert", "show", world["serial"])
    assert human.code == 0
    text = human.stdout.replace("\n", " ")
    for value in (sha256, sha1, doc["contact"], doc["note"]):
        assert value in text, value
    assert doc["contact"] == "ops@twca.com.tw" and doc["note"] == "front web"


def test_cert_renew_shows_renewals_and_the_next_hint(world: dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    old = _issue(home, _csr(tmp_path, "renew.twca.com.tw"))
    again = _csr(tmp_path, "renew.twca.com.tw")  # a new key, the same CN
    renewed = home.run("cert", "renew", old["serial"][:8], "--csr", again, "--early")
    assert renewed.code == 0, renewed.stderr
    hint = [line for line in renewed.stdout.splitlines() if line.startswith("Next:")]
    assert len(hint) == 1
    words = hint[0].split()
    assert words[1:4] == ["twcactl", "cert", "export"] and words[5] == "--out-dir"
    new_serial = words[4]
    show_new = home.run("--json", "cert", "show", new_serial).json()
    assert show_new["renewed_from"] == old["serial"]
    run_hint = home.run(*words[2:5], "--out-dir", tmp_path / "hint-out")  # the hint runs as written
    assert run_hint.code == 0 and (tmp_path / "hint-out" / "cert.zip").exists()
    old_human = home.run("cert", "show", old["serial"]).stdout
    new_human = home.run("cert", "show", new_serial).stdout
    assert new_serial in old_human.split() and old["serial"] in new_human.split()


def test_suspend_and_resume_are_the_manuals_words_for_hold_and_release(world: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    from twcactl.cli.cert_cmd import cert

    assert cert.commands["suspend"] is cert.commands["hold"]
    assert cert.commands["resume"] is cert.commands["release"]
    home = world["home"]
    serial = _issue(home, _csr(tmp_path, "hold.twca.com.tw"))["serial"]
    for verb, back in (("suspend", "resume"), ("hold", "release")):
        held = home.run("--json", "cert", verb, serial)
        assert held.code == 0 and held.json()["certificate"]["status"] == "suspended"
        data = Path(held.json()["crl"]["path"]).read_bytes()
        crl = x509.load_pem_x509_crl(data) if data.startswith(b"-----") else x509.load_der_x509_crl(data)
        entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
        resumed = home.run("--json", "cert", back, serial)
        assert resumed.code == 0 and resumed.json()["certificate"]["status"] == "valid"
    helps = {verb: invoke("cert", verb, "--help").stdout for verb in ("suspend", "hold")}
    assert helps["suspend"].replace("suspend", "hold") == helps["hold"].replace("suspend", "hold")


def test_cert_list_sort_expiry_soonest_first(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    for cn, days in (("a.twca.com.tw", "200"), ("b.twca.com.tw", "20"), ("c.twca.com.tw", "90")):
        _issue(home, _csr(tmp_path, cn), "--days", days)
    default = [c["cn"] for c in home.run("--json", "cert", "list").json()["certificates"]]
    soonest = home.run("--json", "cert", "list", "--sort", "expiry").json()["certificates"]
    assert [c["cn"] for c in soonest] == ["b.twca.com.tw", "c.twca.com.tw", "a.twca.com.tw"]
    assert default == list(reversed([c["cn"] for c in soonest]))
    assert [c["not_after"] for c in soonest] == sorted(c["not_after"] for c in soonest)
    first = home.run("--json", "cert", "list", "--sort", "expiry", "--limit", "1").json()["certificates"]
    assert [c["cn"] for c in first] == ["b.twca.com.tw"]
    check = home.run("--json", "ca", "check")
    assert check.code == 0, check.stdout


# ------------------------------------------------------------------ batch directory with stray files


def test_a_stray_file_in_a_batch_directory_is_skipped(world: dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    batch = tmp_path / "requests"
    batch.mkdir()
    for cn in ("b1.twca.com.tw", "b2.twca.com.tw"):
        shutil.move(str(_csr(tmp_path, cn)), batch / f"{cn}.csr")
    (batch / "README.txt").write_text("send these to the CA\n")
    shutil.copy(tmp_path / "b1.twca.com.tw.key", batch / "b1.key")  # a private key left beside its CSR
    before = home.run("--json", "account", "show", ACCOUNT).json()["balance"]
    result = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT)
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert sorted(c["cn"] for c in doc["certificates"]) == ["b1.twca.com.tw", "b2.twca.com.tw"]
    assert sorted(Path(s["file"]).name for s in doc["skipped"]) == ["README.txt", "b1.key"]
    assert all(s["why"] for s in doc["skipped"]) and doc["failed"] == []
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == before - 2
    # a damaged CSR is still a failure of the batch: nothing issued
    (batch / "broken.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
    (batch / "b1.twca.com.tw.csr").unlink()
    (batch / "b2.twca.com.tw.csr").unlink()
    shutil.move(str(_csr(tmp_path, "b3.twca.com.tw")), batch / "b3.csr")
    failed = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT)
    assert failed.code == 3
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == before - 2
    # a stray file named directly is not skipped
    assert home.run("--json", "cert", "issue", batch / "README.txt", "--account", ACCOUNT).code == 3
    check = home.run("--json", "ca", "check")
    assert check.code == 0, check.stdout


# ------------------------------------------------------------------ cards (SoftHSM2, under the card lock)


def _searching_env(hsm: SoftHsm) -> dict[str, str | None]:
    """No --module and no $TWCACTL_PKCS11_MODULE: twcactl must find the module that holds the token."""
    return {"SOFTHSM2_CONF": str(hsm.conf), "TWCACTL_PKCS11_MODULE": None}


def test_card_commands_find_the_module_that_holds_the_token(hsm: SoftHsm, tmp_path: Path) -> None:
    from twcactl.backends.p11 import MODULE_CANDIDATES, search_order

    label = hsm.new_token()
    result = invoke("--home", tmp_path / "none", "--json", "card", "status", "--token", label,
                    env=_searching_env(hsm))
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["module"] == doc["token"]["module"] == hsm.module and doc["token"]["label"] == label
    assert hsm.module in result.stderr  # says which one answered
    order = search_order(None)
    assert order.index(hsm.module) > 0, "found after trying the modules listed before SoftHSM2 (OpenSC first)"
    assert any("p11-kit-proxy" in c for c in MODULE_CANDIDATES)
    missing = invoke("--home", tmp_path / "none", "--json", "card", "status", "--token", "no-such-card",
                     env=_searching_env(hsm))
    assert missing.code == 6 and missing.json()["error"]["kind"] == "device"


def test_card_configured_module_is_tried_first_then_the_system_ones(hsm: SoftHsm, tmp_path: Path) -> None:
    import tomli_w

    from twcactl.backends.p11 import MODULE_CANDIDATES

    label = hsm.new_token()
    home = make_ca(tmp_path / "ca", passphrase=None)
    opensc = next(c for c in MODULE_CANDIDATES if "opensc" in c and Path(c).is_file())  # holds no token here
    config = home.path / "config.toml"
    import tomllib

    settings = tomllib.loads(config.read_text("utf-8")) if config.exists() else {}
    settings["pkcs11_module"] = opensc
    config.write_text(tomli_w.dumps(settings), "utf-8")
    result = home.run("--json", "card", "verify-pin", "--token", label, "--pin", f"pass:{PIN}",
                      env=_searching_env(hsm))
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["module"] == hsm.module
    explicit = home.run("--json", "card", "status", "--token", label, "--module", opensc, env=_searching_env(hsm))
    assert explicit.code == 6, "--module is used alone"


def test_a_card_on_the_default_pin_is_warned_about(hsm: SoftHsm, tmp_path: Path) -> None:
    from twcactl.rules.pin import DEFAULT_PIN

    default = hsm.new_token(pin=DEFAULT_PIN)
    own = hsm.new_token()
    env = hsm.env()
    for cmd in (("card", "status"), ("card", "verify-pin")):
        warned = invoke("--json", *cmd, "--token", default, "--pin", f"pass:{DEFAULT_PIN}", env=env)
        assert warned.code == 0, warned.stderr
        assert warned.json()["pin_is_default"] is True and "warning:" in warned.stderr
        assert DEFAULT_PIN not in warned.stderr + warned.stdout, "the PIN itself is never printed"
        quiet = invoke("--json", *cmd, "--token", own, "--pin", f"pass:{PIN}", env=env)
        assert quiet.code == 0 and quiet.json()["pin_is_default"] is False and "warning:" not in quiet.stderr
    args = ("--json", "card", "enroll", "--token", default, "--pin", f"pass:{DEFAULT_PIN}", "--csr-out",
            tmp_path / "holder.csr", "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW")
    refused = invoke(*args, env=env)  # issue 28: no key is made on a card still on its factory PIN
    assert refused.code == 5 and "card change-pin" in refused.json()["error"]["hint"]
    assert not (tmp_path / "holder.csr").exists()
    assert "Private Key Object" not in hsm.pkcs11_tool(default, "--login", "--pin", DEFAULT_PIN, "-O").stdout
    enrolled = invoke(*args, "--allow-default-pin", env=env)
    assert enrolled.code == 0, enrolled.stdout + enrolled.stderr
    assert enrolled.json()["pin_is_default"] is True and "warning:" in enrolled.stderr
    assert _load_csr(tmp_path / "holder.csr").is_signature_valid


def test_card_register_names_files_by_label_and_serial(hsm: SoftHsm, tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    label = hsm.new_token()
    env = hsm.env()
    enrolled = home.run("--json", "card", "enroll", "--pair", "--token", label, "--pin", f"pass:{PIN}",
                        "--account", ACCOUNT, "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW",
                        "--san", "yiru@twca.com.tw", env=env)
    assert enrolled.code == 0, enrolled.stdout + enrolled.stderr
    by_profile = {k["profile"]: k["certificate"]["serial"] for k in enrolled.json()["keys"]}
    out = tmp_path / "moved"
    result = home.run("--json", "card", "register", "--token", label, "--out-dir", out, env=env)
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"sign-{by_profile['user-sign']}.cer", f"enc-{by_profile['user-enc']}.cer"])
    sign = x509.load_pem_x509_certificate((out / f"sign-{by_profile['user-sign']}.cer").read_bytes())
    enc = x509.load_pem_x509_certificate((out / f"enc-{by_profile['user-enc']}.cer").read_bytes())
    assert sign.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert enc.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert sign.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "A123456789-01-YIRU"
    assert {Path(e["file"]).name for e in result.json()["certificates"]} == set(names)
    check = home.run("--json", "ca", "check")
    assert check.code == 0, check.stdout


def test_register_file_names_unit() -> None:
    from twcactl.authority.card_issuer import register_file_name

    assert register_file_name("user-sign", "ab") == "sign-ab.cer"
    assert register_file_name("TWCA enc", "ab") == "enc-ab.cer"
    assert register_file_name("ssl", "ab") == "ssl-ab.cer"
    assert register_file_name("../../etc/x", "ab") == "______etc_x-ab.cer"
    assert register_file_name(None, "ab") == "ab.cer"

