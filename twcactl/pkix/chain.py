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

import datetime as dt
import io
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from twcactl.errors import InputError, PolicyError
from twcactl.fsutil import write_files
from twcactl.models import Finding
from twcactl.pkix.extensions import MalformedExtensionError, check_extensions, extension
from twcactl.pkix.parse_errors import SIGNATURE_ERRORS

ZIP_NAME = "cert.zip"


def bundle_names(intermediates: int) -> list[str]:
    """File names for a chain with ``intermediates`` CAs below the root, root first, leaf last."""
    if intermediates == 1:
        middle = ["uca.cer"]
    else:
        middle = [f"uca_{i}.cer" for i in range(1, intermediates + 1)]
    return ["root.cer", *middle, "server.cer"]


#: The leaf's file name in a bundle by profile (issue 28): a personal certificate is not a ``server.cer``; a
#: signing and encryption pair exported side by side gets ``sign.cer`` and ``enc.cer`` (the names ``card register``
#: gives them too).  Every other profile: ``server.cer`` (the manuals' name).
LEAF_FILE_NAMES: dict[str, str] = {"user-sign": "sign.cer", "user-enc": "enc.cer"}


def leaf_file_name(profile: str | None) -> str:
    """The leaf's file name in a bundle for a ``profile`` certificate (:data:`LEAF_FILE_NAMES`, else server.cer)."""
    return LEAF_FILE_NAMES.get(profile or "", "server.cer")


def bundle_files(leaf: x509.Certificate, cas_root_first: Sequence[x509.Certificate], *,
                 leaf_name: str = "server.cer") -> list[tuple[str, bytes]]:
    """``[(file name, PEM bytes)]`` for the leaf and its CA chain (root first); the leaf is ``leaf_name``
    (:func:`leaf_file_name` of its profile).

    Raises:
        ValueError: ``cas_root_first`` holds no root (programming error).
    """
    if not cas_root_first:
        raise ValueError("a bundle needs at least the root certificate")
    certs = [*cas_root_first, leaf]
    names = bundle_names(len(cas_root_first) - 1) if len(cas_root_first) > 1 else ["root.cer", "server.cer"]
    names[-1] = leaf_name
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
    """The subjectKeyIdentifier (RFC 5280 §4.2.1.2), read through the guarded accessor."""
    value = extension(cert, x509.SubjectKeyIdentifier)
    return None if value is None else value.digest


def _aki(cert: x509.Certificate) -> bytes | None:
    """The authorityKeyIdentifier's keyIdentifier (RFC 5280 §4.2.1.1), read through the guarded accessor."""
    value = extension(cert, x509.AuthorityKeyIdentifier)
    return None if value is None else value.key_identifier


