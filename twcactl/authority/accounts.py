"""RA accounts: register, change, credit (domain.md §2-§3).

One function per workflow, each taking the open store and a typed request
and returning the account as stored afterwards.  A request checks its own
values when it is made (account ID, printable names, agreed domains), so a
caller can refuse bad input before opening the CA home; the workflow then
checks the operator's role, writes in one transaction, and logs the change
(the balance's ledger entry and the hash-chained activity log together).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twcactl.errors import PolicyError, UsageError
from twcactl.policy.checks import BUSINESS_CATEGORIES, ISO_3166_ALPHA2, normalise_domain, printable_problem
from twcactl.rules.identifiers import is_valid_account_id
from twcactl.store import Store
from twcactl.store.records import Account
from twcactl.validation.names import name_problem

__all__ = ["AccountChange", "Credit", "NewAccount", "add_account", "credit_account", "update_account"]


def _require_printable(label: str, value: str) -> None:
    """Refuse a name that is not printable ASCII (domain.md §1: every field English); ``label`` names it."""
    problem = printable_problem(value)
    if problem:
        raise UsageError(f"{label}: {problem}.")


def _country(value: str) -> str:
    """A jurisdiction country as stored: an assigned ISO 3166-1 alpha-2 code in upper case."""
    code = value.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise UsageError(f"--jurisdiction-country: {value!r} is not an ISO 3166-1 alpha-2 country code (e.g. TW).")
    return code


def _category(value: str) -> str:
    """A business category as stored: one of the EV Guidelines' four (§7.1.4.2.3), in their spelling."""
    for category in BUSINESS_CATEGORIES:
        if " ".join(value.split()).casefold() == category.casefold():
            return category
    raise UsageError(f"--business-category: {value!r} is not one of: {', '.join(BUSINESS_CATEGORIES)} "
                     "(EV Guidelines §7.1.4.2.3).")


def _identity(country: str | None, state: str | None, locality: str | None,
              category: str | None) -> dict[str, str | None]:
    """The EV identity columns to write: only those given; ``""`` clears a state or locality.

    Raises:
        UsageError: a country that is not an assigned ISO code, a state or locality that is not printable
            ASCII, a business category outside the EV Guidelines' four (exit 2).
    """
    identity: dict[str, str | None] = {}
    if country is not None:
        identity["jurisdiction_country"] = _country(country)
    for column, label, value in (("jurisdiction_state", "--jurisdiction-state", state),
                                 ("jurisdiction_locality", "--jurisdiction-locality", locality)):
        if value is not None:
            if value:
                _require_printable(label, value)
            identity[column] = value or None
    if category is not None:
        identity["business_category"] = _category(category)
    return identity


def _one_space(text: str) -> str:
    """An organisation name as stored: runs of whitespace become one space (O is compared to it)."""
    return " ".join(text.split())


@dataclass(frozen=True, kw_only=True)
class _EvIdentityValues:
    """The EV identity values an account command gives (keyword-only; None: not given)."""

    jurisdiction_country: str | None = None
    jurisdiction_state: str | None = None
    jurisdiction_locality: str | None = None
    business_category: str | None = None

    @property
    def identity(self) -> dict[str, str | None]:
        """The EV identity columns given (checked and normalised; raises UsageError, exit 2)."""
        return _identity(self.jurisdiction_country, self.jurisdiction_state, self.jurisdiction_locality,
                         self.business_category)


