"""A worker process for the concurrency test: issue and revoke through the CLI entry point, in-process.

Usage: python -m tests.reliability_worker HOME ACCOUNT CSR_DIR OUT_FILE
Each CSR in CSR_DIR is issued and then revoked; the serials go to OUT_FILE as JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from twcactl.cli import run


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            run(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def main() -> None:
    home, account, csr_dir, out_file = sys.argv[1:5]
    issued: list[str] = []
    failures: list[str] = []
    for csr in sorted(Path(csr_dir).iterdir()):
        code, out = cli("--home", home, "--json", "cert", "issue", str(csr), "--account", account)
        if code != 0:
            failures.append(f"issue {csr.name}: {code} {out}")
            continue
        serial = json.loads(out)["certificates"][0]["serial"]
        issued.append(serial)
        code, out = cli("--home", home, "--json", "cert", "revoke", serial, "--reason", "superseded")
        if code != 0:
            failures.append(f"revoke {serial}: {code} {out}")
    Path(out_file).write_text(json.dumps({"issued": issued, "failures": failures}))


if __name__ == "__main__":
    main()
