"""Rendering: results on stdout (rich or one JSON document), everything else on stderr.

Consoles are created with ``markup=False`` and ``highlight=False``:
certificate subjects are untrusted text, and ``CN=[red]x`` must print as
written (architecture.md, "Output").  Control characters are escaped by
:func:`safe` before they reach a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twcactl.cli.context import app

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.errors import TwcaError


def safe(text: object) -> str:
    """``text`` with control and bidi-override characters escaped (``\\x1b``, ``\\u202e``)."""
    out: list[str] = []
    for ch in str(text):
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def stdout_console() -> Console:
    """A rich console on stdout that never interprets markup."""
    from rich.console import Console

    # Not a terminal: no wrapping, so scripts and pipes get whole lines.
    width = None if sys.stdout.isatty() else 200
    return Console(markup=False, highlight=False, emoji=False, soft_wrap=True, width=width)


def emit(doc: dict[str, Any], human: Callable[[Console], None]) -> None:
    """Print the command's result: ``doc`` under ``--json``, else ``human(console)``."""
    if app().json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        human(stdout_console())


def note(message: str) -> None:
    """A progress or informational line on stderr (silenced by ``--quiet``)."""
    if not app().quiet:
        sys.stderr.write(message + "\n")


def error_document(err: TwcaError) -> dict[str, Any]:
    """The contract's error document (cli-contract.md, "An error").

    ``{"error": {"code", "kind", "message", "hint"?, ...err.error_fields()}, ...err.document_fields()}``:
    e.g. ``error.pin`` for a refused PIN, ``findings`` beside ``error`` when a policy refused.
    """
    body: dict[str, Any] = {"code": err.exit_code, "kind": err.kind, "message": err.message}
    if err.hint:
        body["hint"] = err.hint
    body.update(err.error_fields())
    doc: dict[str, Any] = {"error": body}
    doc.update(err.document_fields())
    return doc


