"""``twcactl resident``: a warm process per home that scripts' commands are forwarded to (issue 29).

The server and its protocol are :mod:`twcactl.cli.resident` and :mod:`twcactl.forwarder`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, json_option
from twcactl.cli.output import emit, safe

if TYPE_CHECKING:
    from rich.console import Console


@click.group(epilog="""\b
Examples:
  twcactl --home ./myca resident start        # then every twcactl command for ./myca runs warm
  for f in csrs/*.csr; do twcactl --home ./myca cert issue "$f" --account 70759028-01 --json; done
  twcactl --home ./myca resident status --json
  twcactl --home ./myca resident stop
""")
def resident() -> None:
    """A resident process for the home: commands skip Python's start-up.

    While it runs, each twcactl command for the home (named by --home or
    $TWCACTL_HOME) is handed to it with its arguments, working directory,
    environment and open files, runs in a fresh process forked from it, and
    exits with the same status and output as when run alone.  Without it,
    or with TWCACTL_NO_RESIDENT set, commands run as before.  Only the same
    user can use it; restart it after upgrading twcactl (another version is
    never served).
    """


def _show(doc: dict[str, Any]) -> None:
    def human(console: Console) -> None:
        if not doc.get("running"):
            console.print("no resident process for this home")
            return
        console.print(f"resident pid {doc['pid']} for {safe(doc['home'])}: {doc['commands']} commands "
                      f"since {doc['started']} (socket {safe(doc['socket'])})")

    emit(doc, human)


@resident.command("start")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=900.0, show_default=True, metavar="SECONDS",
              help="Stop after this long without a command (0: never).")
@click.option("--foreground", is_flag=True, help="Stay in the foreground (for systemd or a container).")
@json_option
def start_cmd(idle_timeout: float, foreground: bool) -> None:
    """Start the resident process for the home (detached unless --foreground)."""
    from twcactl.cli import resident as impl

    home = app().resolved_home()
    if foreground:
        impl.serve_forever(home, idle_timeout=idle_timeout,
                           ready=lambda info: click.echo(f"resident pid {info.pid} serving {home}", err=True))
        return
    _show({"running": True, **impl.start(home, idle_timeout=idle_timeout)})


@resident.command("status")
@json_option
def status_cmd() -> None:
    """Whether a resident process serves the home (exit 0 either way; see "running")."""
    from twcactl.cli import resident as impl

    answer = impl.status(app().resolved_home())
    _show({"running": answer is not None, **(answer or {})})


@resident.command("stop")
@json_option
def stop_cmd() -> None:
    """Stop the home's resident process (commands in flight finish)."""
    from twcactl.cli import resident as impl

    answer = impl.request(app().resolved_home(), "stop")
    emit({"stopped": answer is not None},
         lambda console: console.print("stopped" if answer is not None else "no resident process for this home"))
