"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1) that keeps what it receives (issues 17, 28)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from tests.serve_support import free_port


class MailKeeper:
    """An aiosmtpd handler keeping every message it receives, and each message's envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[MailKeeper, int]]:
    """``(handler, port)`` of a running aiosmtpd server on 127.0.0.1, stopped on exit."""
    from aiosmtpd.controller import Controller

    handler = MailKeeper()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
