"""Real smart-card components for the card tests: SoftHSM2 tokens, the opencryptoki
soft token with its daemon, and pcscd with vpcd and a small virtual card.

How a fresh SoftHSM2 token per test works (testing-real-components.md):
SoftHSM2 reads ``SOFTHSM2_CONF`` and scans its token directory at
C_Initialize, and python-pkcs11 loads each module once per process.  So a
module-scoped :class:`SoftHsm` writes one config and token directory, sets
``SOFTHSM2_CONF`` for the process (restored afterwards), and every test asks
it for a token with a new label (``softhsm2-util --init-token --free``).
twcactl's adapter calls C_Finalize + C_Initialize each time a command opens
the module, so the new token is seen without any help from the test.

The opencryptoki and pcscd fixtures start machine-global daemons and stop
them in their teardown; CI runs as root on a clean machine.

Run as a script, this module is the virtual card:
``python tests/card_support.py vcard --port 35963 [--delay S] [--atr HEX]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PIN = "24681357"
SO_PIN = "87654321"
VCARD_ATR = "3B80800101"  # T=1, no historical bytes, TCK 01
VPCD_PORT = 35963  # reader "Virtual PCD 00 00"
VPCD_READER = "Virtual PCD 00 00"

SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
OPENCRYPTOKI_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
OPENCRYPTOKI_SLOT = 3
OPENCRYPTOKI_PIN = "11112222"


def _first_existing(paths: tuple[str, ...]) -> str:
    for path in paths:
        if os.path.isfile(path):
            return path
    import pytest

    pytest.fail(f"none of {paths} exists; scripts/test.sh installs softhsm2")


# --------------------------------------------------------------------------
# SoftHSM2


@dataclass
class SoftHsm:
    """One SoftHSM2 token directory for a test module; :meth:`new_token` makes a fresh token."""

    directory: Path
    module: str
    conf: Path
    _counter: itertools.count  # type: ignore[type-arg]

    @classmethod
    def create(cls, directory: Path) -> SoftHsm:
        tokens = directory / "tokens"
        tokens.mkdir(parents=True)
        conf = directory / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        return cls(directory, _first_existing(SOFTHSM_MODULES), conf, itertools.count(1))

    def new_token(self, *, pin: str = PIN, so_pin: str = SO_PIN, prefix: str = "card") -> str:
        """Initialise a new token in the free slot; returns its (unique) label."""
        label = f"{prefix}-{os.getpid()}-{next(self._counter)}"
        proc = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
            capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(self.conf)}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return label

    def env(self) -> dict[str, str | None]:
        """What ``invoke`` needs to reach this token directory."""
        return {"SOFTHSM2_CONF": str(self.conf), "TWCACTL_PKCS11_MODULE": self.module}

    def pkcs11_tool(self, label: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run OpenSC's ``pkcs11-tool`` on token ``label``, the independent checker."""
        return subprocess.run(["pkcs11-tool", "--module", self.module, "--token-label", label, *args],
                              capture_output=True, text=True, env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
                              timeout=60)


def parse_pkcs11_tool_objects(text: str) -> list[dict[str, str]]:
    """``pkcs11-tool -O`` output as one dict per object: ``kind`` (the header) and each ``key: value`` line."""
    objects: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            objects.append({"kind": line.split(";")[0].strip(), "header": line.strip()})
        elif objects and ":" in line:
            key, _sep, value = line.strip().partition(":")
            objects[-1][key.strip()] = value.strip()
    return objects


@contextlib.contextmanager
def softhsm_directory(directory: Path) -> Iterator[SoftHsm]:
    """A :class:`SoftHsm` with ``SOFTHSM2_CONF`` set for this process while it lives."""
    hsm = SoftHsm.create(directory)
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    try:
        yield hsm
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before


# --------------------------------------------------------------------------
# opencryptoki (machine-global: one test at a time)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.fail(f"{what} needs root (CI runs scripts/test.sh as root)")


