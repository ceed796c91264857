"""Write a man page (roff, section 1) for twcactl and each of its commands, from the commands' own help.

Usage: python3 scripts/manpages.py [--out-dir man]
Then:  man -l man/twcactl-cert-list.1

Every page comes from click's own description of the command (its help text, usage, options and the
examples in its epilog), so the pages never disagree with ``--help``.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twcactl import __version__  # noqa: E402
from twcactl.cli import cli  # noqa: E402


def roff(text: str) -> str:
    """``text`` safe in roff: backslashes and hyphens escaped, no line starting with a control character."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        out.append("\\&" + line if line[:1] in (".", "'") else line)
    return "\n".join(out)


def _commands(group: click.Group, ctx: click.Context, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub_path = [*path, name]
        if sub_path[-1] != command.name and command.name in group.list_commands(ctx):
            continue  # an alias (cert suspend = cert hold): one page, under the command's own name
        found.append((sub_path, command))
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, parent=ctx, info_name=name)
            found.extend(_commands(command, sub_ctx, sub_path))
    return found


def page(path: list[str], command: click.Command, ctx: click.Context, children: list[str]) -> str:
    """The man page of ``twcactl PATH...``."""
    title = "-".join(["twcactl", *path])
    words = " ".join(["twcactl", *path])
    help_text = inspect.cleandoc(command.help or "")
    short = command.get_short_help_str(limit=200) or help_text.split("\n", 1)[0]
    lines = [f'.TH "{title.upper()}" 1 "" "twcactl {__version__}" "twcactl manual"',
             ".SH NAME", roff(f"{title} - {short}"),
             ".SH SYNOPSIS", f".B {roff(words)}", roff(" ".join(command.collect_usage_pieces(ctx)))]
    if help_text:
        lines.append(".SH DESCRIPTION")
        for i, para in enumerate(help_text.split("\n\n")):
            if i:
                lines.append(".PP")
            if para.startswith("\b"):  # click's "keep as written" paragraph
                lines += [".nf", roff(para[1:].strip("\n")), ".fi"]
            else:
                lines.append(roff(" ".join(para.split())))
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if options:
        lines.append(".SH OPTIONS")
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            lines += [".TP", f"\\fB{roff(record[0])}\\fR", roff(record[1]) or "."]
    if children:
        lines += [".SH COMMANDS"] + [f".TP\n\\fB{roff(c)}\\fR\nSee \\fB{roff(title + '-' + c)}\\fR(1)."
                                      for c in children]
    if command.epilog:
        lines += [".SH EXAMPLES", ".nf", roff(command.epilog.replace("\b\n", "").strip()), ".fi"]
    see = ["twcactl(1)"] if path else []
    if len(path) > 1:
        see.append(f"{'-'.join(['twcactl', *path[:-1]])}(1)")
    if see:
        lines += [".SH SEE ALSO", ", ".join(roff(s) for s in see)]
    return "\n".join(lines) + "\n"


def write_pages(out_dir: Path) -> list[Path]:
    """Write every page into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    root_ctx = click.Context(cli, info_name="twcactl")
    assert isinstance(cli, click.Group)
    entries = [([], cli), *_commands(cli, root_ctx, [])]
    written = []
    for path, command in entries:
        ctx = click.Context(command, info_name=" ".join(["twcactl", *path]))
        children = []
        if isinstance(command, click.Group):
            children = [p[-1] for p, _c in entries if len(p) == len(path) + 1 and p[:len(path)] == path]
        target = out_dir / f"{'-'.join(['twcactl', *path])}.1"
        target.write_text(page(path, command, ctx, children), encoding="utf-8")
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out-dir", type=Path, default=Path("man"), help="where to write the pages (default man/)")
    args = parser.parse_args()
    written = write_pages(args.out_dir)
    print(f"{len(written)} man pages written to {args.out_dir}/")


if __name__ == "__main__":
    main()
