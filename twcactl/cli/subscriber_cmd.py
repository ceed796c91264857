"""``twcactl subscriber``: a certificate's holder acts on it with their password through ``serve`` (issue 27),
and the RA resets a locked or forgotten password."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, safe
from twcactl.rules.operator_auth import SUBSCRIBER_REVOKE_REASONS

if TYPE_CHECKING:
    from rich.console import Console

#: Seconds one request to the server may take.
TIMEOUT = 60.0


@click.group()
def subscriber() -> None:
    """Subscribers: suspend, resume, revoke or download your certificate with the password set at application.

    The client commands talk to `twcactl serve` (--server URL, HTTPS); `reset` is the RA's, on the CA home.
    """


def _client_options(f: Any) -> Any:
    for option in reversed([
        click.argument("serial"),
        click.option("--server", envvar="TWCACTL_SERVER", required=True, metavar="URL",
                     help="The twcactl serve base URL, e.g. https://ca.example.tw:8443 (default $TWCACTL_SERVER)."),
        click.option("--password", "password_source", metavar="SOURCE",
                     help="Your subscriber password: env:NAME, file:PATH, fd:N, stdin (default: prompt)."),
        click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                     help="Trust this CA certificate for the server's TLS (default: the system's)."),
    ]):
        f = option(f)
    return f


def _post(server: str, serial: str, action: str, body: dict[str, Any], ca_file: Path | None) -> tuple[bytes, str]:
    """POST the JSON ``body`` to the subscriber API; the answer's bytes and content type.

    Raises:
        TwcaError: the server's error document, as the same exit code; DeviceError (exit 6) when unreachable.
    """
    from twcactl.errors import DeviceError, error_for_code

    url = f"{server.rstrip('/')}/subscriber/{serial}/{action}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            raise DeviceError(f"the server answered HTTP {exc.code} without an error document.") from exc
        raise error_for_code(int(error["code"]), str(error["message"])) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeviceError(f"cannot reach {server}: {exc}.") from exc


def _password(source: str | None, *, option: str = "--password", what: str = "subscriber password",
              new: bool = False) -> str:
    from twcactl.cli.secrets import get_secret

    return get_secret(source, option=option, what=what, new=new)


def _act(action: str, server: str, serial: str, password_source: str | None, ca_file: Path | None,
         reason: str | None = None) -> None:
    body: dict[str, Any] = {"password": _password(password_source)}
    if reason is not None:
        body["reason"] = reason
    data, _type = _post(server, serial, action, body, ca_file)
    doc = json.loads(data)

    def human(console: Console) -> None:
        console.print(f"{safe(doc['serial'])}: {safe(doc['state'])}")

    emit(doc, human)


@subscriber.command("suspend", epilog="""\b
Example:
  twcactl subscriber suspend --server https://ca.example.tw:8443 --password env:MY_PW 1f2e3d
""")
@_client_options
@json_option
def suspend(serial: str, server: str, password_source: str | None, ca_file: Path | None) -> None:
    """Suspend your certificate (certificateHold on the CRL; OCSP says revoked until you resume it)."""
    _act("suspend", server, serial, password_source, ca_file)


@subscriber.command("resume", epilog="""\b
Example:
  twcactl subscriber resume --server https://ca.example.tw:8443 --password env:MY_PW 1f2e3d
""")
@_client_options
@json_option
def resume(serial: str, server: str, password_source: str | None, ca_file: Path | None) -> None:
    """Resume your suspended certificate."""
    _act("resume", server, serial, password_source, ca_file)


@subscriber.command("revoke", epilog="""\b
Example:
  twcactl subscriber revoke --server https://ca.example.tw:8443 --reason keyCompromise 1f2e3d
""")
@_client_options
@click.option("--reason", required=True, type=click.Choice(SUBSCRIBER_REVOKE_REASONS))
@json_option
def revoke(serial: str, server: str, password_source: str | None, ca_file: Path | None, reason: str) -> None:
    """Revoke your certificate for good (keyCompromise, superseded or cessationOfOperation)."""
    _act("revoke", server, serial, password_source, ca_file, reason)


@subscriber.command("download", epilog="""\b
Example:
  twcactl subscriber download --server https://ca.example.tw:8443 --out cert.zip 1f2e3d
""")
@_client_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Where cert.zip goes.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@json_option
def download(serial: str, server: str, password_source: str | None, ca_file: Path | None, out: Path,
             force: bool) -> None:
    """Download your certificate's bundle (cert.zip: root.cer, uca.cer, server.cer)."""
    from twcactl.fsutil import ensure_free, write_file

    ensure_free([out], force=force)
    data, _type = _post(server, serial, "download", {"password": _password(password_source)}, ca_file)
    write_file(out, data, force=force)
    emit({"serial": serial, "file": str(out), "bytes": len(data)}, lambda c: c.print(f"wrote {safe(str(out))}"))


@subscriber.command("passwd", epilog="""\b
Example:
  twcactl subscriber passwd --server https://ca.example.tw:8443 --password env:OLD --new-password env:NEW 1f2e3d
""")
@_client_options
@click.option("--new-password", "new_source", metavar="SOURCE", help="The new password (default: prompt twice).")
@json_option
def passwd(serial: str, server: str, password_source: str | None, ca_file: Path | None, new_source: str | None) -> None:
    """Change your subscriber password."""
    body = {"password": _password(password_source),
            "new_password": _password(new_source, option="--new-password", what="new subscriber password", new=True)}
    data, _type = _post(server, serial, "passwd", body, ca_file)
    emit(json.loads(data), lambda c: c.print(f"{safe(serial)}: password changed"))


@subscriber.command("reset", epilog="""\b
Examples:
  twcactl subscriber reset 1f2e3d                              # unlock after 5 wrong tries
  twcactl subscriber reset 1f2e3d --new-password env:NEW_PW    # the holder forgot it
""")
@click.argument("serial")
@click.option("--new-password", "new_source", metavar="SOURCE", help="Set this password too.")
@json_option
def reset(serial: str, new_source: str | None) -> None:
    """Unlock a subscriber password, or set a new one (managers and RA operators; logged)."""
    from twcactl.authority.subscribers import reset as reset_password

    new = _password(new_source, option="--new-password", what="new subscriber password") if new_source else None
    store = app().open_store()
    try:
        reset_password(store, serial.lower(), operator=current_operator(), new_password=new)
    finally:
        store.close()
    emit({"serial": serial.lower(), "reset": True}, lambda c: c.print(f"{safe(serial)}: subscriber password reset"))
