"""The request policy: which CSRs twcactl accepts under which profile.

Pure functions over :class:`twcactl.models.RequestFacts`: no I/O, no
printing, no environment.  :func:`check_request` applies every rule of a
profile and returns all findings in :data:`RULE_ORDER`; the CLI renders them
(``csr check``) and the issuer refuses a request with a failed finding.

The rules digest ``domain.md`` §1 (CSR subject and key), §2 (Management SSL
CN rules, seed manual 002 §3.1) and §7 (personal subjects); the page
``docs/policy-rules.md`` lists every rule with its source.  Rule IDs are a
public contract (JSON ``findings[].rule``): never rename one.

Every message may reach a terminal, so any piece of the request quoted in a
message goes through :func:`_show`, which escapes control and other
non-printable characters and shortens very long values.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twcactl.errors import UsageError
from twcactl.models import (
    PROFILES,
    SSL_PROFILES,
    AccountPolicy,
    CheckResult,
    Finding,
    RequestFacts,
)
from twcactl.rules.identifiers import (
    business_number_problem,
    national_id_problem,
    parse_personal_cn,
)
from twcactl.rules.settings import DEFAULT_MAX_SANS

__all__ = [
    "BUSINESS_CATEGORIES",
    "EV_IDENTITY_ATTRIBUTES",
    "ISO_3166_ALPHA2",
    "RULE_ORDER",
    "check_request",
    "dns_name_problems",
    "domain_match",
    "is_public_suffix",
    "normalise_domain",
    "printable_problem",
    "rules_for",
]

RULE_ORDER: tuple[str, ...] = (
    "subject.required",
    "subject.country",
    "subject.printable",
    "subject.org",
    "subject.identity",
    "cn.syntax",
    "cn.ip-address",
    "cn.idn",
    "cn.label",
    "cn.length",
    "cn.domain",
    "cn.wildcard",
    "san.dns",
    "san.type",
    "san.count",
    "key.strength",
    "sig.hash",
    "sig.valid",
    "personal.identifier",
    "personal.email",
    "personal.business-number",
)

# The syntax rules of one DNS name, in RULE_ORDER order (cn.domain needs an
# account, so it is not one of them).
_NAME_RULES: tuple[str, ...] = ("cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length", "cn.wildcard")
_SSL_ONLY = frozenset(_NAME_RULES) | {"cn.domain", "san.dns", "subject.identity"}
_PERSONAL_ONLY = frozenset({"personal.identifier", "personal.email", "personal.business-number"})
_ACCOUNT_ONLY = frozenset({"subject.org", "cn.domain", "subject.identity", "personal.email",
                           "personal.business-number"})
#: The EV identity attributes (EV Guidelines §7.1.4.2.2-§7.1.4.2.3, old numbering §9.2.4-§9.2.5), which
#: come from the account, never from the request.
EV_IDENTITY_ATTRIBUTES = ("serialNumber", "jurisdictionC", "jurisdictionST", "jurisdictionL", "businessCategory")
#: The EV businessCategory values (EV Guidelines §7.1.4.2.3).
BUSINESS_CATEGORIES = ("Private Organization", "Government Entity", "Business Entity", "Non-Commercial Entity")
_BUSINESS_NUMBER_RE = re.compile(r"(?<![0-9])[0-9]{8}(?![0-9])")

#: ISO 3166-1 alpha-2 codes officially assigned (249 codes).  Reserved codes
#: such as ``UK``, ``EU`` or user-assigned ``XK`` are deliberately absent: a
#: certificate's C must be a real assigned code (RFC 5280 §4.1.2.4 via X.520).
ISO_3166_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
    BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV
    CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
    GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM
    IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK
    LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
    MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
    PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS
    ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
    UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

_MAX_NAME_OCTETS = 253  # RFC 1035 §2.3.4: 255 on the wire = 253 in text without the root dot
_MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4
_LDH = frozenset(string.ascii_letters + string.digits + "-")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_NUMERIC_LABEL_RE = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_HEX_PART_RE = re.compile(r"0[xX][0-9A-Fa-f]*")
_OCTAL_PART_RE = re.compile(r"0[0-7]*")
_DECIMAL_PART_RE = re.compile(r"[1-9][0-9]*")
_WHITESPACE_RUN_RE = re.compile(r"\s+")

_SHOW_LIMIT = 100  # characters of one quoted value in a message
_LIST_LIMIT = 10  # items (SANs, attributes, labels) named in one message

_GOOD_CURVES = {"secp256r1": "P-256", "prime256v1": "P-256", "p-256": "P-256", "secp384r1": "P-384", "p-384": "P-384"}
_WEAK_HASHES = frozenset({"md2", "md4", "md5", "sha1"})
_HASH_NAMES = {
    "md2": "MD2", "md4": "MD4", "md5": "MD5", "sha1": "SHA-1", "sha224": "SHA-224", "sha256": "SHA-256",
    "sha384": "SHA-384", "sha512": "SHA-512", "sha512224": "SHA-512/224", "sha512256": "SHA-512/256",
    "sha3224": "SHA3-224", "sha3256": "SHA3-256",
    "sha3384": "SHA3-384", "sha3512": "SHA3-512",
}  # fmt: skip
_SAN_TYPE_NAMES = {"dns": "DNS name", "ip": "IP address", "email": "e-mail address", "uri": "URI", "other": "otherName"}
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


# --------------------------------------------------------------------------
# Showing request content safely


def _escape_char(ch: str) -> str:
    """The repr-style escape of one character (``\\x1b``, ``\\u202e``...)."""
    code = ord(ch)
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _show(value: str, limit: int = _SHOW_LIMIT) -> str:
    """``value`` made safe for a terminal: non-printables escaped, shortened.

    Backslashes are doubled so that an escape in the output can never be
    mistaken for a literal backslash in the input.  Non-ASCII characters that
    are printable (``台``) stay readable; bidi overrides, zero-width and other
    format characters are not printable for :meth:`str.isprintable` and get
    escaped.  An empty value shows as ``""`` so that a message never has a
    hole in it.
    """
    if value == "":
        return '""'
    if len(value) <= limit and value.isprintable() and "\\" not in value:  # pragma: no mutate (fast path)
        return value  # what the loop below returns for it, without the loop (issue 18: a batch runs it 7 times a CSR)
    out: list[str] = []
    length = 0
    for ch in value:
        piece = "\\\\" if ch == "\\" else ch if ch.isprintable() else _escape_char(ch)
        if length + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)


def _quoted(value: str) -> str:
    return f'"{_show(value)}"' if value else '""'


def _octets(value: str) -> int:
    # surrogatepass: a lone surrogate from a hostile request must not crash the check.
    return len(value.encode("utf-8", "surrogatepass"))


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _limited(items: list[str], sep: str = "; ") -> str:
    """Join at most ``_LIST_LIMIT`` items, saying how many were left out."""
    shown = sep.join(items[:_LIST_LIMIT])
    if len(items) > _LIST_LIMIT:
        shown += f"{sep}and {len(items) - _LIST_LIMIT} more"
    return shown


def _number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _fold(name: str) -> str:
    """Case-fold a DNS name for comparison: ASCII lower case, one trailing dot off.

    Only ASCII letters fold: ``str.lower`` would turn e.g. the Kelvin sign
    into ``k`` and let a look-alike name match an agreed domain.
    """
    folded = name.translate(_ASCII_LOWER)
    return folded[:-1] if folded.endswith(".") else folded


# --------------------------------------------------------------------------
# Printable values


def printable_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable subject value, or None if it is.

    Acceptable: non-empty, only printable ASCII (0x20-0x7E), no leading or
    trailing whitespace.  The manuals insist every field be English
    (domain.md §1; 000 §4.1.6, 002 §3.3.1.1); ``csr new`` calls this before
    generating any key.

    Args:
        value: one subject attribute value as typed or decoded.

    Returns:
        None, or a short reason without the attribute name, e.g.
        ``"contains non-ASCII character '台'"``; control and other
        non-printable characters are shown escaped (``'\\x1b'``).
    """
    if value == "":
        return "is empty"
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"contains control character '{_escape_char(ch)}'"
    for ch in value:
        if ord(ch) > 0x7E:
            return f"contains non-ASCII character '{_show(ch)}'"
    if value != value.strip():
        return "has leading or trailing whitespace"
    return None


