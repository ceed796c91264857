"""Issue 28, the newcomer's first hour: the README's commands run as written from a fresh ``git clone`` (PATH
included), the extras it names exist, completion and man pages work, ``serve`` without its extra exits 2
naming it, an over-long subject value is a clear usage error, and counted nouns are never "1 days".

Every line runs verbatim, the install line (``.venv/bin/pip install -e '.[...]'``, from the package index this
machine reaches, which pip's cache mostly answers after scripts/test.sh) included, in ``bash -e`` with a PATH
that does not hold the test environment's own ``twcactl``; the extras the install line names must then be
importable in the clone's ``.venv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import invoke

REPO = Path(__file__).resolve().parent.parent
RUN_SECTIONS = ("## Install (from a checkout)", "## Use", "## Shell completion and man pages")
_INSTALL = re.compile(r"^\.venv/bin/pip install -e '\.\[([a-z,]+)\]'(\s+#.*)?$")


def readme_blocks(text: str) -> dict[str, list[str]]:
    """The ``sh`` blocks of each ``## `` section of the README."""
    sections: dict[str, list[str]] = {}
    current = ""
    for part in re.split(r"(?m)^(## .*)$", text):
        if part.startswith("## "):
            current = part.strip()
            continue
        sections.setdefault(current, []).extend(re.findall(r"```sh\n(.*?)```", part, re.S))
    return sections


def _extra_modules(extras: str) -> str:
    modules = {"serve": ["starlette", "uvicorn", "acme", "josepy", "dns"], "postgres": ["psycopg"],
               "card": ["smartcard"], "test": ["pytest"]}
    return ", ".join(m for extra in extras.split(",") for m in modules[extra])


def test_the_extras_the_readme_names_exist() -> None:
    readme = (REPO / "README.md").read_text()
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    checkout = set(re.findall(r"'\.\[([a-z]+)\]'", readme))
    index = set(re.findall(r"'twcactl\[([a-z]+)\]'", readme))
    assert {"serve", "postgres", "card"} <= checkout <= declared
    assert {"serve", "postgres", "card"} <= index <= declared
    docs = "\n".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    # twcactl[...] works only from an index: wherever the docs name it, the checkout spelling is beside it
    for text in (docs, readme):
        for match in re.finditer(r"pip install '?twcactl\[([a-z]+)\]", text):
            nearby = text[max(0, match.start() - 200):match.end() + 200]
            assert f"'.[{match.group(1)}]'" in nearby, nearby


@pytest.mark.skipif(shutil.which("git") is None, reason="git is installed by every CI image; not on this machine")
def test_the_readme_runs_as_written_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "twcactl"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    sections = readme_blocks((clone / "README.md").read_text())
    script = ["set -euo pipefail"]
    for heading in RUN_SECTIONS:
        assert sections.get(heading), f"README section {heading!r} has no sh block"
        for block in sections[heading]:
            for line in block.splitlines():
                script.append(line)
                install = _INSTALL.match(line)
                if install:  # the extras it names are there
                    script.append(f'.venv/bin/python -c "import {_extra_modules(install.group(1))}"')
    script += ['echo "twcactl=$(command -v twcactl)"', "complete -p twcactl"]
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", "TWCACTL_OPERATOR": "newcomer"}
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"twcactl={clone}/.venv/bin/twcactl" in proc.stdout  # on PATH through the activated .venv
    assert "_twcactl_completion" in proc.stdout  # completion registered for bash
    lab = home / "twca-lab"
    assert (lab / "twcactl.db").is_file() and oct((clone / "ca.pass").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (clone / "www").iterdir()) == ["cert.zip", "root.cer", "server.cer", "uca.cer"]
    from cryptography.hazmat.primitives.serialization import pkcs12

    assert (clone / "www.pfx").is_file()
    assert len(list((clone / "man").glob("*.1"))) > 50
    with pytest.raises(ValueError):  # a password was set (the block's own, not visible here)
        pkcs12.load_pkcs12((clone / "www.pfx").read_bytes(), None)


