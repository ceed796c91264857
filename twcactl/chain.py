"""Certificate chains and the ``cert.zip`` bundle of the manuals.

The bundle names come from the IIS manual (domain.md §6): ``root.cer``,
``uca.cer`` (or ``uca_1.cer`` .. ``uca_N.cer`` from the root down) and
``server.cer``, all PEM, plus ``cert.zip`` holding them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.errors import StateError
from twcactl.fsutil import write_file

ZIP_NAME = "cert.zip"


def bundle_names(intermediates: int) -> list[str]:
    """File names for a chain with ``intermediates`` CAs below the root, root first, leaf last."""
    if intermediates == 1:
        middle = ["uca.cer"]
    else:
        middle = [f"uca_{i}.cer" for i in range(1, intermediates + 1)]
    return ["root.cer", *middle, "server.cer"]


def bundle_files(leaf: x509.Certificate, cas_root_first: Sequence[x509.Certificate]) -> list[tuple[str, bytes]]:
    """``[(file name, PEM bytes)]`` for the leaf and its CA chain (root first).

    Raises:
        ValueError: ``cas_root_first`` holds no root (programming error).
    """
    if not cas_root_first:
        raise ValueError("a bundle needs at least the root certificate")
    certs = [*cas_root_first, leaf]
    names = bundle_names(len(cas_root_first) - 1) if len(cas_root_first) > 1 else ["root.cer", "server.cer"]
    return [(name, cert.public_bytes(serialization.Encoding.PEM)) for name, cert in zip(names, certs)]


def zip_bytes(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A deterministic zip archive of ``files`` (fixed timestamps, so equal input gives equal bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def write_bundle(out_dir: Path, files: Sequence[tuple[str, bytes]], *, force: bool = False) -> list[Path]:
    """Write ``files`` and ``cert.zip`` into ``out_dir`` (created if missing).

    Nothing is written when any target exists and ``force`` is False.

    Returns:
        The paths written, zip last.

    Raises:
        StateError: a target exists (exit 5).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [out_dir / name for name, _ in files] + [out_dir / ZIP_NAME]
    if not force:
        existing = [str(t) for t in targets if t.exists() or t.is_symlink()]
        if existing:
            raise StateError(f"{existing[0]} already exists.", hint="use --force to replace it")
    written = [write_file(out_dir / name, data, force=force) for name, data in files]
    written.append(write_file(out_dir / ZIP_NAME, zip_bytes(files), force=force))
    return written
