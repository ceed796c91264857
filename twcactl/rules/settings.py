"""The CA's settings (``config.toml``) as one frozen, typed value.

Every key of ``config.toml`` is a field of :class:`Settings`, with its type,
its default and its limits, so a wrong type or a misspelt key is refused
where the file is read (exit 3, naming the file and the key) instead of
surfacing as a crash at the next CRL, and a value set with ``ca config`` is
range-checked before it is written (exit 2).

The day settings drive domain.md §4 (the renewal window: renew from 30 days
before expiry), §3 (the refund window of a newly issued certificate) and §10
(how long a CRL stays current).  The URL settings go into issued
certificates (RFC 5280 §4.2.1.13 CRL Distribution Points, §4.2.2.1 Authority
Information Access), so they must be ``http``/``https`` URLs.

Pure: no cryptography, no store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from twcactl.errors import InputError, UsageError
from twcactl.rules.addresses import single_address
from twcactl.rules.operator_auth import OPERATOR_AUTH_VALUES

Kind = Literal["days", "url", "urls", "path", "count", "flag", "host", "text", "source", "email", "store", "auth"]
SettingValue = int | str

#: The largest day count any setting takes: 100 years.  Settings are added to
#: "now" (the CRL's nextUpdate, the renewal horizon); 36,500 days keeps the
#: sum about 7,800 years short of ``datetime.max`` (9999-12-31), so no setting
#: can overflow a date while twcactl runs.
MAX_DAYS = 36_500


#: The default cap on subjectAltName entries per certificate (``max_sans``), and the largest cap allowed.
DEFAULT_MAX_SANS = 100
MAX_SANS_LIMIT = 1_000


def _days(default: int, minimum: int) -> Any:
    return field(default=default, metadata={"kind": "days", "minimum": minimum})


def _count(default: int, minimum: int, maximum: int) -> Any:
    return field(default=default, metadata={"kind": "count", "minimum": minimum, "maximum": maximum})


def _text(kind: Kind) -> Any:
    return field(default="", metadata={"kind": kind, "minimum": 0})


def _flag(default: bool) -> Any:
    return field(default=default, metadata={"kind": "flag", "minimum": 0})


#: The SOURCE forms ``smtp_password_source`` takes: where a nightly job reads the password from, never the
#: password itself (``pass:`` would put it in config.toml; ``stdin`` has no one to type it).
SECRET_SETTING_FORMS = ("env:", "file:", "fd:")


class SettingsFileError(InputError):
    """``config.toml`` holds an unknown key or a value of the wrong type or range (exit 3).

    Attributes:
        source: the file that was read (its path as text).
        key: the offending key.
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}.",
                         hint="correct config.toml by hand; twcactl ca check lists every problem in it")
        self.source = source
        self.key = key


class _Refused(ValueError):
    """One value refused by a field's rule; ``reason`` names the key (internal)."""