def issued_by(cert: x509.Certificate, issuer: x509.Certificate, *, key_ids: bool = True) -> bool:
    """True when ``issuer`` issued ``cert``: names chain, key identifiers agree, signature verifies.

    RFC 5280 §6.1.3 (a)(1)(i) and (a)(4) for the name, §4.2.1.1 for AKI/SKI;
    the AKI/SKI test only rejects when both are present and differ
    (``key_ids=False`` skips it: names and the signature decide).

    Raises:
        MalformedExtensionError: with ``key_ids``, an extension of either certificate is malformed
            or repeated (exit 3).
    """
    if cert.issuer != issuer.subject:
        return False
    aki, ski = (_aki(cert), _ski(issuer)) if key_ids else (None, None)
    if aki is not None and ski is not None and aki != ski:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except SIGNATURE_ERRORS:  # a wrong signature, or a key/algorithm pair that cannot have made it: no
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a self-issued certificate whose signature its own key verifies (a root).

    Raises:
        MalformedExtensionError: its extensions are malformed or repeated (exit 3).
    """
    return issued_by(cert, cert)


@dataclass(frozen=True)
class ChainPath:
    """The result of :func:`build_path`.

    Attributes:
        leaf: the end-entity certificate.
        cas: the CA certificates above it, the leaf's issuer first, the root last when complete.
        complete: True when the last certificate is self-signed (or the leaf itself is); with
            ``anchors``, when it is one of the anchors.
        missing_issuer: when incomplete, the issuer name (RFC 4514) no candidate satisfied.
        unused: candidates not on the path (unrelated ones), duplicates removed.
        duplicates: how many candidates were exact duplicates (of each other or of the path).
        malformed: findings for candidates left out because their extensions are malformed or repeated.
        exhausted: True when the search stopped at its step or time budget.
        leaf_finding: the finding when the leaf's own extensions are malformed or repeated (its
            issuer was then found by name and signature alone), else None.
    """

    leaf: x509.Certificate
    cas: list[x509.Certificate]
    complete: bool
    missing_issuer: str | None
    unused: list[x509.Certificate]
    duplicates: int
    malformed: list[Finding] = field(default_factory=list)
    exhausted: bool = False
    leaf_finding: MalformedExtensionError | None = None


#: Work bounds of :func:`build_path`: distinct candidates taken, issuer checks tried, seconds spent.
MAX_CANDIDATES = 1000
MAX_STEPS = 10_000
TIME_BUDGET = 5.0


class _Search:
    """The state of one :func:`build_path` search: candidates indexed by subject, memoized issuer checks."""

    def __init__(self, leaf: x509.Certificate, unique: list[x509.Certificate], anchors: set[bytes] | None,
                 at: dt.datetime | None, max_depth: int, leaf_ok: bool) -> None:
        self.leaf, self.unique, self.anchors, self.at, self.max_depth = leaf, unique, anchors, at, max_depth
        self.leaf_ok = leaf_ok
        self.fps = {id(c): fingerprint(c) for c in [leaf, *unique]}
        self.by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for cert in unique:
            self.by_subject.setdefault(cert.subject, []).append(cert)
        self.memo: dict[tuple[bytes, bytes], bool] = {}
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + TIME_BUDGET
        self.exhausted = False
        self.best: list[x509.Certificate] = []

    def fp(self, cert: x509.Certificate) -> bytes:
        return self.fps[id(cert)]

    def issued(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        key = (self.fp(cert), self.fp(issuer))
        if key not in self.memo:
            self.memo[key] = issued_by(cert, issuer, key_ids=self.leaf_ok or cert is not self.leaf)
        return self.memo[key]

    def done(self, current: x509.Certificate) -> bool:
        if self.anchors is not None:
            return self.fp(current) in self.anchors
        return self.issued(current, current)

    def _preference(self, cert: x509.Certificate) -> tuple[bool, bool, bool]:
        """Sort key: trust anchors first, then issuers valid at ``at``, then self-signed ones."""
        anchor = self.anchors is not None and self.fp(cert) in self.anchors
        valid = self.at is None or cert.not_valid_before_utc <= self.at <= cert.not_valid_after_utc
        return (not anchor, not valid, cert.subject != cert.issuer)

    def extend(self, path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1] if path else self.leaf
        if self.done(current):
            return path
        if len(path) > len(self.best):
            self.best = list(path)
        if len(path) >= self.max_depth:
            return None
        on_path = {self.fp(c) for c in path}
        issuers = [c for c in self.by_subject.get(current.issuer, []) if self.fp(c) not in on_path]
        if self.anchors is not None and self.issued(current, current):
            # a self-signed certificate that is not an anchor: only an anchor can stand above it
            issuers = [c for c in issuers if self.fp(c) in self.anchors]
        issuers.sort(key=self._preference)
        for issuer in issuers:
            self.steps -= 1
            if self.steps <= 0 or time.monotonic() > self.deadline:
                self.exhausted = True
                return None
            if self.issued(current, issuer):
                found = self.extend([*path, issuer])
                if found is not None or self.exhausted:
                    return found
        return None


def build_path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate], *,
               max_depth: int = MAX_DEPTH, anchors: Sequence[x509.Certificate] | None = None,
               at: dt.datetime | None = None) -> ChainPath:
    """Order ``candidates`` into the path from ``leaf`` up to a self-signed root (or one of ``anchors``).

    Each step takes a candidate that :func:`issued_by` accepts, preferring
    an anchor, then one valid at ``at``, then a self-signed one (so
    cross-signed bags end at a root), never a certificate already on the
    path (so cycles end), and at most ``max_depth`` CA certificates.  With
    ``anchors`` (``chain verify``'s trusted roots, which should be among
    the candidates too) the path is complete only when it reaches one of
    them; a self-signed certificate that is not an anchor ends the search
    there.  The search backtracks, bounded by :data:`MAX_STEPS` issuer
    checks and :data:`TIME_BUDGET` seconds, so hostile bags (many
    certificates sharing one subject and one key) cannot make it run long.
    Candidates whose extensions are malformed or repeated are left out,
    each a finding in ``malformed``.

    A leaf whose own extensions are malformed gets its issuer by name and
    signature alone, and the finding in ``leaf_finding``.

    Returns:
        The best path found: a complete one if any, else the longest one,
        with the issuer it could not find.

    Raises:
        InputError: more than :data:`MAX_CANDIDATES` distinct candidates (exit 3).
    """
    leaf_finding: MalformedExtensionError | None = None
    try:
        check_extensions(leaf, "certificate 0")
    except MalformedExtensionError as exc:
        leaf_finding = exc
    unique: list[x509.Certificate] = []
    seen: set[bytes] = {fingerprint(leaf)}
    duplicates = 0
    malformed: list[Finding] = []
    for cert in candidates:
        fp = fingerprint(cert)
        if fp in seen:
            duplicates += 1
            continue
        seen.add(fp)
        if len(unique) >= MAX_CANDIDATES:
            raise InputError(f"more than {MAX_CANDIDATES} distinct candidate certificates; give fewer.")
        try:
            check_extensions(cert, f"certificate {cert.subject.rfc4514_string() or '(empty subject)'}")
        except MalformedExtensionError as exc:
            malformed.append(exc.finding)
            continue
        unique.append(cert)

    anchor_fps = None if anchors is None else {fingerprint(a) for a in anchors}
    search = _Search(leaf, unique, anchor_fps, at, max_depth, leaf_finding is None)
    complete_path = search.extend([])
    if complete_path is not None:
        path, complete, missing = complete_path, True, None
    else:
        path, complete = search.best, False
        top = path[-1] if path else leaf
        missing = top.issuer.rfc4514_string()
    on_path = {search.fp(c) for c in path}
    unused = [c for c in unique if search.fp(c) not in on_path]
    return ChainPath(leaf, path, complete, missing, unused, duplicates, malformed, search.exhausted, leaf_finding)


def require_complete(path: ChainPath) -> list[x509.Certificate]:
    """The CA certificates of a complete path, root last.

    Raises:
        MalformedExtensionError: the leaf's extensions are malformed or repeated (exit 3, the
            finding in ``"findings"``): no bundle is built for a certificate no client can read.
        InputError: the path stops before a self-signed root and some candidates were left out
            because their extensions are malformed (exit 3, the findings in ``"findings"``).
        PolicyError: the path stops before a self-signed root, naming the missing issuer (exit 1).
    """
    if path.leaf_finding is not None:
        raise path.leaf_finding
    if not path.complete and path.malformed:
        raise InputError(
            f"no path can be built: {'; '.join(f.message for f in path.malformed)}.",
            details={"findings": [f.to_json() for f in path.malformed], "missing_issuer": path.missing_issuer})
    if not path.complete:
        top = path.cas[-1] if path.cas else path.leaf
        raise PolicyError(
            f"the chain is incomplete: no issuer found for {top.subject.rfc4514_string()}; "
            f"missing {path.missing_issuer}.",
            hint=(f"the search stopped at its budget ({MAX_STEPS} issuer checks, {TIME_BUDGET:g} s): "
                  "give fewer candidate certificates") if path.exhausted
            else "add the missing CA certificate with --certs FILE|DIR|ZIP",
            details={"missing_issuer": path.missing_issuer},
        )
    return path.cas


def fullchain_pem(leaf: x509.Certificate, cas_issuer_first: Sequence[x509.Certificate]) -> bytes:
    """The leaf and its intermediates, no root (what nginx ``ssl_certificate`` and Apache 2.4.8+ want)."""
    intermediates = [c for c in cas_issuer_first if not is_self_signed(c)]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *intermediates])

