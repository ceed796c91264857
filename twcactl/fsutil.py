"""File writing that never leaves a half-written or overwritten file behind.

Every file-writing command goes through :func:`write_file`: the content is
written to a temporary file in the target directory, flushed and fsynced,
then moved into place (``os.link`` when overwriting is not allowed, so an
existing file is never replaced, even by a race).  Private keys get mode
0600 from the moment they exist (cli-contract.md, "Files").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from twcactl.errors import InputError, StateError


def read_input(path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = 16 * 1024 * 1024) -> bytes:
    """Read an input file (``-`` for stdin) whole.

    Args:
        path: the file name as the user gave it.
        what: a word for messages ("CSR", "certificate"...).
        max_bytes: refuse larger inputs (bytes) before reading them all.

    Raises:
        InputError: missing, unreadable, a directory, empty, or too large (exit 3).
    """
    name = os.fspath(path)
    if name == "-":
        import sys

        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        try:
            with open(name, "rb") as fh:
                # read(n) allocates n bytes up front: size regular files first instead of asking for 16 MiB each
                size = os.fstat(fh.fileno()).st_size
                data = fh.read(max_bytes + 1) if size == 0 or size > max_bytes else fh.read(size + 1)
        except FileNotFoundError as exc:
            raise InputError(f"{what} file {name} does not exist.") from exc
        except IsADirectoryError as exc:
            raise InputError(f"{what} file {name} is a directory.") from exc
        except OSError as exc:
            raise InputError(f"cannot read {what} file {name}: {exc.strerror}.") from exc
    if len(data) > max_bytes:
        limit = f"{max_bytes // (1024 * 1024)} MiB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
        raise InputError(f"{what} file {name} is larger than {limit}.")
    if not data.strip():
        raise InputError(f"{what} file {name} is empty.")
    return data


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, mode: int = 0o644, force: bool = False,
                  durable: bool = True) -> Iterator[BinaryIO]:
    """Write a file atomically through a file object (for content too large to hold in memory).

    The content goes to a temporary file in the target directory, is fsynced,
    then moved into place; an exception inside the block leaves nothing
    behind.  Same rules as :func:`write_file`.  ``durable=False`` skips the
    fsyncs, for files derived from the database that ``ca check`` rebuilds
    (a batch of 1,000 certificates would otherwise wait for 2,000 fsyncs).

    Raises:
        StateError: the file exists and ``force`` is False (exit 5).
        InputError: the directory does not exist or is not writable (exit 3).
    """
    target = Path(path)
    ensure_free([target], force=force)
    directory = target.parent if str(target.parent) else Path(".")
    import tempfile  # here: tempfile pulls in shutil, bz2 and lzma (~2 ms a process; issue 18)

    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError as exc:
        raise InputError(f"directory {directory} does not exist.") from exc
    except OSError as exc:
        raise InputError(f"cannot write in {directory}: {exc.strerror}.") from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if force:
            os.replace(tmp_name, target)
        else:
            try:
                os.link(tmp_name, target)
            except FileExistsError as exc:
                raise StateError(f"{target} already exists.", hint="use --force to replace it") from exc
            os.unlink(tmp_name)
        if durable:
            fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def ensure_free(paths: Iterable[str | os.PathLike[str] | None], *, force: bool) -> None:
    """Refuse, before any work, output paths that exist or are symlinks (cli-contract.md, "Files").

    ``None`` and ``-`` (stdout) are skipped; with ``force`` nothing is refused.

    Raises:
        StateError: naming the first path that exists (exit 5).
    """
    if force:
        return
    for path in paths:
        if path is None or os.fspath(path) == "-":
            continue
        target = Path(path)
        if target.exists() or target.is_symlink():
            raise StateError(f"{target} already exists.", hint="use --force to replace it")


def write_files(targets: Sequence[tuple[Path, bytes, int]], *, force: bool = False) -> list[Path]:
    """Write several ``(path, data, mode)`` files atomically, none of them when any exists (unless ``force``).

    Raises:
        StateError: a target exists (exit 5).
    """
    ensure_free((target for target, _data, _mode in targets), force=force)
    return [write_file(target, data, mode=mode, force=force) for target, data, mode in targets]


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, force: bool = False,
               durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the target file.
        data: the whole content.
        mode: the file's permission bits (0o600 for private keys).
        force: replace an existing file (``--force``); otherwise an existing
            file, or a symlink at ``path``, is refused.
        durable: fsync the file and its directory (see :func:`atomic_writer`).

    Returns:
        The path written.

    Raises:
        StateError: the file exists and ``force`` is False (exit 5).
        InputError: the directory does not exist or is not writable (exit 3).
    """
    with atomic_writer(path, mode=mode, force=force, durable=durable) as fh:
        fh.write(data)
    return Path(path)


def write_new_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Create a derived file that must not exist yet (a new certificate's PEM), without fsync.

    ``O_EXCL`` makes it safe against races without a temporary file; a
    crash mid-write leaves a short file that ``ca check`` finds different
    from the record and rebuilds.  An existing file is replaced atomically.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        write_file(path, data, mode=mode, force=True, durable=False)
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX needs the directory fsynced); an OSError is ignored
    (a filesystem that cannot fsync a directory gives what it can)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and force it to mode 0700, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
