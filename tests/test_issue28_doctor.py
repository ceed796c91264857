"""Issue 28, ``twcactl doctor``: each area checked on the real machine, a broken part turned into a ``fail``
with its fix (exit 1), an optional part missing into a ``warn`` (exit 0)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import invoke, make_ca
from tests.serve_support import free_port

REPO = Path(__file__).resolve().parent.parent


def _checks(result: Any) -> dict[str, dict[str, Any]]:
    return {f"{c['area']}/{c['name']}": c for c in result.json()["checks"]}


def test_a_sound_home_passes_and_every_area_is_reported(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    result = home.run("--json", "doctor")
    assert result.code == 0, result.stdout
    checks = _checks(result)
    assert {"python/python", "extras/serve", "extras/postgres", "tools/openssl", "tools/certutil", "cards/pcscd",
            "cards/pkcs11", "home/home", "home/store"} <= set(checks)
    assert checks["home/store"]["status"] == "ok" and "sqlite" in checks["home/store"]["detail"]
    assert checks["extras/serve"]["status"] == "ok"
    assert all(c["fix"] for c in checks.values() if c["status"] != "ok")


def test_problems_fail_with_their_fix(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    os.chmod(home.path, 0o777)  # writable by others: every command refuses it
    result = home.run("--json", "doctor", env={"TWCACTL_PKCS11_MODULE": str(tmp_path / "no-such-module.so")})
    assert result.code == 1
    checks = _checks(result)
    assert checks["home/home"]["status"] == "fail" and "chmod go-w" in checks["home/home"]["fix"]
    assert checks["home/store"]["status"] == "fail"
    assert checks["cards/pkcs11"]["status"] == "fail"
    assert result.json()["counts"]["fail"] == 3
    missing = invoke("--home", tmp_path / "none", "--json", "doctor")
    assert missing.code == 0 and _checks(missing)["home/home"]["status"] == "warn"
    assert not (tmp_path / "none").exists()  # doctor changes nothing


def test_a_missing_extra_is_a_warning_naming_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules.update({'starlette': None}); "
            "sys.argv = ['twcactl', '--json', '--home', sys.argv[1], 'doctor']; "
            "from twcactl.__main__ import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    serve = {c["name"]: c for c in json.loads(proc.stdout)["checks"] if c["area"] == "extras"}["serve"]
    assert serve["status"] == "warn" and "starlette" in serve["detail"] and "'.[serve]'" in serve["fix"]


@pytest.fixture
def health_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "health").write_text("ok\n")
    port = free_port()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()


def test_server_health(tmp_path: Path, health_server: int) -> None:
    up = invoke("--home", tmp_path / "none", "--json", "doctor", "--server", f"http://127.0.0.1:{health_server}")
    assert up.code == 0 and _checks(up)["server/serve"]["status"] == "ok"
    down = invoke("--home", tmp_path / "none", "--json", "doctor", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.code == 1 and _checks(down)["server/serve"]["status"] == "fail"