@dataclass(frozen=True)
class NewAccount(_EvIdentityValues):
    """An account to register (``account add``).

    Attributes:
        id: the 8-digit unified business number, a hyphen, a 2-digit sequence (``70759028-01``, domain.md §2).
        org: the registered English name; subject O must equal it (stored with single spaces).
        domains: the agreed domains, normalised on creation (lower case, no trailing dot, duplicates dropped).
        aliases: other accepted O values.
        quota: the opening balance in certificate-years (>= 0; 0 writes no ledger entry).
        note: the note of the opening ledger entry (default ``"initial quota"``).
        jurisdiction_country / jurisdiction_state / jurisdiction_locality / business_category: the EV
            identity (default TW, none, none, ``Private Organization``); every EV certificate carries it.

    Raises (on creation):
        UsageError: a bad account ID, a name that is not printable ASCII, a bad domain (a public suffix
            such as ``com.tw`` among them), no domain, a negative quota, or a bad EV identity value (exit 2).
    """

    id: str
    org: str
    domains: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    quota: int = 0
    note: str | None = None

    def __post_init__(self) -> None:
        if not is_valid_account_id(self.id):
            raise UsageError(f"{self.id} is not an account ID: expected NNNNNNNN-NN with a valid business number.")
        _require_printable("--org", self.org)
        for alias in self.aliases:
            _require_printable("--org-alias", alias)
        if not self.domains:
            raise UsageError("an account needs at least one agreed domain.")
        if self.quota < 0:
            raise UsageError("the opening quota must not be negative.")
        _ = self.identity  # refuse a bad EV identity value now, before the home is opened
        object.__setattr__(self, "domains", tuple(dict.fromkeys(normalise_domain(d) for d in self.domains)))
        object.__setattr__(self, "aliases", tuple(self.aliases))


@dataclass(frozen=True)
class AccountChange(_EvIdentityValues):
    """A change to an account's organisation, agreed domains or O aliases (``account set``).

    Attributes:
        org: the new registered English name, or None (an empty string also leaves it unchanged).
        add_domains: domains to agree, normalised on creation (:func:`normalise_domain`).
        remove_domains: domains to drop, compared in lower case without a trailing dot.
        add_aliases / remove_aliases: O aliases to accept or drop.
        jurisdiction_country / jurisdiction_state / jurisdiction_locality / business_category: a new EV
            identity value, or None to keep it (``""`` clears a state or locality).

    Raises (on creation):
        UsageError: nothing to change, a name that is not printable ASCII, a bad domain (a public suffix
            among them), a bad EV identity value (exit 2).
    """

    org: str | None = None
    add_domains: tuple[str, ...] = ()
    remove_domains: tuple[str, ...] = ()
    add_aliases: tuple[str, ...] = ()
    remove_aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.org is None and not (self.add_domains or self.remove_domains or self.add_aliases
                                     or self.remove_aliases or self.identity):
            raise UsageError("nothing to change; give --org, --add-domain, --remove-domain, --add-alias, "
                             "--remove-alias, --jurisdiction-country, --jurisdiction-state, "
                             "--jurisdiction-locality or --business-category.")
        if self.org:
            _require_printable("--org", self.org)
        for alias in self.add_aliases:
            _require_printable("--add-alias", alias)
        object.__setattr__(self, "add_domains", tuple(normalise_domain(d) for d in self.add_domains))
        object.__setattr__(self, "remove_domains", tuple(d.lower().rstrip(".") for d in self.remove_domains))
        object.__setattr__(self, "add_aliases", tuple(self.add_aliases))
        object.__setattr__(self, "remove_aliases", tuple(self.remove_aliases))


@dataclass(frozen=True)
class Credit:
    """Certificate-years added to (or, when negative, taken from) a balance (``account credit``).

    Attributes:
        account_id: the account.
        amount: certificate-years, never 0.
        note: why (an order number, a correction), kept in the ledger and the log.

    Raises (on creation):
        UsageError: ``amount`` is 0 (exit 2).
    """

    account_id: str
    amount: int
    note: str | None = None

    def __post_init__(self) -> None:
        if self.amount == 0:
            raise UsageError("N must not be 0.")


def _result(store: Store, account_id: str) -> dict[str, object]:
    """The account as the change left it (read inside the transaction), for its log entry: ``ca check``
    compares the records with it (issue 13)."""
    account = store.accounts.get(account_id, ledger=False)
    return {"org": account.org, "domains": sorted(account.domains), "aliases": sorted(account.org_aliases)}