# --------------------------------------------------------------------------
# DNS names


@dataclass(frozen=True)
class _NameReport:
    """The syntax rules applied to one name.

    ``host`` is the name with what cn.syntax reported taken off (scheme, user
    info, path, port, brackets, one trailing dot, outer whitespace); the later
    rules look at ``host`` so that one mistake gives one failure.
    ``problems`` maps a rule ID of ``_NAME_RULES`` to its failure sentence.
    """

    host: str
    problems: dict[str, str]


def _is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _strip_decorations(name: str) -> tuple[str, list[str]]:
    """Take URL decorations off ``name``: ``(host, [what was found, ...])``."""
    found: list[str] = []
    s = name
    if any(ch.isspace() for ch in s):
        found.append("whitespace")
        s = s.strip()
    m = _SCHEME_RE.match(s)
    if m:
        found.append(f"a scheme {_quoted(m.group(0))}")
        s = s[m.end() :]
    cut = min((i for i in (s.find("/"), s.find("?"), s.find("#")) if i >= 0), default=len(s))
    if cut < len(s):
        kind = {"/": "a path", "?": "a query", "#": "a fragment"}[s[cut]]
        found.append(f"{kind} {_quoted(s[cut:])}")
        s = s[:cut]
    if "@" in s:
        user, _, s = s.rpartition("@")
        found.append(f"user info {_quoted(user + '@')}")
    if s.startswith("[") and "]" in s:
        inner, _, after = s[1:].partition("]")
        if after.startswith(":"):
            found.append(f"a port {_quoted(after)}")
        elif after:
            found.append(f"text after the brackets {_quoted(after)}")
        if not _is_ip_literal(inner):
            # Brackets around an IPv6 address are cn.ip-address's business.
            found.append("square brackets")
        s = inner
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
        # A non-numeric "port" is more likely a typo; cn.label reports the ':'.
        if port == "" or all(c in string.digits for c in port):
            found.append(f"a port {_quoted(':' + port)}")
            s = host
    if len(s) > 1 and s.endswith("."):
        found.append("a trailing dot")
        s = s[:-1]
    return s, found


