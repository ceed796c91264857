"""Where twcactl keeps things by default on this platform (no imports beyond the standard library).

Kept apart from ``twcactl.store`` so that the thin client of the resident process
(:mod:`twcactl.forwarder`) can find a home's socket without loading the store.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["default_home", "resident_dir", "resident_socket_path"]


def default_home() -> Path:
    """``$TWCACTL_HOME`` is read by the CLI; this is the platform's user data directory for twcactl."""
    from pathlib import Path

    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "twcactl"
    if os.uname().sysname == "Darwin":
        return Path.home() / "Library" / "Application Support" / "twcactl"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "twcactl"


def resident_dir() -> str:
    """The directory of this user's resident-process sockets (``/tmp/twcactl-UID``); checked before anything
    else is imported, so a command with no resident process pays one ``stat`` for looking."""
    return f"/tmp/twcactl-{os.getuid()}"


def resident_socket_path(home: Path) -> Path:
    """The Unix socket of the resident process serving ``home``.

    ``/tmp/twcactl-UID/<hash of the home's real path>.sock``: a fixed short directory because a Unix
    socket path may not exceed 107 bytes (homes under deep test or container paths would), one
    socket per home and user.  The directory is the user's own (mode 0700, checked by both sides).
    """
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(str(home.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return Path(resident_dir()) / f"{digest}.sock"
