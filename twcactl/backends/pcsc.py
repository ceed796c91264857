"""The PC/SC adapter: the only module that imports ``smartcard`` (pyscard), lazily.

It asks the PC/SC service (pcscd on Linux, WinSCard on Windows) which
readers exist, whether a card is in each and its ATR, without connecting to
any card (SCardGetStatusChange, PC/SC part 5), and waits for a card to be
inserted.  Every pyscard failure becomes a :class:`DeviceError` (exit 6).
"""

from __future__ import annotations

import time
from typing import Any

from twcactl.backends import ReaderInfo
from twcactl.errors import DeviceError

_SERVICE_HINT = "start the PC/SC service (pcscd) and plug in the reader"


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as exc:
        raise DeviceError("pyscard is not installed, so PC/SC readers cannot be listed.",
                          hint="pip install pyscard (needs libpcsclite-dev to build)") from exc
    return scard


class _Context:
    """An SCard context, released on exit."""

    def __init__(self) -> None:
        scard = _scard()
        self.scard = scard
        try:
            hresult, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        except (scard.error, OSError) as exc:  # pyscard raises on some platforms instead of returning a code
            raise DeviceError("the PC/SC service is not available.", hint=_SERVICE_HINT) from exc
        if hresult != scard.SCARD_S_SUCCESS:
            raise DeviceError(f"the PC/SC service is not available ({_message(scard, hresult)}).", hint=_SERVICE_HINT)

    def __enter__(self) -> _Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.scard.SCardReleaseContext(self.handle)

    def reader_names(self) -> list[str]:
        scard = self.scard
        hresult, names = scard.SCardListReaders(self.handle, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE or (hresult == scard.SCARD_S_SUCCESS and not names):
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise DeviceError(f"cannot list the PC/SC readers ({_message(scard, hresult)}).", hint=_SERVICE_HINT)
        return list(names)

    def states(self, names: list[str], known: list[tuple[str, int]] | None,
               timeout_ms: int) -> list[tuple[str, int, list[int]]]:
        scard = self.scard
        query = known if known is not None else [(n, scard.SCARD_STATE_UNAWARE) for n in names]
        hresult, states = scard.SCardGetStatusChange(self.handle, timeout_ms, query)
        if hresult == scard.SCARD_E_TIMEOUT:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise DeviceError(f"cannot read the PC/SC reader states ({_message(scard, hresult)}).", hint=_SERVICE_HINT)
        return list(states)


def _message(scard: Any, hresult: int) -> str:
    try:
        return str(scard.SCardGetErrorMessage(hresult)).strip().rstrip(".")
    except (scard.error, OverflowError, TypeError):  # SWIG: a code outside the C type's range
        return f"0x{hresult & 0xFFFFFFFF:08X}"


def _info(scard: Any, name: str, event_state: int, atr: list[int]) -> ReaderInfo:
    present = bool(event_state & scard.SCARD_STATE_PRESENT)
    return ReaderInfo(name=name, card_present=present,
                      atr=bytes(atr).hex().upper() if present and atr else None)


def list_readers() -> list[ReaderInfo]:
    """Every PC/SC reader, whether a card is present and its ATR.

    Raises:
        DeviceError: no PC/SC service (exit 6).  No reader gives an empty list.
    """
    with _Context() as ctx:
        names = ctx.reader_names()
        if not names:
            return []
        return [_info(ctx.scard, n, state, atr) for n, state, atr in ctx.states(names, None, 0)]


def wait_for_card(timeout: float, *, reader: str | None = None) -> list[ReaderInfo]:
    """Wait up to ``timeout`` seconds until a card is present (in ``reader``, or in any reader).

    Returns at once when a card is already present.  The reader states are
    waited on with SCardGetStatusChange in steps of at most 0.5 s, so a
    reader plugged in while waiting is noticed at the next step.

    Returns:
        All readers, as :func:`list_readers` would, once a card is present.

    Raises:
        DeviceError: no PC/SC service, no such reader, or no card within ``timeout`` (exit 6).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    with _Context() as ctx:
        scard = ctx.scard
        known: list[tuple[str, int]] | None = None
        names: list[str] = []
        while True:
            current = ctx.reader_names()
            if reader is not None and reader not in current and time.monotonic() >= deadline:
                raise DeviceError(f"no PC/SC reader named {reader!r}.", hint="twcactl card readers lists them")
            if current != names:
                names, known = current, None
            watched = [n for n in names if reader is None or n == reader]
            if watched:
                if known is None:
                    states = ctx.states(watched, None, 0)
                else:
                    remaining = max(0, int((deadline - time.monotonic()) * 1000))
                    states = ctx.states(watched, known, min(remaining, 500))
                if states:
                    if any(s & scard.SCARD_STATE_PRESENT for _n, s, _a in states):
                        return [_info(scard, n, s, a) for n, s, a in ctx.states(names, None, 0)]
                    known = [(n, s & ~scard.SCARD_STATE_CHANGED) for n, s, _a in states]
            else:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                where = f"reader {reader!r}" if reader else "any reader"
                raise DeviceError(f"no card was inserted in {where} within {timeout:g} seconds.",
                                  hint="insert the card and run the command again")