def _inet_aton(host: str) -> str | None:
    """The dotted quad that ``inet_aton`` would read ``host`` as, or None.

    Resolvers accept 1 to 4 parts, each decimal, octal (leading 0) or hex
    (0x), the last part filling the remaining bytes: ``192.168.1`` is
    192.168.0.1, ``3232235777`` and ``0xC0A80101`` are 192.168.1.1.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        # Longer parts overflow 32 bits anyway; the limit also keeps int()
        # away from its digit limit on hostile input.
        if len(part) > 34:
            return None
        if _HEX_PART_RE.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCTAL_PART_RE.fullmatch(part):
            numbers.append(int(part, 8))
        elif _DECIMAL_PART_RE.fullmatch(part):
            numbers.append(int(part))
        else:
            return None
    *front, last = numbers
    if any(n > 255 for n in front) or last >= 256 ** (4 - len(front)):
        return None
    value = last
    for i, n in enumerate(front):
        value += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(value))


def _ip_problem(host: str) -> str | None:
    """cn.ip-address: the predicate when ``host`` is an IP address in any notation."""
    if host == "":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return f"is an IPv{address.version} address; a certificate name must be a host name, not an IP address"
    dotted = _inet_aton(host)
    if dotted is not None:
        return f"is the IPv4 address {dotted} in another notation; a certificate name must be a host name"
    if all(_NUMERIC_LABEL_RE.fullmatch(label) for label in host.split(".")):
        return "is made only of numeric labels, which resolvers read as an IPv4 address"  # pragma: no mutate (prose)
    return None


def _idn_problem(host: str) -> str | None:
    """cn.idn: the predicate when ``host`` is an internationalised name."""
    for ch in host:
        if not ch.isascii():
            return (
                f"is an internationalised domain name (non-ASCII character '{_show(ch)}'); "
                "only ASCII names are accepted"  # pragma: no mutate (prose)
            )
    for label in host.split("."):
        if label[:4].translate(_ASCII_LOWER) == "xn--":
            return (
                f"is an internationalised domain name (punycode label {_quoted(label)}); only ASCII names are accepted"
            )
    return None


def _label_problem(label: str) -> str | None:
    """Why one label breaks the LDH rule, or None.

    Non-ASCII characters are cn.idn's and ``*`` cn.wildcard's, so neither is
    reported here: one mistake, one failing rule.
    """
    if label == "":
        return "an empty label (two dots in a row or a leading dot)"  # pragma: no mutate (prose)
    bad = sorted({ch for ch in label if ch.isascii() and ch not in _LDH and ch != "*"})
    if bad:
        chars = ", ".join(f"'{_show(ch)}'" for ch in bad[:5])
        return f"{_quoted(label)} contains {chars}"
    if label.startswith("-"):
        return f"{_quoted(label)} starts with a hyphen"
    if label.endswith("-"):
        return f"{_quoted(label)} ends with a hyphen"
    octets = _octets(label)
    if octets > _MAX_LABEL_OCTETS:
        return f"{_quoted(label[:20] + '...')} is {octets} octets long"
    return None


def _labels_problem(host: str) -> str | None:
    """cn.label: the predicate naming every bad label of ``host``."""
    if host == "":
        return "is empty"
    bad = [p for p in map(_label_problem, host.split(".")) if p is not None]
    if not bad:
        return None
    noun = "a bad label" if len(bad) == 1 else "bad labels"
    return (
        f"has {noun}: {_limited(bad, ', ')}; a label is 1 to 63 octets of A-Z, a-z, 0-9 and '-' "
        "and starts and ends with a letter or digit"  # pragma: no mutate (prose)
    )


def _length_problem(host: str) -> str | None:
    octets = _octets(host)
    if octets > _MAX_NAME_OCTETS:
        return f"is {octets} octets long; a name has at most {_MAX_NAME_OCTETS} (RFC 1035)"
    return None


def _wildcard_problem(host: str, allow_wildcard: bool) -> str | None:
    """cn.wildcard: ``*`` only as the whole front label, and only if allowed."""
    if "*" not in host:
        return None
    if not allow_wildcard:
        return "contains '*', which only the wildcard profile allows"  # pragma: no mutate (prose)
    labels = host.split(".")
    if labels[0] != "*" or any("*" in label for label in labels[1:]):
        return (
            "has '*' other than as the whole front label; "  # pragma: no mutate (prose)
            "a wildcard name looks like *.twca.com.tw"  # pragma: no mutate (prose)
        )
    if len(labels) < 3:
        return (
            "has fewer than two labels after '*.'; "  # pragma: no mutate (prose)
            "a wildcard cannot cover a whole top-level domain"  # pragma: no mutate (prose)
        )
    return None


@functools.lru_cache(maxsize=1024)
def _analyse_name(name: str, *, allow_wildcard: bool) -> _NameReport:
    """Apply the rules of ``_NAME_RULES`` to one name (CN or DNS SAN).

    Cached: the CN is usually also the first DNS SAN, and a batch repeats
    names; the report is never mutated by its readers.
    """
    host, found = _strip_decorations(name)
    predicates: dict[str, str | None] = {
        "cn.syntax": None,
        "cn.ip-address": _ip_problem(host),
        "cn.idn": _idn_problem(host),
        "cn.label": _labels_problem(host),
        "cn.length": _length_problem(host),
        "cn.wildcard": _wildcard_problem(host, allow_wildcard),
    }
    problems = {rule: f"{_show(host)} {p}" for rule, p in predicates.items() if p is not None}
    if found:
        advice = f"use the bare host name {_show(host)}" if host and host != name else "use a bare host name"
        problems["cn.syntax"] = f"{_show(name)} has {_join(found)}; {advice}"
    return _NameReport(host, {rule: problems[rule] for rule in _NAME_RULES if rule in problems})


def dns_name_problems(name: str, *, allow_wildcard: bool) -> list[tuple[str, str]]:
    """The DNS name rules that ``name`` breaks, as ``[(rule_id, reason), ...]``.

    Applies cn.syntax, cn.ip-address, cn.idn, cn.label, cn.length and
    cn.wildcard (domain.md §2, 002 §3.1 items 4-5; RFC 1035 §2.3.4 and
    RFC 1123 §2.1 for the label and name limits; RFC 5280 §4.2.1.6 for
    dNSName).  cn.domain is not included: it needs an account (see
    :func:`domain_match`).

    Args:
        name: a CN or a DNS SAN value, as found in the request.
        allow_wildcard: True under the ``wildcard`` profile, where a single
            whole ``*`` front label is permitted (not required).

    Returns:
        The failing rules in :data:`RULE_ORDER` order, each with a
        one-sentence reason that names the offending name (escaped); an
        empty list when the name is fine.  Never raises.
    """
    return list(_analyse_name(name, allow_wildcard=allow_wildcard).problems.items())


def domain_match(name: str, domains: Iterable[str]) -> str | None:
    """The agreed domain that ``name`` may be issued under, or None.

    ``name`` matches ``domain`` when it equals it or is exactly one label in
    front of it (domain.md §2, 002 §3.1 item 5: under ``twca.com.tw``,
    ``www.twca.com.tw`` yes, ``www.level2.twca.com.tw`` no).  Comparison is
    ASCII case-insensitive and ignores one trailing dot on either side; a
    leading ``*.`` counts as that one label.

    Args:
        name: a host name (CN or DNS SAN).
        domains: the account's agreed domains.

    Returns:
        The matching element of ``domains`` as given (an exact match is
        preferred over a one-label match), or None.
    """
    wanted = _fold(name)
    if not wanted:
        return None
    candidates = [(d, _fold(d)) for d in domains]
    for domain, folded in candidates:
        if folded and folded == wanted:
            return domain
    for domain, folded in candidates:
        if folded and wanted.endswith("." + folded):
            front = wanted[: -len(folded) - 1]
            if front and "." not in front:
                return domain
    return None


def _domain_problem(host: str, domains: tuple[str, ...]) -> str | None:
    """cn.domain: the predicate explaining why ``host`` is not under an agreed domain."""
    if domain_match(host, domains) is not None:
        return None
    if not domains:
        return "is not under an agreed domain (the account has none)"  # pragma: no mutate (prose)
    wanted = _fold(host)
    below = [d for d in domains if _fold(d) and wanted.endswith("." + _fold(d))]
    if below:
        domain = max(below, key=lambda d: len(_fold(d)))
        front = wanted[: -len(_fold(domain)) - 1].split(".")
        if "" in front:
            return f"has an empty label in front of {_show(domain)}"
        return (
            f"is {_number_word(len(front))} labels below {_show(domain)}; "
            "only the domain itself or one host label in front is allowed"
        )
    return f"is not under an agreed domain ({_limited([_show(d) for d in domains], ', ')})"


def normalise_domain(domain: str) -> str:
    """An agreed domain as stored: ASCII lower case, one trailing dot removed.

    For ``account add --domain``.  The domain must itself pass the name rules
    of :func:`dns_name_problems` (no scheme, IP address, IDN, bad label,
    over-long name or ``*``; domain.md §2) and have at least two labels, so
    that an account can never cover a whole top-level domain.

    Args:
        domain: the domain as typed.

    Returns:
        The normalised domain (str), e.g. ``"twca.com.tw"`` for ``"TWCA.com.tw."``.

    Raises:
        twcactl.errors.UsageError: with a one-sentence message naming the
            domain (escaped) and what is wrong with it.
    """
    bare = domain[:-1] if len(domain) > 1 and domain.endswith(".") else domain
    report = _analyse_name(bare, allow_wildcard=False)
    if "cn.wildcard" in report.problems:
        raise UsageError(
            f"domain {_show(bare)} contains '*'; an agreed domain is a plain name like twca.com.tw "
            "(any wildcard certificate under it is allowed by the wildcard profile)"  # pragma: no mutate (prose)
        )
    first = next(iter(report.problems.values()), None)
    if first is not None:
        raise UsageError(f"domain {first}")
    if "." not in bare:
        raise UsageError(
            f"domain {_show(bare)} has only one label; an agreed domain has at least two, like twca.com.tw"
        )
    folded = bare.translate(_ASCII_LOWER)
    if is_public_suffix(folded):
        raise UsageError(
            f"domain {_show(bare)} is a public suffix (Public Suffix List); agreeing it would let the account "
            f"certify every name registered under it: agree the organisation's own domain, like twca.{folded}"
        )
    return folded


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList  # 60 ms to load its list: only when a domain is agreed

    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    """True when ``domain`` (lower case, no trailing dot) is itself a public suffix: ``com.tw``, ``co.uk``,
    ``github.io`` (ICANN and private sections of the Public Suffix List, as the maintained
    ``publicsuffixlist`` package ships it; an unknown top-level label counts as a suffix by the list's
    ``*`` rule).  ``twca.com.tw`` is not: it is one label below the suffix ``com.tw``.
    """
    return bool(_public_suffixes().is_public(domain))


# --------------------------------------------------------------------------
# The rules


@dataclass(frozen=True)
class _Context:
    """What every rule may look at: the request, the account, the profile."""

    facts: RequestFacts
    account: AccountPolicy | None
    profile: str
    cn: str | None
    cn_report: _NameReport | None
    max_sans: int = DEFAULT_MAX_SANS


_RuleFn = Callable[[_Context], tuple[bool, str]]
_SINGLE_VALUED = ("C", "ST", "L", "O", "CN")


def _subject_required(ctx: _Context) -> tuple[bool, str]:
    required = ("C", "ST", "L", "O", "CN") if ctx.profile in SSL_PROFILES else ("C", "O", "CN")
    missing = [n for n in required if not ctx.facts.values(n)]
    repeated = [n for n in _SINGLE_VALUED if len(ctx.facts.values(n)) > 1]
    if not missing and not repeated:
        return True, f"{', '.join(required)} present"
    parts: list[str] = []
    if missing:
        present = list(dict.fromkeys(_show(a.name) for a in ctx.facts.subject))
        parts.append(f"missing {', '.join(missing)} (present: {', '.join(present) or 'none'})")
    # A second O or CN would slip past the rules that read the first one.
    parts.extend(f"more than one {n}" for n in repeated)
    return False, "; ".join(parts)


def _subject_country(ctx: _Context) -> tuple[bool, str]:
    countries = ctx.facts.values("C")
    if not countries:
        return False, "C is missing"
    for c in countries:
        if c in ISO_3166_ALPHA2:
            continue
        if c.isascii() and c.upper() in ISO_3166_ALPHA2:
            return False, f"C {_quoted(c)} must be upper case: {c.upper()}"
        return False, f"C {_quoted(c)} is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. TW)"
    return True, ", ".join(countries)


def _subject_printable(ctx: _Context) -> tuple[bool, str]:
    problems = [
        f"{_show(a.name)} {reason}" for a in ctx.facts.subject if (reason := printable_problem(a.value)) is not None
    ]
    if problems:
        return False, f"{_limited(problems)}; every field must be English (printable ASCII)"
    return True, (
        "all values printable ASCII"  # pragma: no mutate (prose)
    )


def _collapse_inner_whitespace(value: str) -> str:
    """Inner runs of whitespace become one space; outer whitespace is kept.

    Outer padding is kept so that a padded O fails here as well: the
    certificate would carry it, and it is not the registered name.
    """
    core = value.strip()
    if not core:
        return value
    start = value.index(core[0])
    return value[:start] + _WHITESPACE_RUN_RE.sub(" ", core) + value[start + len(core) :]


def _subject_org(ctx: _Context) -> tuple[bool, str]:
    assert ctx.account is not None  # only applied with an account
    names = (ctx.account.org, *ctx.account.org_aliases)
    accepted = {_collapse_inner_whitespace(n) for n in names}
    orgs = ctx.facts.values("O")
    if not orgs:
        return False, (
            "O is missing"  # pragma: no mutate (prose)
        )
    for o in orgs:
        if _collapse_inner_whitespace(o) in accepted:
            continue
        wanted = " or ".join(_quoted(n) for n in names[:_LIST_LIMIT])
        why = ""
        folded = o.casefold()
        if any(folded == n.casefold() for n in names):
            why = " (the case differs)"  # pragma: no mutate (prose)
        elif any(_letters_digits(o) == _letters_digits(n) for n in names):
            why = " (the punctuation or spacing differs)"  # pragma: no mutate (prose)
        return False, f"O {_quoted(o)} is not the account's registered English name {wanted}{why}"
    return True, f"O {_quoted(orgs[0])} matches the account"


def _subject_identity(ctx: _Context) -> tuple[bool, str]:
    assert ctx.account is not None  # only applied with an account
    account = ctx.account
    wanted: dict[str, str | None] = {
        "serialNumber": account.business_number, "jurisdictionC": account.jurisdiction_country,
        "jurisdictionST": account.jurisdiction_state, "jurisdictionL": account.jurisdiction_locality,
        "businessCategory": account.business_category,
    }
    problems: list[str] = []
    for name, want in wanted.items():
        for value in ctx.facts.values(name):
            if value != want:
                recorded = f"the account's {_quoted(want)}" if want else (
                    "recorded for the account (it has none)"  # pragma: no mutate (prose)
                )
                problems.append(f"{name} {_quoted(value)} is not {recorded}")
    if problems:
        return False, (f"{_limited(problems)}; the EV identity comes from the account "
                       "(see it with: twcactl account show)"  # pragma: no mutate (prose)
                       )
    shown = ", ".join(f"{name} {_show(want)}" for name, want in wanted.items() if want)
    stated = [name for name in wanted if ctx.facts.values(name)]
    if not stated:
        return True, f"the request states no EV identity; the account's is {shown}"
    return True, f"{', '.join(stated)} match the account ({shown})"


def _letters_digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum())


def _name_rule(ctx: _Context, *, rule: str, passing: Callable[[_NameReport], str]) -> tuple[bool, str]:
    """A CN rule of ``_NAME_RULES``: fail with "no CN", with the CN report's reason, or pass.

    ``_RULES`` binds ``rule`` and ``passing`` with :func:`functools.partial` rather than a closure
    factory, so that this body runs on every check (mutation testing switches a mutant on per call:
    a factory runs only at import; docs/testing.md).
    """
    if ctx.cn_report is None:
        return False, "no CN"
    reason = ctx.cn_report.problems.get(rule)
    if reason is not None:
        return False, reason
    return True, passing(ctx.cn_report)


def _cn_wildcard(ctx: _Context) -> tuple[bool, str]:
    if ctx.cn_report is None:
        return False, "no CN"
    reason = ctx.cn_report.problems.get("cn.wildcard")
    if reason is not None:
        return False, reason
    host = ctx.cn_report.host
    if ctx.profile == "wildcard":
        if not host.startswith("*."):
            return False, (
                f"{_show(host)} has no '*.' front label; the wildcard profile is for names like "
                "*.twca.com.tw (use the ssl profile otherwise)"  # pragma: no mutate (prose)
            )
        return True, (
            "'*.' front label"  # pragma: no mutate (prose)
        )
    return True, (
        "no wildcard"  # pragma: no mutate (prose)
    )


def _cn_domain(ctx: _Context) -> tuple[bool, str]:
    assert ctx.account is not None  # only applied with an account
    if ctx.cn_report is None:
        return False, "no CN"
    host = ctx.cn_report.host
    problem = _domain_problem(host, ctx.account.domains)
    if problem is not None:
        return False, f"{_show(host)} {problem}"
    domain = domain_match(host, ctx.account.domains) or ""
    if _fold(host) == _fold(domain):
        return True, f"{_show(host)} is an agreed domain"
    return True, f"{_show(host)} is one host label in front of {_show(domain)}"


def _san_dns(ctx: _Context) -> tuple[bool, str]:
    names = [value for kind, value in ctx.facts.sans if kind == "dns"]
    if not names:
        return True, (
            "no DNS SANs"  # pragma: no mutate (prose)
        )
    offences: list[str] = []
    for name in names:
        report = _analyse_name(name, allow_wildcard=ctx.profile == "wildcard")
        reasons = list(report.problems.values())
        if ctx.account is not None and (problem := _domain_problem(report.host, ctx.account.domains)):
            reasons.append(f"{_show(report.host)} {problem}")
        if reasons:
            # The first reason is the root one; the later rules look at what it left.
            offences.append(f"DNS SAN {reasons[0]}")
    if offences:
        return False, _limited(offences)
    return True, f"{len(names)} DNS name{'s' if len(names) != 1 else ''} ok"


def _san_type(ctx: _Context) -> tuple[bool, str]:
    allowed = "dns" if ctx.profile in SSL_PROFILES else "email"
    sans = ctx.facts.sans
    if not sans:
        return True, (
            "no SANs"  # pragma: no mutate (prose)
        )
    bad = [f"{_SAN_TYPE_NAMES.get(kind, _show(kind))} SAN {_show(value)}" for kind, value in sans if kind != allowed]
    if bad:
        verb = "is" if len(bad) == 1 else "are"
        return False, (
            f"{_limited(bad, ', ')} {verb} not allowed; the {ctx.profile} profile accepts "
            f"{_SAN_TYPE_NAMES[allowed]} SANs only"
        )
    return True, f"{_SAN_TYPE_NAMES[allowed]}s only"


def _san_count(ctx: _Context) -> tuple[bool, str]:
    count = len(ctx.facts.sans)
    if ctx.profile in SSL_PROFILES and ctx.cn:
        # the certificate lists the CN first when the request does not (issue.leaf_sans)
        dns = {value.lower() for kind, value in ctx.facts.sans if kind == "dns"}
        count += ctx.cn.lower() not in dns
    if count > ctx.max_sans:
        return False, (f"the certificate would carry {count} subjectAltName entries; at most {ctx.max_sans} "
                       "are allowed (ca config max_sans)"  # pragma: no mutate (prose)
                       )
    return True, f"{count} subjectAltName entr{'y' if count == 1 else 'ies'} (at most {ctx.max_sans})"


def _key_strength(ctx: _Context) -> tuple[bool, str]:
    facts = ctx.facts
    kind = facts.key_type.translate(_ASCII_LOWER)
    if kind == "rsa":
        if facts.key_size >= 2048:
            return True, f"RSA {facts.key_size} bits"
        return False, f"RSA {facts.key_size} bits is too small; at least 2048 bits are required"
    if kind == "ec":
        curve = facts.key_curve or "unknown"
        nist = _GOOD_CURVES.get(curve.translate(_ASCII_LOWER))
        if nist is not None:
            return True, f"EC {nist} ({_show(curve)})"
        return False, f"EC curve {_show(curve)} is not accepted; use P-256 or P-384 (or RSA 2048 bits or more)"
    return False, f"{_show(facts.key_type)} keys are not accepted; use RSA 2048 bits or more, or EC P-256 or P-384"


def _hash_key(name: str) -> str:
    return name.translate(_ASCII_LOWER).replace("-", "").replace("_", "")


def _sig_hash(ctx: _Context) -> tuple[bool, str]:
    name = ctx.facts.signature_hash
    if name is None:
        return True, f"no separate hash ({_show(ctx.facts.key_type)} signature)"
    key = _hash_key(name)
    shown = _HASH_NAMES.get(key, _show(name))
    if key in _WEAK_HASHES:
        return False, f"{shown} is too weak for a signature; sign with SHA-256 or stronger"
    if key not in _HASH_NAMES:
        # An algorithm we cannot name is not one we can vouch for (an unknown OID, SM3...).
        return False, f"{shown} is not an accepted signature algorithm; sign with SHA-256 or stronger"
    return True, shown


def _sig_valid(ctx: _Context) -> tuple[bool, str]:
    state = ctx.facts.signature_state
    if state == "valid":
        return True, "signature valid"
    if state == "invalid":
        return False, (
            "the signature does not verify with the request's own key; "  # pragma: no mutate (prose)
            "the CSR was altered or is corrupt"  # pragma: no mutate (prose)
        )
    if state == "not checked":
        return False, "signature not checked (weak hash)"
    return False, f"unknown signature state {_quoted(str(state))}"


def _personal_identifier(ctx: _Context) -> tuple[bool, str]:
    cn = ctx.cn
    if cn is None:
        return False, "no CN"
    parts = parse_personal_cn(cn)
    if parts is None:
        return False, (
            f"CN {_quoted(cn)} is not ID-NN-NAME: a national ID (A123456789) or 8-digit business number, "
            "a 2-digit sequence and an English name, joined by hyphens"  # pragma: no mutate (prose)
        )
    ident, sequence, name = parts
    business = len(ident) == 8
    problem = business_number_problem(ident) if business else national_id_problem(ident)
    if problem is not None:
        return False, f"{ident} in the CN is not valid: {problem}"
    kind = "business number" if business else "national ID"
    return True, f"{kind} {ident}, sequence {sequence}, name {name}"


def _personal_email(ctx: _Context) -> tuple[bool, str]:
    assert ctx.account is not None  # only applied with an account
    emails = [value for kind, value in ctx.facts.sans if kind == "email"]
    if not emails:
        return True, (
            "no e-mail SANs"  # pragma: no mutate (prose)
        )
    bad: list[str] = []
    for email in emails:
        local, at, domain = email.rpartition("@")
        if not at or not local or not domain:
            bad.append(f"{_quoted(email)} is not an e-mail address (local-part@domain)")
        elif domain_match(domain, ctx.account.domains) is None:
            bad.append(f"{_quoted(email)} is not under an agreed domain")
    if bad:
        agreed = _limited([_show(d) for d in ctx.account.domains], ", ") or "none"
        return False, f"{_limited(bad)}; the account's agreed domains: {agreed}"
    return True, f"{len(emails)} e-mail address{'es' if len(emails) != 1 else ''} under agreed domains"


def _personal_business_number(ctx: _Context) -> tuple[bool, str]:
    assert ctx.account is not None  # only applied with an account
    want = ctx.account.business_number
    found: list[tuple[str, str]] = []
    if ctx.cn is not None:
        parts = parse_personal_cn(ctx.cn)
        numbers = ([parts[0]] if len(parts[0]) == 8 else []) if parts else _BUSINESS_NUMBER_RE.findall(ctx.cn)
        found.extend(("CN", n) for n in numbers)
    for value in ctx.facts.values("serialNumber"):
        found.extend(("serialNumber", n) for n in _BUSINESS_NUMBER_RE.findall(value))
    bad = [f"{where} carries business number {number}, not the account's {want}"
           for where, number in found if number != want]
    if bad:
        return False, _limited(bad)
    if not found:
        return True, (
            "no business number in CN or serialNumber"  # pragma: no mutate (prose)
        )
    return True, f"business number {want} is the account's"


_RULES: dict[str, _RuleFn] = {
    "subject.required": _subject_required,
    "subject.country": _subject_country,
    "subject.printable": _subject_printable,
    "subject.org": _subject_org,
    "subject.identity": _subject_identity,
    "cn.syntax": functools.partial(_name_rule, rule="cn.syntax", passing=lambda r: "bare host name"),
    "cn.ip-address": functools.partial(_name_rule, rule="cn.ip-address", passing=lambda r: "not an IP address"),
    "cn.idn": functools.partial(_name_rule, rule="cn.idn", passing=lambda r: "ASCII name"),
    "cn.label": functools.partial(
        _name_rule, rule="cn.label", passing=lambda r: f"{len(r.host.split('.'))} labels of letters, digits and hyphens"
    ),
    "cn.length": functools.partial(
        _name_rule, rule="cn.length", passing=lambda r: f"{_octets(r.host)} octets (at most {_MAX_NAME_OCTETS})"
    ),
    "cn.domain": _cn_domain,
    "cn.wildcard": _cn_wildcard,
    "san.dns": _san_dns,
    "san.type": _san_type,
    "san.count": _san_count,
    "key.strength": _key_strength,
    "sig.hash": _sig_hash,
    "sig.valid": _sig_valid,
    "personal.identifier": _personal_identifier,
    "personal.email": _personal_email,
    "personal.business-number": _personal_business_number,
}
assert tuple(_RULES) == RULE_ORDER


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {_quoted(str(profile))}; choose one of {', '.join(PROFILES)}")


def rules_for(profile: str, *, with_account: bool = True) -> tuple[str, ...]:
    """The rule IDs that :func:`check_request` applies, in :data:`RULE_ORDER`.

    SSL profiles (``ssl``, ``wildcard``, ``ev``) apply every rule except
    ``personal.identifier``; personal profiles (``user-sign``, ``user-enc``)
    replace the DNS rules (``cn.*``, ``san.dns``) with it.  Without an
    account, ``subject.org`` and ``cn.domain`` are left out.

    Raises:
        twcactl.errors.UsageError: ``profile`` is not one of ``models.PROFILES``.
    """
    _check_profile(profile)
    skip = _PERSONAL_ONLY if profile in SSL_PROFILES else _SSL_ONLY
    if not with_account:
        skip = skip | _ACCOUNT_ONLY
    return tuple(rule for rule in RULE_ORDER if rule not in skip)


def check_request(facts: RequestFacts, account: AccountPolicy | None, profile: str = "ssl", *,
                  max_sans: int = DEFAULT_MAX_SANS) -> CheckResult:
    """Apply every rule of ``profile`` to a request and report all findings.

    Args:
        facts: what the CSR (or the certificate being renewed) says.
        account: the Management SSL account the request is checked against,
            or None: then ``subject.org`` and ``cn.domain`` are not applied
            and do not appear in the findings.
        profile: one of ``models.PROFILES`` (default ``ssl``).
        max_sans: the most subjectAltName entries a certificate may carry (``san.count``; the
            home's ``max_sans`` setting, default 100).

    Returns:
        A :class:`CheckResult` with one :class:`Finding` per applied rule
        (passing ones too), in :data:`RULE_ORDER`; see :func:`rules_for` for
        which rules a profile applies.  When there are several CNs the first
        is checked and ``subject.required`` fails.

    Raises:
        twcactl.errors.UsageError: unknown profile.  Bad request content never
            raises; it becomes failing findings.
    """
    rules = rules_for(profile, with_account=account is not None)
    cn = facts.cn
    report = None
    if cn is not None and profile in SSL_PROFILES:
        report = _analyse_name(cn, allow_wildcard=profile == "wildcard")
    ctx = _Context(facts=facts, account=account, profile=profile, cn=cn, cn_report=report, max_sans=max_sans)
    findings = tuple(Finding(rule, *_RULES[rule](ctx)) for rule in rules)
    return CheckResult(profile=profile, findings=findings)
