"""``twcactl doctor``: one command that checks the environment and says what to fix (issue 28).

Each check is independent and read-only: the optional extras, the external tools the workflows call
(openssl, certutil, keytool, update-ca-certificates), pcscd and its readers, the PKCS#11 modules, the CA
home (its ownership, database and schema) and its store (SQLite or a reachable PostgreSQL), and optionally
a running ``twcactl serve`` (its ``/health``).  A check is ``ok``, ``warn`` (something optional is missing:
the feature that needs it will not work) or ``fail`` (something the rest relies on is broken); each
``warn`` and ``fail`` carries the fix.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twcactl.errors import TwcaError

__all__ = ["Check", "EXTRAS", "TOOLS", "run_checks"]

#: Each optional extra: the modules it brings and what needs it.
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "serve": (("starlette", "uvicorn", "acme", "josepy", "dns"), "twcactl serve"),
    "postgres": (("psycopg",), "records on PostgreSQL (--store postgresql://...)"),
    "card": (("smartcard",), "PC/SC readers (card readers)"),
}
#: External tools: (program, Debian package, what uses it).
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("openssl", "openssl", "checking bundles as the manuals do"),
    ("certutil", "libnss3-tools", "trust install --nss"),
    ("keytool", "default-jre-headless", "trust install --java"),
    ("update-ca-certificates", "ca-certificates", "trust install --system"),
)
#: Where pcscd listens (Debian's pcsc-lite).
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` is ``ok``, ``warn`` or ``fail``; ``fix`` says what to do (None when ok)."""

    area: str
    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"area", "name", "status", "detail", "fix"}``."""
        return {"area": self.area, "name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def run_checks(*, home: Path, open_store: Callable[[], Any], pkcs11_module: str | None,
               server: str | None = None, module_candidates: Sequence[str] | None = None,
               node_store: str | None = None, store_password: Callable[[], str | None] | None = None) -> list[Check]:
    """Every check, in the order they are shown.

    Args:
        home: the CA home the commands would use (``--home`` / ``$TWCACTL_HOME`` / the default).
        open_store: opens that home as every command does (the CLI's, with its store password and timeout).
        pkcs11_module: ``$TWCACTL_PKCS11_MODULE`` (or None): the module card commands would load first.
        server: the base URL of a ``twcactl serve`` to ask for ``/health`` (None: not checked).
        module_candidates: the usual PKCS#11 paths (default: the adapter's own list).
        node_store: ``$TWCACTL_STORE``: with no home yet, the database the first command would join is
            connected to (and nothing is made).
        store_password: its password, asked only then.

    Returns:
        The checks (never raises for what it finds).
    """
    checks = [_python(), *_extras(), *_tools(), _pcscd(), *_readers(), _pkcs11(pkcs11_module, module_candidates)]
    checks += _home(home, open_store, node_store, store_password)
    if server:
        checks.append(_server(server))
    return checks


def _python() -> Check:
    from twcactl import __version__

    ok = sys.version_info >= (3, 11)
    return Check("python", "python", "ok" if ok else "fail",
                 f"twcactl {__version__} on Python {sys.version.split()[0]} ({sys.executable})",
                 None if ok else "twcactl needs Python 3.11 or later")


def _extras() -> list[Check]:
    out = []
    for extra, (modules, purpose) in EXTRAS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            out.append(Check("extras", extra, "warn", f"not installed (missing {', '.join(missing)}): {purpose}",
                             f"from a checkout: .venv/bin/pip install -e '.[{extra}]'; "
                             f"from an index: pip install 'twcactl[{extra}]'"))
        else:
            out.append(Check("extras", extra, "ok", f"installed: {purpose}"))
    return out


def _tools() -> list[Check]:
    out = []
    for program, package, purpose in TOOLS:
        path = shutil.which(program) or (f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
        out.append(Check("tools", program, "ok", f"{path} ({purpose})") if path else
                   Check("tools", program, "warn", f"not found: needed for {purpose}", f"apt-get install {package}"))
    return out


def _pcscd() -> Check:
    if PCSCD_SOCKET.exists():
        return Check("cards", "pcscd", "ok", f"listening on {PCSCD_SOCKET}")
    return Check("cards", "pcscd", "warn", "pcscd is not running: smart-card readers (PC/SC) cannot be used "
                 "(PKCS#11 software tokens such as SoftHSM2 still work)",
                 "apt-get install pcscd && systemctl start pcscd.socket")


def _readers() -> list[Check]:
    if importlib.util.find_spec("smartcard") is None or not PCSCD_SOCKET.exists():
        return []
    from twcactl.backends.pcsc import list_readers

    try:
        readers = list_readers()
    except TwcaError as exc:
        return [Check("cards", "readers", "warn", exc.message, exc.hint)]
    if not readers:
        return [Check("cards", "readers", "warn", "no smart-card reader is connected", "plug a reader in")]
    return [Check("cards", "readers", "ok", ", ".join(r.name for r in readers))]


def _pkcs11(explicit: str | None, candidates: Sequence[str] | None) -> Check:
    from twcactl.backends.p11 import MODULE_CANDIDATES

    if explicit:
        if Path(explicit).is_file():
            return Check("cards", "pkcs11", "ok", f"TWCACTL_PKCS11_MODULE={explicit}")
        return Check("cards", "pkcs11", "fail", f"TWCACTL_PKCS11_MODULE={explicit} does not exist",
                     "point TWCACTL_PKCS11_MODULE at an installed module, or unset it")
    found = [p for p in (candidates if candidates is not None else MODULE_CANDIDATES) if Path(p).is_file()]
    if found:
        return Check("cards", "pkcs11", "ok", "modules: " + ", ".join(found))
    return Check("cards", "pkcs11", "warn", "no PKCS#11 module in the usual OpenSC, SoftHSM2 or opencryptoki paths",
                 "apt-get install opensc (cards) or softhsm2 (a software token)")


def _home(home: Path, open_store: Callable[[], Any], node_store: str | None = None,
          store_password: Callable[[], str | None] | None = None) -> list[Check]:
    from twcactl.store import Store
    from twcactl.store.home import HomeLayout

    if not Store.exists(home) and node_store:
        return [_node_to_be(home, node_store, store_password)]
    if not Store.exists(home):
        return [Check("home", "home", "warn", f"no CA home at {home}",
                      "create one: twcactl ca init (or give --home DIR / TWCACTL_HOME; with TWCACTL_STORE an "
                      "empty home joins that database)")]
    problems = HomeLayout(home).ownership_problems()
    out = [Check("home", "home", "fail", f"{home}: {problems[0]}",
                 "chown it to yourself and chmod go-w it (twcactl ca check lists every problem)") if problems
           else Check("home", "home", "ok", str(home))]
    try:
        store = open_store()
    except TwcaError as exc:
        out.append(Check("home", "store", "fail", exc.message, exc.hint))
        return out
    try:
        engine = "postgresql" if store.shared else "sqlite"
        where = store.store_url if store.shared else str(store.db_path)
        out.append(Check("home", "store", "ok", f"{engine} {where}, schema {store.schema_version()}, "
                         f"{len(store.cas.all())} CA certificate(s)"))
    finally:
        store.close()
    return out


def _node_to_be(home: Path, url: str, store_password: Callable[[], str | None] | None) -> Check:
    """No home yet, ``$TWCACTL_STORE`` set: can the first command join that database?  Connects, changes nothing."""
    from twcactl.rules.settings import store_url_problem
    from twcactl.store.postgres import PostgresEngine, redact

    problem = store_url_problem(url)
    if problem is not None:
        return Check("home", "store", "fail", f"TWCACTL_STORE {problem}", "e.g. postgresql://twca@db.example.tw/twca")
    try:
        engine = PostgresEngine.connect(url, password=store_password() if store_password else None,
                                        lock_timeout=10)
    except TwcaError as exc:
        return Check("home", "store", "fail", exc.message, exc.hint)
    try:
        holds_ca = engine.load_meta() is not None
    finally:
        engine.close()
    if not holds_ca:
        return Check("home", "store", "fail", f"{redact(url)} holds no CA",
                     "create one: twcactl ca init --store URL (or point TWCACTL_STORE at the CA's database)")
    return Check("home", "store", "ok", f"{home} will join {redact(url)} on the first command (TWCACTL_STORE)")


def _server(url: str) -> Check:
    import ssl
    import urllib.error
    import urllib.request

    health = url.rstrip("/") + "/health"
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(health, timeout=10, context=context) as reply:  # noqa: S310 (http/https only)
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("server", "serve", "fail", f"{health}: {getattr(exc, 'reason', exc)}",
                     "start it (twcactl serve), or check the URL; for https, trust the CA (twcactl trust install)")
    if status == 200:
        return Check("server", "serve", "ok", f"{health}: 200")
    return Check("server", "serve", "fail", f"{health}: HTTP {status}", "see the server's log (stderr)")