@dataclass
class Opencryptoki:
    """The opencryptoki software token (slot 3) with its ``pkcsslotd`` daemon."""

    module: str = OPENCRYPTOKI_MODULE
    label: str = "twcactl-ock"

    def env(self) -> dict[str, str | None]:
        return {"TWCACTL_PKCS11_MODULE": self.module}

    def release(self) -> None:
        """C_Finalize the module in this process: the daemon does not stop while a client holds it."""
        from twcactl.backends.p11 import release_module

        release_module(self.module)

    def reset_token(self) -> None:
        """A fresh token: daemon stopped, token files deleted, daemon started, token and user PIN set."""
        self.release()
        stop_pkcsslotd()
        swtok = Path("/var/lib/opencryptoki/swtok")
        for path in (swtok, swtok / "TOK_OBJ"):
            if path.is_dir():
                for child in path.iterdir():
                    if child.is_file():
                        child.unlink()
        start_pkcsslotd()
        proc = subprocess.run(["pkcsconf", "-I", "-c", str(OPENCRYPTOKI_SLOT), "-S", SO_PIN],
                              input=f"{self.label}\n", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = subprocess.run(["pkcsconf", "-u", "-c", str(OPENCRYPTOKI_SLOT), "-S", SO_PIN, "-n", OPENCRYPTOKI_PIN],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _pids(name: str) -> list[int]:
    proc = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split()]


def start_pkcsslotd() -> None:
    """Start opencryptoki's slot daemon (it forks; returns when it runs)."""
    _require_root("opencryptoki's pkcsslotd")
    for d in ("/var/lock/opencryptoki", "/var/lib/opencryptoki/swtok/TOK_OBJ"):
        os.makedirs(d, exist_ok=True)
    if _pids("pkcsslotd"):
        return
    proc = subprocess.run(["/usr/sbin/pkcsslotd"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for _ in range(100):
        if _pids("pkcsslotd"):
            return
        time.sleep(0.05)
    raise AssertionError("pkcsslotd did not start")


def stop_pkcsslotd() -> None:
    """SIGTERM the daemon and wait until it is gone (about 1.5 s)."""
    for pid in _pids("pkcsslotd"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        if not _pids("pkcsslotd"):
            return
        time.sleep(0.05)
    raise AssertionError("pkcsslotd did not stop")


# --------------------------------------------------------------------------
# PC/SC: pcscd + vpcd + the virtual card


class Pcscd:
    """``pcscd --foreground`` (one per machine), stopped by :meth:`stop`."""

    SOCKET = Path("/run/pcscd/pcscd.comm")

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Start ``pcscd --foreground`` and wait until vpcd's reader socket listens."""
        _require_root("pcscd")
        if shutil.which("pcscd") is None and not os.path.exists("/usr/sbin/pcscd"):
            import pytest

            pytest.fail("pcscd is not installed; scripts/test.sh installs it")
        if _pids("pcscd"):
            import pytest

            pytest.fail("a pcscd is already running; the card tests start their own (only one per machine)")
        self.proc = subprocess.Popen(["pcscd", "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.SOCKET.exists() and self._port_open():
                return
            time.sleep(0.025)
        self.stop()
        raise AssertionError("pcscd did not come up with the vpcd reader")

    @staticmethod
    def _port_open() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", VPCD_PORT), timeout=0.2) as s:
            s.close()
            return True
        return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class VirtualCardProcess:
    """The virtual card of this module, in a child process, connected to vpcd's reader socket."""

    def __init__(self, *, port: int = VPCD_PORT, delay: float = 0.0, atr: str = VCARD_ATR) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "vcard", "--port", str(port), "--delay", str(delay),
                                      "--atr", atr], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def wait_card_present(reader: str = VPCD_READER, timeout: float = 10.0) -> str:
    """Wait (with pyscard, in the test) until ``reader`` shows a card; returns its ATR hex."""
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hr, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
            if hr == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_PRESENT and states[0][2]:
                return bytes(states[0][2]).hex().upper()
            time.sleep(0.05)
    finally:
        scard.SCardReleaseContext(ctx)
    raise AssertionError(f"no card appeared in {reader}")


class _Card:
    """An ISO 7816-4 toy: SELECT answers 9000, VERIFY checks a PIN with a 3-try counter (63Cx, 6983)."""

    def __init__(self, atr: bytes, pin: bytes = b"123456") -> None:
        self.atr = atr
        self.pin = pin
        self.tries = 3

    def apdu(self, command: bytes) -> bytes:
        if len(command) < 4:
            return b"\x67\x00"
        ins = command[1]
        if ins == 0xA4:  # SELECT
            return b"\x90\x00"
        if ins == 0x20:  # VERIFY
            if self.tries == 0:
                return b"\x69\x83"
            data = command[5:5 + command[4]] if len(command) > 5 else b""
            if not data:
                return bytes([0x63, 0xC0 | self.tries])
            if data == self.pin:
                self.tries = 3
                return b"\x90\x00"
            self.tries -= 1
            return b"\x69\x83" if self.tries == 0 else bytes([0x63, 0xC0 | self.tries])
        return b"\x6D\x00"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        if hasattr(socket, "TCP_QUICKACK"):  # re-armed before each read, or every APDU waits ~44 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        data += chunk
    return data


def run_virtual_card(port: int, atr: bytes, delay: float = 0.0) -> None:
    """Connect to vpcd on ``port`` and answer its messages until it hangs up.

    vpcd's protocol: every message is a 2-byte big-endian length and a payload;
    a 1-byte payload is control (0 off, 1 on, 2 reset, 4 "send the ATR"),
    anything longer is a command APDU answered with data + SW1 SW2.
    """
    time.sleep(delay)
    card = _Card(atr)
    with socket.create_connection(("127.0.0.1", port), timeout=None) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            (length,) = struct.unpack(">H", _recv_exact(sock, 2))
            payload = _recv_exact(sock, length)
            if length == 1:
                if payload[0] == 4:
                    sock.sendall(struct.pack(">H", len(card.atr)) + card.atr)
                continue
            reply = card.apdu(payload)
            sock.sendall(struct.pack(">H", len(reply)) + reply)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="card_support")
    sub = parser.add_subparsers(dest="cmd", required=True)
    vcard = sub.add_parser("vcard", help="be a virtual card on vpcd's socket")
    vcard.add_argument("--port", type=int, default=VPCD_PORT)
    vcard.add_argument("--delay", type=float, default=0.0)
    vcard.add_argument("--atr", default=VCARD_ATR)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(ConnectionError, KeyboardInterrupt):
        run_virtual_card(args.port, bytes.fromhex(args.atr), args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