def test_man_pages_cover_every_command_and_format_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "manpages.py"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    pages = {p.stem for p in tmp_path.glob("*.1")}
    assert {"twcactl", "twcactl-cert-list", "twcactl-log-show", "twcactl-trust-install",
            "twcactl-cert-set-contact"} <= pages
    groff = shutil.which("groff")
    assert groff, "groff comes with man-db (Debian's man)"
    for name in ("twcactl", "twcactl-cert-list", "twcactl-trust-install"):
        out = subprocess.run([groff, "-man", "-Tutf8", "-ww", str(tmp_path / f"{name}.1")], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        text = re.sub(r".\x08", "", out.stdout)
        assert "NAME" in text and "SYNOPSIS" in text
    listing = re.sub(r".\x08", "", subprocess.run([groff, "-man", "-Tutf8", str(tmp_path / "twcactl-cert-list.1")],
                                                  capture_output=True, text=True, check=True).stdout)
    assert "--wide" in listing.replace("‐", "-") and "EXAMPLES" in listing


def test_serve_without_its_extra_exits_2_naming_it(tmp_path: Path) -> None:
    # the extra's modules made unimportable the way a missing distribution is (None in sys.modules)
    code = ("import sys; sys.modules.update({'starlette': None, 'uvicorn': None}); "
            "sys.argv = ['twcactl', '--json', '--home', sys.argv[1], 'serve']; "
            "from twcactl.__main__ import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ca")], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert "'serve' extra" in error["message"] and "starlette" in error["message"]
    assert "'.[serve]'" in error["hint"] and "'twcactl[serve]'" in error["hint"]


@pytest.mark.parametrize(("option", "value", "bound"), [
    ("--cn", "a" * 65, 64), ("--org", "O" * 65, 64), ("--ou", "U" * 65, 64), ("--locality", "L" * 129, 128),
    ("--state", "S" * 129, 128)])
def test_over_long_subject_values_are_usage_errors_before_any_key(tmp_path: Path, option: str, value: str,
                                                                  bound: int) -> None:
    args = {"--cn": "www.twca.com.tw", "--org": "TWCA", "--country": "TW", option: value}
    flat = [x for k, v in args.items() for x in (k, v)]
    result = invoke("--json", "csr", "new", *flat, "--key-out", tmp_path / "k", "--no-passphrase",
                    "--out", tmp_path / "r.csr")
    assert result.code == 2, result.stdout
    message = result.json()["error"]["message"]
    assert f"at most {bound}" in message and f"is {len(value)} characters" in message
    assert not (tmp_path / "k").exists() and not (tmp_path / "r.csr").exists()
    at_bound = {**args, option: value[:bound]}
    ok = invoke("--json", "csr", "new", *[x for k, v in at_bound.items() for x in (k, v)], "--key-type", "ec-p256",
                "--key-out", tmp_path / "k", "--no-passphrase", "--out", tmp_path / "r.csr", "--force")
    assert ok.code in (0, 1), ok.stdout  # at the bound: built (a policy finding may still refuse the CN)


def test_counted_nouns_are_singular_for_one() -> None:
    from twcactl.rules.words import count

    assert [count(n, "day") for n in (0, 1, 2, -1)] == ["0 days", "1 day", "2 days", "-1 day"]
    assert count(1, "entry", "entries") == "1 entry" and count(3, "entry", "entries") == "3 entries"
    import datetime as dt

    from twcactl.errors import StateError
    from twcactl.rules.windows import require_renewal_window

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(StateError) as refused:
        require_renewal_window("ab12", now + dt.timedelta(days=30), now, 1, early=False)
    assert "(1 day before" in refused.value.message


def test_log_csv_keeps_formulas_inert(tmp_path: Path) -> None:
    from tests.conftest import ACCOUNT, make_ca

    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "=HYPERLINK(1)", "--domain", "twca.com.tw").code == 0
    rows = list(csv.DictReader(io.StringIO(home.run("log", "--csv", "-").stdout)))
    assert rows and all(not v.startswith(("=", "+", "@")) for r in rows for v in r.values())


def test_ca_init_key_uri_says_the_keys_go_to_the_token(tmp_path: Path) -> None:
    result = invoke("--home", tmp_path / "ca", "ca", "init", "--key-uri", "pkcs11:token=NOPE", "--pkcs11-module",
                    tmp_path / "missing.so", "--ca-passphrase", "pass:a-token-pin-1234")
    assert result.code == 6  # no such module; the message came first
    assert "on the token pkcs11:token=NOPE (never as files)" in result.stderr
    assert str(tmp_path / "ca") not in result.stderr.split("\n")[0]
