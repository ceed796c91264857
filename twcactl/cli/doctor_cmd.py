"""``twcactl doctor``: check the environment and say what to fix (issue 28; :mod:`twcactl.authority.doctor`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.command("doctor", epilog="""\b
Examples:
  twcactl doctor
  twcactl doctor --json | jq '.checks[] | select(.status != "ok")'
  twcactl doctor --server https://ca.example.com.tw:8443    # and a running twcactl serve
""")
@click.option("--server", metavar="URL", help="Also ask this twcactl serve for /health (http:// or https://).")
@json_option
def doctor(server: str | None) -> None:
    """Check the Python and the extras, the external tools, pcscd and readers, the PKCS#11 modules, the CA home
    and its store (and a server): ok, warn (an optional part is missing) or fail, each with what to fix.

    Exit 1 when a check fails; warnings alone exit 0.
    """
    from twcactl.authority.doctor import run_checks

    ctx = app()
    checks = run_checks(home=ctx.resolved_home(), open_store=ctx.open_store,
                        pkcs11_module=os.environ.get("TWCACTL_PKCS11_MODULE") or None, server=server,
                        node_store=os.environ.get("TWCACTL_STORE") or None, store_password=ctx.store_password)
    failed = [c for c in checks if c.status == "fail"]
    doc = {"ok": not failed, "checks": [c.to_json() for c in checks],
           "counts": {s: sum(1 for c in checks if c.status == s) for s in ("ok", "warn", "fail")}}

    def human(console: Console) -> None:
        for c in checks:
            console.print(f"{c.status.upper():<5} {c.area:<7} {c.name:<22} {safe(c.detail)}")
            if c.fix:
                console.print(f"{'':<36}fix: {safe(c.fix)}")
        counts = doc["counts"]
        console.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed.")  # type: ignore[index]

    emit(doc, human)
    if failed:
        raise SystemExit(1)
