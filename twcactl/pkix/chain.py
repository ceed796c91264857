"""Certificate chains and the ``cert.zip`` bundle of the manuals.

The bundle names come from the IIS manual (domain.md §6): ``root.cer``,
``uca.cer`` (or ``uca_1.cer`` .. ``uca_N.cer`` from the root down) and
``server.cer``, all PEM, plus ``cert.zip`` holding them.

``chain build`` gathers certificates from files, directories and zips
(:func:`gather_certificates`) and orders them from the leaf up to a
self-signed root (:func:`build_path`): names (RFC 5280 §6.1), key
identifiers (§4.2.1.1/§4.2.1.2) and a signature check, duplicates and
unrelated certificates dropped, a bounded search so cross-signed or cyclic
bags end.  Output file names are always our own, never a name from input.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from twcactl.errors import InputError, PolicyError
from twcactl.fsutil import write_files
from twcactl.pkix.parse_errors import SIGNATURE_ERRORS

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
    targets = [(out_dir / name, data, 0o644) for name, data in files]
    return write_files([*targets, (out_dir / ZIP_NAME, zip_bytes(files), 0o644)], force=force)


# ---------------------------------------------------------------- gathering certificates

#: Safety limits for ``chain build`` inputs: a zip is read in memory, never extracted.
MAX_ZIP_MEMBERS = 1000
MAX_MEMBER_BYTES = 1024 * 1024
MAX_DEPTH = 10


@dataclass(frozen=True)
class Gathered:
    """Certificates found in ``--certs`` inputs.

    Attributes:
        certificates: ``(source, certificate)`` in input order, duplicates kept
            (the chain builder drops them); ``source`` is the file, or
            ``zip!member`` for a zip member (a label, never a path we write).
        skipped: inputs inside a directory or zip that held no certificate.
    """

    certificates: list[tuple[str, x509.Certificate]]
    skipped: list[str]


def _is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _certs_in(data: bytes, name: str) -> list[x509.Certificate]:
    from twcactl.pkix.pem import load_certificates

    return load_certificates(data, name=name)


def _zip_certificates(data: bytes, name: str) -> tuple[list[tuple[str, x509.Certificate]], list[str]]:
    """Certificates of every member of a zip read in memory (member names are labels only)."""
    found: list[tuple[str, x509.Certificate]] = []
    skipped: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            if len(infos) > MAX_ZIP_MEMBERS:
                raise InputError(f"{name} holds more than {MAX_ZIP_MEMBERS} files.")
            for info in infos:
                label = f"{name}!{info.filename}"
                if info.file_size > MAX_MEMBER_BYTES:
                    skipped.append(label)
                    continue
                with archive.open(info) as member:
                    # the header's size can lie; read no more than the cap + 1
                    content = member.read(MAX_MEMBER_BYTES + 1)
                if len(content) > MAX_MEMBER_BYTES or not content.strip():
                    skipped.append(label)
                    continue
                try:
                    found.extend((label, c) for c in _certs_in(content, label))
                except InputError:
                    skipped.append(label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
        raise InputError(f"{name} is not a readable zip archive.") from exc
    return found, skipped


def gather_certificates(paths: Sequence[Path]) -> Gathered:
    """Read certificates from files (PEM bundles or DER), directories and zip archives.

    A file named directly must hold a certificate; files inside a directory
    (not recursive, hidden files ignored) or a zip that hold none are
    skipped and reported.  Zip members are read in memory with a size cap
    and never written anywhere.

    Raises:
        InputError: a named file is missing, unreadable or holds no certificate;
            a zip is damaged (exit 3).
    """
    from twcactl.fsutil import read_input

    found: list[tuple[str, x509.Certificate]] = []
    skipped: list[str] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.name.startswith(".") or not child.is_file():
                    continue
                try:
                    data = read_input(child, what="certificate")
                except InputError:
                    skipped.append(str(child))
                    continue
                if _is_zip(data):
                    more, skip = _zip_certificates(data, str(child))
                    found.extend(more)
                    skipped.extend(skip)
                    continue
                try:
                    found.extend((str(child), c) for c in _certs_in(data, str(child)))
                except InputError:
                    skipped.append(str(child))
            continue
        data = read_input(path, what="certificate")
        if _is_zip(data):
            more, skip = _zip_certificates(data, str(path))
            if not more:
                raise InputError(f"{path} holds no certificate.")
            found.extend(more)
            skipped.extend(skip)
        else:
            found.extend((str(path), c) for c in _certs_in(data, str(path)))
    return Gathered(found, skipped)


# ---------------------------------------------------------------- building the path


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the DER: the identity used to drop duplicates."""
    return cert.fingerprint(hashes.SHA256())


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` issued ``cert``: names chain, key identifiers agree, signature verifies.

    RFC 5280 §6.1.3 (a)(1)(i) and (a)(4) for the name, §4.2.1.1 for AKI/SKI;
    the AKI/SKI test only rejects when both are present and differ.
    """
    if cert.issuer != issuer.subject:
        return False
    aki, ski = _aki(cert), _ski(issuer)
    if aki is not None and ski is not None and aki != ski:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except SIGNATURE_ERRORS:  # a wrong signature, or a key/algorithm pair that cannot have made it: no
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a self-issued certificate whose signature its own key verifies (a root)."""
    return issued_by(cert, cert)


@dataclass(frozen=True)
class ChainPath:
    """The result of :func:`build_path`.

    Attributes:
        leaf: the end-entity certificate.
        cas: the CA certificates above it, the leaf's issuer first, the root last when complete.
        complete: True when the last certificate is self-signed (or the leaf itself is).
        missing_issuer: when incomplete, the issuer name (RFC 4514) no candidate satisfied.
        unused: candidates not on the path (unrelated ones), duplicates removed.
        duplicates: how many candidates were exact duplicates (of each other or of the path).
    """

    leaf: x509.Certificate
    cas: list[x509.Certificate]
    complete: bool
    missing_issuer: str | None
    unused: list[x509.Certificate]
    duplicates: int


def build_path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate], *,
               max_depth: int = MAX_DEPTH) -> ChainPath:
    """Order ``candidates`` into the path from ``leaf`` up to a self-signed root.

    Each step takes a candidate that :func:`issued_by` accepts, preferring
    one that leads to a self-signed root (cross-signed bags offer several),
    never a certificate already on the path (so cycles end), and at most
    ``max_depth`` CA certificates.  The search backtracks, bounded by a
    fixed budget of steps, so hostile bags cannot make it run long.

    Returns:
        The best path found: a complete one if any, else the longest one,
        with the issuer it could not find.
    """
    unique: list[x509.Certificate] = []
    seen: set[bytes] = {fingerprint(leaf)}
    duplicates = 0
    for cert in candidates:
        fp = fingerprint(cert)
        if fp in seen:
            duplicates += 1
            continue
        seen.add(fp)
        unique.append(cert)

    budget = [10_000]
    best: list[x509.Certificate] = []

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        nonlocal best
        current = path[-1] if path else leaf
        if is_self_signed(current):
            return path
        if len(path) > len(best):
            best = list(path)
        if len(path) >= max_depth:
            return None
        on_path = {fingerprint(c) for c in path}
        issuers = [c for c in unique if fingerprint(c) not in on_path and c.subject == current.issuer]
        # roots first: a self-signed issuer ends the path at once
        issuers.sort(key=lambda c: c.subject != c.issuer)
        for issuer in issuers:
            budget[0] -= 1
            if budget[0] <= 0:
                return None
            if issued_by(current, issuer):
                done = extend([*path, issuer])
                if done is not None:
                    return done
        return None

    complete_path = extend([])
    if complete_path is not None:
        path, complete, missing = complete_path, True, None
    else:
        path, complete = best, False
        top = path[-1] if path else leaf
        missing = top.issuer.rfc4514_string()
    on_path = {fingerprint(c) for c in path}
    unused = [c for c in unique if fingerprint(c) not in on_path]
    return ChainPath(leaf, path, complete, missing, unused, duplicates)


def require_complete(path: ChainPath) -> list[x509.Certificate]:
    """The CA certificates of a complete path, root last.

    Raises:
        PolicyError: the path stops before a self-signed root, naming the missing issuer (exit 1).
    """
    if not path.complete:
        top = path.cas[-1] if path.cas else path.leaf
        raise PolicyError(
            f"the chain is incomplete: no issuer found for {top.subject.rfc4514_string()}; "
            f"missing {path.missing_issuer}.",
            hint="add the missing CA certificate with --certs FILE|DIR|ZIP",
            details={"missing_issuer": path.missing_issuer},
        )
    return path.cas


def fullchain_pem(leaf: x509.Certificate, cas_issuer_first: Sequence[x509.Certificate]) -> bytes:
    """The leaf and its intermediates, no root (what nginx ``ssl_certificate`` and Apache 2.4.8+ want)."""
    intermediates = [c for c in cas_issuer_first if not is_self_signed(c)]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *intermediates])