@dataclass(frozen=True)
class Settings:
    """The settings of one CA home, as kept in ``config.toml`` (cli-contract.md, ``ca config``).

    Attributes:
        renewal_window_days: a valid certificate is ``expiring`` and renewable
            from this many days before its notAfter (domain.md §4; 0..36,500).
        refund_window_days: revoking a certificate issued less than this many
            days ago refunds its certificate-years (domain.md §3; 0..36,500).
        crl_days: a CRL's nextUpdate is thisUpdate plus this many days (1..36,500).
        crl_url / ocsp_url / ca_issuers_url: put into issued certificates when
            set; ``""`` or an ``http``/``https`` URL.
        pkcs11_module: the PKCS#11 module the card commands use when neither
            ``--module`` nor ``$TWCACTL_PKCS11_MODULE`` names one; ``""`` or an
            absolute path.
        max_sans: the most subjectAltName entries one certificate may carry (policy rule
            ``san.count``; 1..1,000, default 100): a CSR with 50,000 SANs must not become a
            1.3 MB certificate for one certificate-year (issue 12).
        smtp_host / smtp_port / smtp_starttls / smtp_user / smtp_password_source / smtp_from: the
            mail relay for notices to technical contacts (domain.md §3: "the technical contact is
            told"; §4: reminders before expiry; issue 17): a host name or address (``""``: no
            notices), a TCP port (1..65,535, default 587), STARTTLS on or off (default on), a user
            name (``""``: no login), a SOURCE for the password (``env:NAME``, ``file:PATH`` or
            ``fd:N``, never the password itself) and the From address.
        store: where this node's records live (issue 14): ``""`` for the home's own SQLite file,
            or a ``postgresql://`` URL (libpq) of the database several nodes share.  Node-local, never
            holding a password (give it as a SOURCE: ``--store-password``, or libpq's PGPASSFILE);
            changed only by ``twcactl store migrate``, never by ``ca config``.
        public_trust: the CA issues browser-trusted TLS certificates (issue 16; domain.md §10): server
            certificates follow the CA/Browser Forum Baseline Requirements (BR §7.1.2 profiles, the SC-081
            validity caps of :mod:`twcactl.rules.public_trust`, certificate-years sold as subscriptions),
            CRLs are current for at most 10 days (BR §4.9.7) and server certificates are never suspended
            (BR §4.9.13).  ``true`` / ``false`` (default false).
        cps_url: the CPS URI put as a policy qualifier into EV certificates in public-trust mode
            (BR §7.1.2.7.9); ``""`` or an ``http``/``https`` URL.
        base_url: where the CA publishes in the layout ``twcactl serve`` answers (issue 25,
            :mod:`twcactl.rules.publication`): each certificate gets its own issuer's ``/crl/NAME.crl``,
            ``/ca/NAME.cer`` and (leaves) ``/ocsp`` under it, unless ``crl_url`` / ``ocsp_url`` /
            ``ca_issuers_url`` say otherwise; ``""`` or an ``http``/``https`` URL.
        operator_auth: ``required`` (every change is signed by the operator's key; issue 27), ``off``
            (today's single-user behaviour) or ``""`` (the default: required in public-trust mode, off
            elsewhere; :func:`twcactl.rules.operator_auth.auth_required`).
        caa_identities / mpic_perspectives / mpic_token_file / pre_issuance_lint / dns_resolver / dv_http_port:
            the public-trust process (issue 26): the CA's CAA issuer domain names (comma-separated, RFC 8659
            §4.2), the remote perspectives' ``http(s)`` URLs (comma-separated, BR §3.2.2.9), the file holding the
            bearer token they share, linting before signing outside public-trust mode (BR §4.3.1.2; always on in
            it), the DNS resolver ``ADDRESS:PORT`` for DCV and CAA (``""``: the system's) and the port
            ``http-file`` validation connects to (default 80).
    """

    renewal_window_days: int = _days(30, 0)
    refund_window_days: int = _days(30, 0)
    crl_days: int = _days(7, 1)
    crl_url: str = _text("url")
    ocsp_url: str = _text("url")
    ca_issuers_url: str = _text("url")
    pkcs11_module: str = _text("path")
    max_sans: int = _count(DEFAULT_MAX_SANS, 1, MAX_SANS_LIMIT)
    smtp_host: str = _text("host")
    smtp_port: int = _count(587, 1, 65_535)
    smtp_starttls: bool = _flag(True)
    smtp_user: str = _text("text")
    smtp_password_source: str = _text("source")
    smtp_from: str = _text("email")
    store: str = _text("store")
    public_trust: bool = _flag(False)
    cps_url: str = _text("url")
    base_url: str = _text("url")
    operator_auth: str = _text("auth")
    caa_identities: str = _text("text")
    mpic_perspectives: str = _text("urls")
    mpic_token_file: str = _text("path")
    pre_issuance_lint: bool = _flag(False)
    dns_resolver: str = _text("host")
    dv_http_port: int = _count(80, 1, 65_535)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every setting's name, in the order ``ca config`` lists them."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> Settings:
        """The settings in ``data`` (parsed TOML) over the defaults.

        Args:
            data: key -> value as tomllib returned them; missing keys take their default.
            source: the file ``data`` came from, named in the error.

        Raises:
            SettingsFileError: (an InputError, exit 3) the first unknown key, or a
                value of the wrong type (``True`` is not a number) or out of range.
        """
        problems = settings_problems(data)
        if problems:
            key, reason = problems[0]
            raise SettingsFileError(source, key, reason)
        return cls(**dict(data))

    def to_mapping(self) -> dict[str, SettingValue]:
        """key -> value for every setting (what ``config.toml`` and ``ca config --json`` hold)."""
        return {name: getattr(self, name) for name in self.keys()}

    def value(self, key: str) -> SettingValue:
        """One setting's value.

        Raises:
            UsageError: ``key`` is not a setting (exit 2).
        """
        check_key(key)
        return getattr(self, key)  # type: ignore[no-any-return]

    def with_value(self, key: str, text: str) -> Settings:
        """A copy with ``key`` set from command-line ``text`` (``ca config KEY VALUE``).

        Day settings take a whole number within their range (up to
        :data:`MAX_DAYS`); URL settings an ``http``/``https`` URL; ``pkcs11_module``
        an absolute path; ``""`` clears a URL or path.

        Raises:
            UsageError: unknown key, or a value that breaks the key's rule (exit 2).
        """
        check_key(key)
        kind, minimum = _rule(key)
        if kind == "store":
            raise UsageError(f"{key} is changed by twcactl store migrate --to URL, not by ca config.")
        parsed: SettingValue = text
        if kind == "flag":
            if text.lower() not in ("true", "false"):
                raise UsageError(f"{key} takes true or false, not {text!r}.")
            parsed = text.lower() == "true"
        elif kind in ("days", "count"):
            try:
                parsed = int(text)
            except ValueError as exc:
                unit = "number of days" if kind == "days" else "number"
                raise UsageError(f"{key} takes a whole {unit}, not {text!r}.") from exc
        try:
            _check(key, parsed, kind, minimum)
        except _Refused as exc:
            raise UsageError(f"{exc}.") from exc
        changes: dict[str, Any] = {key: parsed}  # the key is checked above; the value by its rule
        return replace(self, **changes)


