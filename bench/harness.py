"""Timing, figures and the results table of the twcactl benchmark (issue 7).

Every command is timed as a whole process (fork, exec, interpreter start,
work, exit), because that is what an operator or a script waits for.

Peak memory is measured per command through ``/usr/bin/time -f %M``: the
kernel's maximum resident set size of a child survives ``exec`` and starts
from its parent's size at the fork, so a child forked straight from this
(large) Python process would report at least this process's size.  Forked
from the small ``time`` binary instead, it reports its own.  Only the runs
that feed a memory figure go through ``time``; it adds about a millisecond,
to twcactl and its peer alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class BenchError(RuntimeError):
    """A benchmark step failed (a command exited non-zero, an input could not be built)."""


@dataclass(frozen=True)
class Sample:
    """One timed run of one process.

    ``cpu_seconds`` is user plus system time of the process and the children
    it waited for: unlike wall time, it barely moves when other work shares
    the machine.  ``max_rss_kb`` is only the process's own with ``rss=True``.
    """

    seconds: float
    cpu_seconds: float
    max_rss_kb: int
    returncode: int
    stdout: bytes
    stderr: bytes


TIME_BIN = Path("/usr/bin/time")


def run_timed(cmd: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, check: bool = True, rss: bool = False) -> Sample:
    """Run ``cmd`` once; wall time from just before the fork to the reaped exit.

    With ``rss``, the command runs under ``/usr/bin/time -f %M`` so its peak
    resident set size is its own (see the module's docstring).

    Output goes to temporary files rather than pipes, so the parent does not
    have to read while the child runs (which would add its own scheduling
    noise on a 2-core machine).

    Raises:
        BenchError: the command exited non-zero and ``check`` is set.
    """
    argv = [str(c) for c in cmd]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss_file:
        use_time = rss and TIME_BIN.exists()
        full = [str(TIME_BIN), "-f", "%M", "-o", rss_file.name, *argv] if use_time else argv
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=dict(env) if env is not None else None, cwd=cwd)
        # wait4 instead of Popen.wait: it returns this child's own rusage (ru_maxrss in KiB on Linux)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        max_rss_kb = usage.ru_maxrss
        if use_time:
            text = rss_file.read().strip().splitlines()
            # time writes "Command exited with non-zero status N" before the figure on failure
            if text and text[-1].isdigit():
                max_rss_kb = int(text[-1])
        cpu = usage.ru_utime + usage.ru_stime
        sample = Sample(seconds, cpu, max_rss_kb, proc.returncode, out.read(), err.read())
    if check and sample.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {sample.returncode}:\n"
                         f"{sample.stderr.decode('utf-8', 'replace')[-2000:]}")
    return sample


def median(values: Sequence[float]) -> float:
    """The median (the figure every row reports; robust to one slow outlier)."""
    return float(statistics.median(values))


TargetKind = Literal["ratio_max", "ratio_min", "value_max", "value_min"]


@dataclass(frozen=True)
class Target:
    """What the issue asks of a figure.

    ``ratio_max`` / ``ratio_min`` bound twcactl / peer; ``value_max`` /
    ``value_min`` bound twcactl's own median in the figure's unit.
    """

    kind: TargetKind
    limit: float

    def text(self, unit: str) -> str:
        """The target as the table shows it, e.g. ``<= 1.15x`` or ``>= 1000 certs/s``."""
        op = "<=" if self.kind.endswith("_max") else ">="
        if self.kind.startswith("ratio"):
            return f"{op} {self.limit:g}x"
        return f"{op} {self.limit:g} {unit}"

    def holds(self, value: float, ratio: float) -> bool:
        """Whether the measured figure meets the target."""
        measured = ratio if self.kind.startswith("ratio") else value
        return measured <= self.limit if self.kind.endswith("_max") else measured >= self.limit


@dataclass
class Figure:
    """One row of the results: twcactl's median, the peer's median, their ratio and the target.

    ``ratio`` is always ``value / peer_value`` in the figure's unit, so for
    times lower is better and for rates higher is better.
    """

    key: str
    label: str
    unit: str
    value: float
    peer_name: str
    peer_value: float
    target: Target | None = None
    samples: list[float] = field(default_factory=list)
    peer_samples: list[float] = field(default_factory=list)
    note: str = ""
    #: medians of CPU time (user + system) for time figures: a cross-check on a busy machine
    cpu: float | None = None
    peer_cpu: float | None = None

    @property
    def paired_ratio(self) -> float | None:
        """The median of round-by-round ratios (each pair ran back to back), when rounds pair up."""
        if len(self.samples) != len(self.peer_samples) or not self.samples:
            return None
        return median([a / b for a, b in zip(self.samples, self.peer_samples) if b])

    @property
    def ratio(self) -> float:
        """twcactl / peer."""
        return self.value / self.peer_value if self.peer_value else float("inf")

    @property
    def holds(self) -> bool | None:
        """True / False against the target; None for a figure reported for information."""
        return self.target.holds(self.value, self.ratio) if self.target else None

    def to_json(self) -> dict[str, Any]:
        """The figure as the JSON file holds it."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "twcactl": self.value,
            "peer": self.peer_name,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "target": self.target.text(self.unit) if self.target else None,
            "target_kind": self.target.kind if self.target else None,
            "target_limit": self.target.limit if self.target else None,
            "holds": self.holds,
            "paired_ratio": self.paired_ratio,
            "cpu_s": self.cpu,
            "peer_cpu_s": self.peer_cpu,
            "cpu_ratio": self.cpu / self.peer_cpu if self.cpu and self.peer_cpu else None,
            "samples": self.samples,
            "peer_samples": self.peer_samples,
            "note": self.note,
        }


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "certs/s":
        return f"{value:,.0f}/s"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:g} {unit}"


def render_table(figures: Sequence[Figure]) -> str:
    """The results as a plain-text table (no colours, so it pastes into docs and issues)."""
    headers = ("figure", "twcactl", "peer", "peer median", "ratio", "target", "holds?")
    rows = []
    for f in figures:
        holds = "info" if f.holds is None else ("yes" if f.holds else "NO")
        rows.append((f.label, _fmt(f.value, f.unit), f.peer_name, _fmt(f.peer_value, f.unit), f"{f.ratio:.2f}x",
                     f.target.text(f.unit) if f.target else "-", holds))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    right = {1, 3, 4}  # numbers line up on the right

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def render_markdown(figures: Sequence[Figure]) -> str:
    """The same table in Markdown, for docs/performance.md."""
    out = ["| figure | twcactl | peer | peer median | ratio | target | holds? |", "|---|---:|---|---:|---:|---|---|"]
    for f in figures:
        holds = "info" if f.holds is None else ("yes" if f.holds else "**no**")
        out.append(f"| {f.label} | {_fmt(f.value, f.unit)} | {f.peer_name} | {_fmt(f.peer_value, f.unit)} | "
                   f"{f.ratio:.2f}x | {f.target.text(f.unit) if f.target else '-'} | {holds} |")
    return "\n".join(out)
