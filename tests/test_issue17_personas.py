"""Issue 17: the persona pages (docs/persona-*.md) are a day's work in commands that run as written.

Every ```sh block of a page runs, in page order, in a fresh environment: a temporary directory as HOME
and TWCACTL_HOME, the venv's bin first on PATH, the page's own working directory.  Each command must
exit 0, or the code its line states in a trailing comment (``# exit 1``).  The card holder's page
runs against a SoftHSM2 token the test prepares (label ``TWCA-CARD``, the manuals' default PIN
12345678, SO PIN 87654321) in its own token directory; run this file under
``flock /tmp/card-tests.lock`` like the card tests (the whole suite is).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("persona-sysadmin.md", "persona-ra-operator.md", "persona-ci-pipeline.md", "persona-card-holder.md")
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"#\s*exit\s+(\d+)\s*$")
CARD_LABEL, CARD_PIN, CARD_SO_PIN = "TWCA-CARD", "12345678", "87654321"
SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def commands(markdown: str) -> list[tuple[str, int]]:
    """``(command, expected exit code)`` for every command of every ```sh block, in order.

    A line ending in ``\\`` continues on the next; ``#`` lines and blank lines are not commands; a trailing
    ``# exit N`` states the expected code (default 0).
    """
    out: list[tuple[str, int]] = []
    for block in BLOCK.findall(markdown):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = pending + line
            pending = ""
            match = EXPECT.search(command)
            out.append((command, int(match.group(1)) if match else 0))
        assert not pending, f"a block ends inside a continued line: {pending!r}"
    return out


def script(steps: list[tuple[str, int]]) -> str:
    """One bash script running ``steps`` in one shell (exports and cd carry over), stopping at the first
    command whose exit code is not the expected one, naming it on stderr."""
    lines = ["set +e"]
    for number, (command, expected) in enumerate(steps, 1):
        lines.append(command)
        lines.append(f"rc=$?; if [ $rc -ne {expected} ]; then echo \"STEP {number} exited $rc, expected {expected}: \""
                     f"{shlex.quote(command)} >&2; exit 99; fi")
    lines.append("echo ALL-STEPS-PASSED >&2")
    return "\n".join(lines) + "\n"


def _environment(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home), "TWCACTL_HOME": str(tmp_path / "ca-home"), "USER": "root", "LANG": "C.UTF-8",
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(tmp_path),
        # the code under test, when it is not the installed checkout (a worktree run with PYTHONPATH)
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}),
    }


def _softhsm(tmp_path: Path, env: dict[str, str]) -> None:
    module = next((m for m in SOFTHSM_MODULES if os.path.isfile(m)), None)
    if module is None:
        pytest.fail("SoftHSM2 is not installed; scripts/test.sh installs softhsm2")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env.update(SOFTHSM2_CONF=str(conf), TWCACTL_PKCS11_MODULE=module)
    proc = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", CARD_LABEL, "--pin", CARD_PIN,
                           "--so-pin", CARD_SO_PIN], capture_output=True, env={**os.environ, **env}, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_parser_reads_continuations_and_expected_codes() -> None:
    page = "text\n```sh\n# a comment\ntwcactl a \\\n  --b c\ntwcactl d   # exit 5\n\n```\n```text\nnot run\n```\n"
    assert commands(page) == [("twcactl a    --b c", 0), ("twcactl d   # exit 5", 5)]
    assert "exit 99" in script([("false", 0)])


def test_a_failing_step_fails_the_page(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "-c", script([("true", 0), ("false", 0)])], capture_output=True, text=True)
    assert proc.returncode == 99 and "STEP 2" in proc.stderr


@pytest.mark.parametrize("page", PAGES)
def test_every_command_of_the_page_runs(page: str, tmp_path: Path) -> None:
    steps = commands((DOCS / page).read_text("utf-8"))
    assert len(steps) >= 8, f"{page} should hold a day's work"
    env = _environment(tmp_path)
    if page == "persona-card-holder.md":
        _softhsm(tmp_path, env)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(["bash", "-c", script(steps)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ALL-STEPS-PASSED" in proc.stderr