#: Settings that name where this node reads a secret from (a SOURCE: ``env:``, ``file:``, ``fd:``), and the
#: settings that say where that secret is sent (the relay that receives the SMTP password).  They are
#: node-local (issue 27): a manager on node A who could set them in the shared database could make node B
#: send B's CA passphrase (``env:CA_PASS``) or B's relay password to a host of A's choosing.
SECRET_SOURCE_KEYS: frozenset[str] = frozenset({"smtp_password_source"})
SECRET_DESTINATION_KEYS: frozenset[str] = frozenset({"smtp_host", "smtp_port", "smtp_starttls", "smtp_user"})

#: Settings that belong to one node (its config.toml) rather than to the CA: on PostgreSQL every other
#: setting is shared by the nodes and kept in the database (issue 14); a value of these keys found in the
#: database is never used (issue 27: secrets stay on their node).
NODE_LOCAL_KEYS: frozenset[str] = frozenset({"store", "pkcs11_module"}) | SECRET_SOURCE_KEYS | SECRET_DESTINATION_KEYS

#: URL schemes of the PostgreSQL store (libpq connection URIs).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(text: str) -> bool:
    """True when ``text`` names a PostgreSQL store (a libpq ``postgresql://`` or ``postgres://`` URI)."""
    return text.startswith(POSTGRES_SCHEMES)


def store_url_problem(text: str) -> str | None:
    """Why ``text`` cannot be a ``store`` URL, or None: a ``postgresql://`` URI without a password in it
    (a password in a file or argv is readable by others; issue 14: it is given as a SOURCE instead)."""
    if not is_postgres_url(text) or not text.isprintable() or any(c.isspace() for c in text):
        return "must be a postgresql:// URL"
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return "must be a postgresql:// URL"
    if password is not None or "password=" in parts.query:
        return "must not hold a password; give it as a SOURCE (--store-password) or in libpq's PGPASSFILE"
    return None


def check_key(key: str) -> None:
    """Refuse a name that is not a setting.

    Raises:
        UsageError: ``key`` is not a field of :class:`Settings` (exit 2).
    """
    if key not in Settings.keys():
        raise UsageError(f"unknown setting {key!r}; settings are: {', '.join(Settings.keys())}.")


