"""Issue 20: secrets typed at a real pseudo-terminal (pexpect), not a faked prompt.

Each test spawns the installed ``twcactl`` console script on a pty, answers its prompts, and checks the
result on parsed objects: the PFX opens with the typed password, the CA key with the typed passphrase, the
card's JSON document; the no-terminal path is exit 4 with a hint naming the option.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.card_support import PIN, SoftHsm

TWCACTL = Path(sys.executable).parent / "twcactl"
PW = "Typed-at-a-tty-1"
OTHER = "Typed-otherwise-2"
# the prompts click writes for get_secret(what=...): "<What>: " and, for a new secret, "Repeat for confirmation: "
FIRST_PFX = "New PFX password: "
REPEAT = "Repeat for confirmation: "


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TWCACTL_CA_PASSPHRASE_SOURCE", "TWCACTL_HOME", "TWCACTL_PKCS11_MODULE")}
    env.update({"TWCACTL_OPERATOR": "alice", "COLUMNS": "200", **extra})
    return env


def _spawn(*args: str | Path, env: dict[str, str] | None = None) -> pexpect.spawn:
    assert TWCACTL.exists(), f"{TWCACTL}: the console script (pip install -e .)"
    return pexpect.spawn(str(TWCACTL), [str(a) for a in args], env=env or _env(), timeout=90, encoding="utf-8",
                         dimensions=(24, 200))


def _finish(child: pexpect.spawn) -> tuple[int, str]:
    """Wait for the end; the exit status and what was printed after the last answer."""
    child.expect(pexpect.EOF)
    rest = child.before or ""
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return child.exitstatus, rest


def _json_in(text: str) -> dict:
    return json.loads(text[text.index("{"):])


@pytest.fixture(scope="module")
def cert_and_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and its unencrypted key, as PEM files."""
    directory = tmp_path_factory.mktemp("pty")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.twca.com.tw")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "c.pem", directory / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _opens_with(path: Path, password: str) -> bool:
    try:
        pkcs12.load_pkcs12(path.read_bytes(), password.encode())
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- PFX password, asked twice


def test_pfx_password_typed_twice(cert_and_key: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = cert_and_key
    out = tmp_path / "typed.pfx"
    child = _spawn("pfx", "export", "--cert", cert, "--key", key, "--out", out)
    child.expect_exact(FIRST_PFX)
    child.sendline(PW)
    child.expect_exact(REPEAT)
    child.sendline(PW)
    code, rest = _finish(child)
    assert code == 0, rest
    assert PW not in rest, "a typed secret is never echoed"
    assert _opens_with(out, PW) and not _opens_with(out, OTHER)


def test_pfx_password_mismatch_asks_again(cert_and_key: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = cert_and_key
    out = tmp_path / "again.pfx"
    child = _spawn("pfx", "export", "--cert", cert, "--key", key, "--out", out)
    child.expect_exact(FIRST_PFX)
    child.sendline(OTHER)
    child.expect_exact(REPEAT)
    child.sendline(PW)
    # the pair differs: nothing written, the first prompt again
    child.expect_exact(FIRST_PFX)
    assert not out.exists()
    child.sendline(PW)
    child.expect_exact(REPEAT)
    child.sendline(PW)
    code, rest = _finish(child)
    assert code == 0, rest
    assert _opens_with(out, PW) and not _opens_with(out, OTHER)


def test_pfx_password_too_short_at_the_prompt_is_exit_2(cert_and_key: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = cert_and_key
    out = tmp_path / "short.pfx"
    child = _spawn("--json", "pfx", "export", "--cert", cert, "--key", key, "--out", out)
    for prompt in (FIRST_PFX, REPEAT):
        child.expect_exact(prompt)
        child.sendline("abc")
    code, rest = _finish(child)
    assert code == 2
    assert _json_in(rest)["error"]["kind"] == "usage"
    assert not out.exists()


# ---------------------------------------------------------------- CA passphrase


def test_ca_init_passphrase_typed_twice(tmp_path: Path) -> None:
    home = tmp_path / "ca"
    child = _spawn("--home", home, "ca", "init", "--org", "twcactl Test", "--country", "TW",
                   "--root-key-type", "rsa2048")
    child.expect_exact("New CA key passphrase: ")
    child.sendline(PW)
    child.expect_exact(REPEAT)
    child.sendline(PW)
    code, rest = _finish(child)
    assert code == 0, rest
    keys = sorted((home / "ca" / "private").iterdir())
    assert keys
    for path in keys:
        with pytest.raises(TypeError):  # encrypted: no key without the passphrase
            serialization.load_pem_private_key(path.read_bytes(), None)
        serialization.load_pem_private_key(path.read_bytes(), PW.encode())
    # the home then asks for it when it signs, and takes the typed one
    child = _spawn("--home", home, "--json", "crl")
    child.expect_exact("CA key passphrase: ")
    child.sendline(PW)
    code, rest = _finish(child)
    assert code == 0, rest
    assert _json_in(rest)["number"] >= 1


# ---------------------------------------------------------------- card PIN (SoftHSM2)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    return SoftHsm.create(tmp_path_factory.mktemp("hsm"))


@pytest.mark.parametrize(("typed", "code", "ok"), [(PIN, 0, True), ("13572468", 4, False)])
def test_card_pin_typed(hsm: SoftHsm, typed: str, code: int, ok: bool) -> None:
    label = hsm.new_token()
    env = _env(SOFTHSM2_CONF=str(hsm.conf), TWCACTL_PKCS11_MODULE=hsm.module)
    child = _spawn("--json", "card", "verify-pin", "--token", label, env=env)
    child.expect_exact("Card PIN: ")
    child.sendline(typed)
    got, rest = _finish(child)
    assert got == code, rest
    assert typed not in rest
    doc = _json_in(rest)
    if ok:
        assert "error" not in doc, doc
    else:
        assert doc["error"]["kind"] == "auth"


# ---------------------------------------------------------------- no terminal: exit 4 with a hint


@pytest.mark.parametrize("case", ["pfx", "ca-init", "card"])
def test_no_terminal_is_exit_4_with_a_hint(case: str, cert_and_key: tuple[Path, Path], tmp_path: Path,
                                           hsm: SoftHsm) -> None:
    cert, key = cert_and_key
    env = _env()
    if case == "pfx":
        args: list[str | Path] = ["pfx", "export", "--cert", cert, "--key", key, "--out", tmp_path / "n.pfx"]
        option = "--password"
    elif case == "ca-init":
        args = ["--home", tmp_path / "ca", "ca", "init", "--org", "T", "--country", "TW"]
        option = "--ca-passphrase"
    else:
        env.update(SOFTHSM2_CONF=str(hsm.conf), TWCACTL_PKCS11_MODULE=hsm.module)
        args = ["card", "verify-pin", "--token", hsm.new_token()]
        option = "--pin"
    proc = subprocess.run([str(TWCACTL), "--json", *map(str, args)], stdin=subprocess.DEVNULL, capture_output=True,
                          env=env, timeout=120)
    assert proc.returncode == 4, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "auth"
    assert option in error["hint"]
    assert not (tmp_path / "n.pfx").exists() and not (tmp_path / "ca").exists()
