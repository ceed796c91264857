"""The ``ca config`` workflow: read the CA's settings, change one (managers only; logged).

The settings' types and limits live in :mod:`twcactl.rules.settings`; this
module is the workflow around them (role check, transaction, log entry).
"""

from __future__ import annotations

from twcactl.errors import StateError
from twcactl.rules.settings import SettingValue, check_key
from twcactl.store import Store


def current_settings(store: Store, key: str | None = None) -> dict[str, SettingValue]:
    """The settings of ``store`` as key -> value; only ``key`` when given.

    Raises:
        UsageError: ``key`` is not a setting (exit 2), checked before the file is read.
        InputError: config.toml is unreadable or holds a bad key or value (exit 3).
    """
    if key is not None:
        check_key(key)
    settings = store.settings()
    return {key: settings.value(key)} if key is not None else settings.to_mapping()


def change_setting(store: Store, key: str, value_text: str, operator: str) -> tuple[SettingValue, SettingValue]:
    """Set ``key`` from command-line text, as ``operator`` (a manager), and log it.

    The value is range-checked (``Settings.with_value``) before anything is
    written; the ``ca.config`` log entry (details ``{"key", "old", "new"}``)
    and the rewrite of config.toml happen in one transaction, the log first,
    so a failed write rolls the entry back.

    Returns:
        ``(old, new)``: the value before and after (int or str).

    Raises:
        UsageError: unknown key or a value outside its rule (exit 2).
        StateError: ``operator`` is not a manager (exit 5).
        InputError: config.toml is already bad (exit 3); fix it by hand first.
    """
    check_key(key)
    store.operators.require_manager(operator)
    if key == "operator_auth" and value_text == "required" and not store.operators.any_bound_manager():
        raise StateError("no manager is bound to a certificate yet; operator_auth required would lock the CA.",
                         hint="twcactl operator add NAME --role manager --cert FILE --update, then try again")
    current = store.settings()
    changed = current.with_value(key, value_text)
    old, new = current.value(key), changed.value(key)
    with store.transaction():
        store.log.append(operator=operator, action="ca.config", details={"key": key, "old": old, "new": new})
        store.write_settings(changed)
    return old, new