def settings_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every unknown key and every refused value in ``data`` (parsed ``config.toml``).

    Returns:
        ``(key, reason)`` pairs in the file's key order; empty when ``data`` is sound.
        ``reason`` is one clause naming the key, e.g.
        ``"crl_days must be a whole number of days, not 'seven'"``.
    """
    problems: list[tuple[str, str]] = []
    for key, value in data.items():
        if key not in Settings.keys():
            problems.append((key, f"unknown setting {key!r}; settings are: {', '.join(Settings.keys())}"))
            continue
        kind, minimum = _rule(key)
        try:
            _check(key, value, kind, minimum)
        except _Refused as exc:
            problems.append((key, str(exc)))
    return problems


def _rule(key: str) -> tuple[Kind, int]:
    meta = next(f.metadata for f in fields(Settings) if f.name == key)
    return meta["kind"], meta["minimum"]


def _check(key: str, value: object, kind: Kind, minimum: int) -> None:
    """Raise :class:`_Refused` when ``value`` breaks the rule of its ``kind``."""
    if kind == "days":
        # bool is an int subclass: `crl_days = true` must not read as 1 day
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused(f"{key} must be a whole number of days, not {value!r}")
        if not minimum <= value <= MAX_DAYS:
            raise _Refused(f"{key} must be from {minimum} to {MAX_DAYS} days, not {value}")
        return
    if kind == "count":
        maximum = next(f.metadata["maximum"] for f in fields(Settings) if f.name == key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused(f"{key} must be a whole number, not {value!r}")
        if not minimum <= value <= maximum:
            raise _Refused(f"{key} must be from {minimum} to {maximum}, not {value}")
        return
    if kind == "flag":
        if not isinstance(value, bool):
            raise _Refused(f"{key} must be true or false, not {value!r}")
        return
    if not isinstance(value, str):
        raise _Refused(f"{key} must be text, not {value!r}")
    if value == "":
        return
    if kind == "auth":
        if value not in OPERATOR_AUTH_VALUES:
            raise _Refused(f"{key} takes {' or '.join(OPERATOR_AUTH_VALUES)}, not {value!r}")
        return
    if kind in ("host", "text", "source", "email"):
        _check_mail_text(key, value, kind)
        return
    _check_location(key, value, kind)


def _check_location(key: str, value: str, kind: Kind) -> None:
    """Raise :class:`_Refused` when ``value`` (not empty) is not the path, web URL or store URL ``kind`` takes."""
    if kind == "path" and not (value.startswith("/") and value.isprintable()):
        raise _Refused(f"{key} must be an absolute path (or \"\" to clear), not {value!r}")
    if kind == "store":
        problem = store_url_problem(value)
        if problem is not None:
            raise _Refused(f"{key} {problem} (or \"\" for the home's SQLite file)")
    if kind == "url" and not _is_web_url(value):
        raise _Refused(f"{key} must be an http:// or https:// URL (or \"\" to clear), not {value!r}")
    if kind == "urls" and not all(_is_web_url(u) for u in value.split(",")):
        raise _Refused(f"{key} must be http:// or https:// URLs separated by commas (or \"\" to clear), "
                       f"not {value!r}")


def _is_web_url(value: str) -> bool:
    if not value.isascii() or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_mail_text(key: str, value: str, kind: Kind) -> None:
    """The rules of the mail settings (issue 17): printable ASCII without spaces (a header or an SMTP
    command must never receive a CR/LF); a host is a DNS name or an address; a source is ``env:``,
    ``file:`` or ``fd:``; a From address is ``local@domain``."""
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise _Refused(f"{key} must be printable ASCII without spaces, not {value!r}")
    if kind == "host" and not all(c.isalnum() or c in ".-:[]" for c in value):
        raise _Refused(f"{key} must be a host name or an IP address, not {value!r}")
    if kind == "source" and not value.startswith(SECRET_SETTING_FORMS):
        raise _Refused(f"{key} must be a SOURCE (env:NAME, file:PATH or fd:N; never the password itself), "
                       f"not a {value.partition(':')[0] + ':'!r} source")
    if kind == "email" and single_address(value) != value:
        raise _Refused(f"{key} must be an e-mail address (local@domain), not {value!r}")