def print_error(err: TwcaError, *, as_json: bool) -> None:
    """Report ``err``: the error document on stdout under ``--json``, else one line (and a hint) on stderr."""
    _clear_bar()  # a batch refused half-way: its progress bar goes before the error line
    if as_json:
        sys.stdout.write(json.dumps(error_document(err), indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    sys.stderr.write(f"error: {safe(err.message)}\n")
    if err.hint:
        sys.stderr.write(f"hint: {safe(err.hint)}\n")


def files_document(files: Any) -> dict[str, list[str]]:
    """The contract's ``files`` object of a committed change (``{"written": [...], "pending": [...]}``) and,
    when some are pending, a warning on stderr naming ``ca check`` as the repair (even under ``--quiet``:
    the change itself is committed, and the exit code stays 0; issue 13).

    Args:
        files: a :class:`twcactl.authority.lifecycle.FilesReport`.
    """
    doc: dict[str, list[str]] = files.to_json()
    if doc["pending"]:
        sys.stderr.write(f"warning: the change is committed, but {len(doc['pending'])} derived file(s) could not "
                         f"be written: {', '.join(safe(p) for p in doc['pending'])}\n"
                         "hint: run `twcactl ca check` to write them from the database\n")
    return doc


def progress_bar(total: int, *, minimum: int = 2) -> Callable[[str, int, int], None] | None:
    """A progress bar on stderr for a batch of ``total`` items, or None when none is shown.

    Shown only when stderr is a terminal, ``--quiet`` is off and the batch has at least ``minimum``
    items (issue 18); a script's stderr (a pipe or a file) never gets one.  The returned callable takes
    ``(stage, done, total)``, redraws one line at most ten times a second, and clears the line when
    a stage is done.  Plain text, so a batch does not load rich.
    """
    import time

    if total < minimum or app().quiet or not sys.stderr.isatty():
        return None
    last = [0.0]

    def update(stage: str, done: int, of: int) -> None:
        now = time.monotonic()
        finished = done >= of
        if not finished and now - last[0] < 0.1:
            return
        last[0] = now
        width = 30
        filled = width * done // max(of, 1)
        sys.stderr.write(f"\r{stage:8} [{'#' * filled}{'.' * (width - filled)}] {done}/{of}")
        _bar_on_screen[:] = [True]
        if finished:  # each stage clears its line: nothing is left behind a refused batch either
            _clear_bar()
        sys.stderr.flush()

    return update


#: Whether a progress bar's line is on stderr now (an error clears it before its own line).
_bar_on_screen: list[bool] = [False]


def _clear_bar() -> None:
    if _bar_on_screen[0]:
        sys.stderr.write("\r" + " " * 60 + "\r")
        _bar_on_screen[:] = [False]


# --- Tables that fit a terminal (issue 28) -------------------------------------------------------------------------

def wide_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--wide``: every column, whole serials, no wrapping (a terminal's rows may then run past its edge)."""
    import click

    return click.option("--wide", is_flag=True, help="Every column and whole serials, one line per row "
                        "(default on a terminal: short serials and the columns that fit).")(func)


class Column:
    """One table column: its header and how it behaves on a narrow terminal (issue 28).

    ``keep`` columns are never dropped nor cut: they wrap (fold) when the terminal is too narrow; the others are
    dropped, last one first, until the table fits (CN, status, expiry and account are read first).  A ``rest``
    column (a log entry's summary) takes whatever width is left, at least ``min_width``, and is the one cell
    shortened with an ellipsis, so each row stays one line (the whole text: --wide, --verbose, ``log show``).
    """

    def __init__(self, header: str, *, keep: bool = False, wrap: bool = False, rest: bool = False,
                 min_width: int = 20) -> None:
        self.header = header
        self.keep = keep or rest
        self.wrap = wrap
        self.rest = rest
        self.min_width = min_width


def fitted_columns(columns: list[Column], rows: list[list[str]], width: int) -> list[int]:
    """The indexes of the columns to show in ``width`` characters: every ``keep`` column and, in their order, the
    others while the natural widths (two spaces between columns; a ``rest`` column counted at its ``min_width``)
    fit; a dropped column drops every later optional one too, so what is shown never depends on one long cell
    in the middle."""
    natural = _natural_widths(columns, rows)
    chosen = [i for i, c in enumerate(columns) if c.keep]
    for i, c in enumerate(columns):
        if c.keep:
            continue
        trial = sorted(chosen + [i])
        if _total(columns, natural, trial) > width:
            break
        chosen = trial
    return chosen


def _natural_widths(columns: list[Column], rows: list[list[str]]) -> list[int]:
    return [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]


def _total(columns: list[Column], natural: list[int], indexes: list[int]) -> int:
    return (sum(min(natural[i], columns[i].min_width) if columns[i].rest else natural[i] for i in indexes)
            + 2 * max(len(indexes) - 1, 0))


def compact_output(wide: bool) -> bool:
    """Whether a table is fitted to a terminal: stdout is one, and neither --wide nor --json was given."""
    return not wide and not app().json and sys.stdout.isatty()


def serial_labels(store: Any, serials: list[str], *, wide: bool) -> dict[str, str]:
    """How a table prints each serial: a unique prefix on a terminal (``authority.lookup.short_serials``,
    accepted back wherever a serial is), whole with --wide, --json or in a pipe (issue 28)."""
    from twcactl.authority.lookup import short_serials

    if not compact_output(wide):
        return {s: s for s in serials}
    return short_serials(store, serials)


def print_table(columns: list[Column], rows: list[list[str]], *, wide: bool, footer: str | None = None) -> None:
    """Print ``rows`` under ``columns`` on stdout.

    On a terminal without ``wide`` (:func:`compact_output`): the columns that fit the terminal
    (:func:`fitted_columns`), ``keep`` columns folded rather than cut, and a note on stderr naming the hidden
    ones and ``--wide``.  With ``wide``, or when stdout is not a terminal (a script, a pipe): every column, whole
    lines.  Cells are :func:`safe` already.
    """
    from rich.console import Console
    from rich.table import Table

    compact = compact_output(wide)
    console = stdout_console()
    natural = _natural_widths(columns, rows)
    if compact:
        shown = fitted_columns(columns, rows, console.width)
    else:
        shown = list(range(len(columns)))
        console = Console(markup=False, highlight=False, emoji=False, soft_wrap=True,
                          width=max(sum(natural) + 2 * len(natural), console.width, 80))
    table = Table(box=None, pad_edge=False)
    for i in shown:
        c = columns[i]
        if compact and c.rest:
            left = console.width - _total(columns, natural, [j for j in shown if j != i]) - 2
            table.add_column(c.header, no_wrap=True, overflow="ellipsis", max_width=max(left, c.min_width))
        elif compact and (c.keep or c.wrap):
            table.add_column(c.header, overflow="fold")
        else:
            table.add_column(c.header, no_wrap=True, overflow="ignore")
    for r in rows:
        table.add_row(*(r[i] for i in shown))
    console.print(table)
    if footer:
        console.print(footer)
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    if hidden:
        note(f"(hidden to fit: {', '.join(hidden)}; --wide shows all)")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text
