"""The click layer: global options, lazy sub-command loading, and the one place
where errors become exit codes (cli-contract.md, "Exit status").

Command modules import only click and these helpers at import time; the
core (cryptography, sqlite3, rich) loads inside the command that needs it,
so ``twcactl --help`` stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from twcactl import __version__
from twcactl.cli.context import AppContext, app, store_password_option

# name -> "module:attribute" of each command group, loaded on first use
_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ca": ("twcactl.cli.ca_cmd:ca", "Create and inspect the local CA."),
    "account": ("twcactl.cli.account_cmd:account", "RA accounts: organisation, agreed domains, certificate-years."),
    "csr": ("twcactl.cli.csr_cmd:csr", "Make, read and check certificate signing requests."),
    "cert": ("twcactl.cli.cert_cmd:cert", "Issue, renew, revoke, suspend, find and export certificates."),
    "pfx": ("twcactl.cli.pfx_cmd:pfx", "PKCS#12 (PFX) files: export, inspect, split, change the password."),
    "chain": ("twcactl.cli.chain_cmd:chain", "Build and verify certificate chains and cert.zip bundles."),
    "card": ("twcactl.cli.card_cmd:card", "PKCS#11 smart cards: enrol, renew, PINs, register certificates."),
    "crl": ("twcactl.cli.crl_cmd:crl", "Regenerate the CRL (also done after every revoke, hold, release)."),
    "ocsp": ("twcactl.cli.ocsp_cmd:ocsp", "Signed OCSP responses from the records."),
    "log": ("twcactl.cli.log_cmd:log", "The activity log, newest first; verify its hash chain."),
    "operator": ("twcactl.cli.operator_cmd:operator", "Operators and roles: manager or auditor."),
    "serve": ("twcactl.cli.serve_cmd:serve", "Serve ACME, OCSP, CRLs and CA certificates over HTTP."),
    "acme": ("twcactl.cli.acme_cmd:acme", "ACME: EAB keys for clients, ACME accounts, deactivation."),
    "notify": ("twcactl.cli.notify_cmd:notify", "Mail technical contacts: renewal reminders before expiry."),
    "store": ("twcactl.cli.store_cmd:store", "Where the records live: SQLite or PostgreSQL; migrate between them."),
    "resident": ("twcactl.cli.resident_cmd:resident", "A warm process for the home: scripts' commands skip start-up."),
    "trust": ("twcactl.cli.trust_cmd:trust", "Put the CA's root into the system, NSS and Java trust stores."),
    "doctor": ("twcactl.cli.doctor_cmd:doctor", "Check the environment (extras, tools, cards, home, store) and say "
               "what to fix."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported only when invoked or listed."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports none of them.
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=_SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  twcactl --home ./myca ca init --no-passphrase
  twcactl csr new --cn www.twca.com.tw --org TWCA --country TW --state Taiwan \\
      --locality Taipei --key-out www.key --no-passphrase --out www.csr
  twcactl --home ./myca cert issue www.csr --account 70759028-01
""",
)
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), envvar="TWCACTL_HOME",
              help="The CA home directory (default $TWCACTL_HOME, else the user data directory).")
@click.option("--json", "json_", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing on stderr but errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors (exit 70) only.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="How long to wait for a busy CA home before giving up (exit 75).")
@store_password_option
@click.version_option(__version__, "--version", prog_name="twcactl", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, json_: bool, quiet: bool, debug: bool, lock_timeout: float) -> None:
    """twcactl: the command-line PKI toolkit for RA operators, sysadmins and card holders.

    CSRs with domain-policy checks, a local file-based CA with accounts and
    certificate-years, certificate bundles and PFX files.
    """
    obj = ctx.ensure_object(AppContext)
    obj.home = home
    obj.json = obj.json or json_
    obj.quiet = quiet
    obj.debug = debug
    obj.lock_timeout = lock_timeout


def _argv_wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def run(argv: list[str] | None = None) -> None:
    """Run twcactl and exit with the contract's status; the only place errors become exit codes."""
    from twcactl.errors import InternalError, TwcaError, UsageError

    args = list(sys.argv[1:] if argv is None else argv)
    obj = AppContext(json=_argv_wants_json(args))
    code = 0
    try:
        cli.main(args=args, prog_name="twcactl", standalone_mode=False, obj=obj)
    except TwcaError as err:
        code = _report(err, obj)
    except click.exceptions.NoArgsIsHelpError as exc:
        # click >= 8.2 raises this for a bare group: show the help, as `twcactl` alone should
        sys.stderr.write(exc.format_message() if hasattr(exc, "format_message") else "")
        code = 2
    except click.BadParameter as exc:
        # a file argument that is a directory or unreadable is bad input (exit 3), not a usage error
        from twcactl.errors import InputError

        if (exc.param is not None and isinstance(exc.param.type, click.Path)
                and not isinstance(exc, click.MissingParameter)):
            code = _report(InputError(exc.format_message()), obj)
        else:
            code = _report(UsageError(exc.format_message(), hint=_usage_hint(exc)), obj)
    except click.UsageError as exc:
        code = _report(UsageError(exc.format_message(), hint=_usage_hint(exc)), obj)
    except click.ClickException as exc:
        code = _report(UsageError(exc.format_message()), obj)
    except click.exceptions.Abort:
        sys.stderr.write("aborted.\n")
        code = 130
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted.\n")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if obj.debug:
            import traceback

            traceback.print_exc()
        code = _report(InternalError(f"internal error: {type(exc).__name__}: {exc}",
                                     hint="run again with --debug and report the traceback"), obj)
    _release_token_sessions()
    sys.exit(code)


def _release_token_sessions() -> None:
    """Log out of the token sessions a command opened for CA keys on a PKCS#11 token (issue 14)."""
    token_keys = sys.modules.get("twcactl.authority.token_keys")
    if token_keys is not None:
        token_keys.release_token_sessions()


def _usage_hint(exc: click.UsageError) -> str | None:
    return f"see: {exc.ctx.command_path} --help" if exc.ctx is not None else None


def _report(err: Any, obj: AppContext) -> int:
    from twcactl.cli.output import print_error

    if obj.debug and err.exit_code == 70 and err.__cause__ is not None:  # --debug: internal errors only
        import traceback

        traceback.print_exception(err.__cause__)
    print_error(err, as_json=obj.json)
    return int(err.exit_code)


__all__ = ["cli", "run", "app"]
