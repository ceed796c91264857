"""Who is told about a certificate: setting its technical contact after issue (issue 28; domain.md §3-§4).

``cert issue --contact`` and ``card enroll --contact`` record a contact with the certificate; a card holder's
or a personal certificate's contact may also be set later, e.g. when its holder changes.  Each change is
one transaction with its activity-log entry (``cert.contact``: the old and new address), so the log says
who redirected a certificate's notices, and when.
"""

from __future__ import annotations

from dataclasses import replace

from twcactl.authority.lookup import resolve_serial
from twcactl.authority.notify import contact_address
from twcactl.errors import UsageError
from twcactl.store import Store
from twcactl.store.records import CertRecord

__all__ = ["checked_contact", "set_contact"]


def checked_contact(text: str | None, *, option: str = "--contact") -> str | None:
    """``text`` when it is an e-mail address (``ops@x`` or ``Name <ops@x>``), None for None or "".

    Raises:
        UsageError: not an e-mail address (exit 2).
    """
    if not text:
        return None
    if contact_address(text) is None:
        raise UsageError(f"{option} {text!r} is not an e-mail address (e.g. ops@twca.com.tw or "
                         "\"Ops <ops@twca.com.tw>\").")
    return text


def set_contact(store: Store, serial_text: str, contact: str | None, *, operator: str) -> tuple[CertRecord, str | None]:
    """Set the technical contact of the certificate ``serial_text`` names (a whole serial or a unique prefix).

    Args:
        contact: the new address, or None / "" to clear it (notices then go to a personal certificate's
            e-mail SAN, or nowhere).
        operator: a manager of the CA.

    Returns:
        The updated record and the contact it had before.

    Raises:
        UsageError: ``contact`` is not an e-mail address, or the serial prefix is ambiguous (exit 2).
        NotFoundError: no such certificate (exit 5).  StateError: not a manager (exit 5).
    """
    new = checked_contact(contact, option="ADDR")
    store.operators.require_manager(operator)
    record = resolve_serial(store, serial_text)
    with store.transaction():
        store.certificates.set_contact(record.serial, new)
        store.log.append(operator=operator, action="cert.contact", account=record.account, serial=record.serial,
                         details={"old": record.contact, "new": new})
    return replace(record, contact=new), record.contact