def _refuse_internal_names(store: Store, domains: tuple[str, ...]) -> None:
    """In public-trust mode, refuse internal and special-use names as agreed domains (BR §7.1.2.7.12; issue 26).

    Raises:
        PolicyError: rules ``name.special_use`` / ``name.tld`` (exit 1).
    """
    if not domains or not store.settings().public_trust:
        return
    failed = [f for d in domains if (f := name_problem(d)) is not None]
    if failed:
        raise PolicyError(f"{failed[0].rule}: {failed[0].message}", findings=failed)


def add_account(store: Store, new: NewAccount, *, operator: str) -> Account:
    """Register ``new`` with its opening balance, logged as ``account.add`` (domain.md §2-§3).

    One transaction: the account, the opening ledger entry (action ``credit``, when the quota is
    not 0) and the log entry.

    Returns:
        The account as stored, with its ledger.

    Raises:
        StateError: ``operator`` is not a manager, or the account exists (exit 5).
    """
    store.operators.require_manager(operator)
    _refuse_internal_names(store, new.domains)
    with store.transaction():
        store.accounts.add(new.id, _one_space(new.org), aliases=new.aliases, domains=new.domains,
                           identity=new.identity)
        if new.quota:
            store.accounts.change_balance(new.id, new.quota, action="credit", operator=operator,
                                 note=new.note or "initial quota")
        store.log.append(operator=operator, action="account.add", account=new.id, details={
            "org": new.org, "org_aliases": list(new.aliases), "domains": list(new.domains), "quota": new.quota,
            "balance": new.quota, "result": _result(store, new.id), "identity": new.identity})
    return store.accounts.get(new.id)


def update_account(store: Store, account_id: str, change: AccountChange, *, operator: str) -> Account:
    """Apply ``change`` to an account, logged as ``account.set``; the account keeps at least one domain.

    Returns:
        The account as stored, with its ledger.

    Raises:
        StateError: ``operator`` is not a manager (exit 5).
        NotFoundError: no such account, or a domain / alias to remove is not there (exit 5).
        UsageError: the change would leave no agreed domain (exit 2); nothing is written.
    """
    store.operators.require_manager(operator)
    _refuse_internal_names(store, change.add_domains)
    with store.transaction():
        store.accounts.update(account_id, org=_one_space(change.org) if change.org else None,
                             add_domains=change.add_domains, remove_domains=change.remove_domains,
                             add_aliases=change.add_aliases, remove_aliases=change.remove_aliases,
                             identity=change.identity)
        if not store.accounts.get(account_id, ledger=False).domains:
            raise UsageError("an account needs at least one agreed domain.")
        store.log.append(operator=operator, action="account.set", account=account_id, details={
            "org": change.org, "add_domains": list(change.add_domains), "remove_domains": list(change.remove_domains),
            "add_aliases": list(change.add_aliases), "remove_aliases": list(change.remove_aliases),
            "result": _result(store, account_id), "identity": change.identity})
    return store.accounts.get(account_id)


def credit_account(store: Store, credit: Credit, *, operator: str) -> Account:
    """Add ``credit.amount`` certificate-years: a ledger entry (``credit``) and a log entry (``account.credit``).

    Returns:
        The account as stored, with its ledger.

    Raises:
        StateError: ``operator`` is not a manager (exit 5).
        NotFoundError: no such account (exit 5).
        QuotaError: a debit would take the balance below zero (exit 5).
    """
    store.operators.require_manager(operator)
    with store.transaction():
        balance = store.accounts.change_balance(credit.account_id, credit.amount, action="credit", operator=operator,
                                       note=credit.note)
        store.log.append(operator=operator, action="account.credit", account=credit.account_id,
                         details={"delta": credit.amount, "balance": balance, "note": credit.note})
    return store.accounts.get(credit.account_id)
