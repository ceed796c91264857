"""``twcactl account``: RA accounts with agreed domains and a certificate-year balance (domain.md §2-§3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import Column, compact_output, emit, print_table, safe, serial_labels, wide_option
from twcactl.rules.words import count

if TYPE_CHECKING:
    from rich.console import Console

    from twcactl.store.records import Account


@click.group()
def account() -> None:
    """RA accounts: organisation, agreed domains, certificate-years."""


def identity_options(func: Any) -> Any:
    """The EV identity options of ``account add`` and ``account set`` (issue 12)."""
    for option in reversed((
        click.option("--jurisdiction-country", metavar="C",
                      help="Country of registration, ISO 3166-1 alpha-2 (EV jurisdictionC; add's default TW)."),
        click.option("--jurisdiction-state", metavar="ST", help="State or province of registration, if any "
                     "(EV jurisdictionST; \"\" clears it)."),
        click.option("--jurisdiction-locality", metavar="L", help="Locality of registration, if any "
                     "(EV jurisdictionL; \"\" clears it)."),
        click.option("--business-category", metavar="TEXT", help="EV businessCategory: Private Organization "
                     "(add's default), Government Entity, Business Entity or Non-Commercial Entity."),
    )):
        func = option(func)
    return func


@account.command("add", epilog="""\b
Example:
  twcactl account add 70759028-01 --org TWCA --domain twca.com.tw --domain mis.twca.com.tw --quota 10
""")
@click.argument("account_id", metavar="ID")
@click.option("--org", required=True, help="The organisation's registered English name (must equal subject O).")
@click.option("--org-alias", "org_aliases", multiple=True, metavar="NAME",
              help="Another accepted O value (repeatable).")
@click.option("--domain", "domains", multiple=True, required=True, metavar="D", help="An agreed domain (repeatable).")
@click.option("--quota", type=click.IntRange(0, 1_000_000_000), default=0, show_default=True,
              help="Initial balance in certificate-years (the first ledger entry).")
@click.option("--note", help="A note for the ledger and the activity log.")
@identity_options
@json_option
def add(account_id: str, org: str, org_aliases: tuple[str, ...], domains: tuple[str, ...], quota: int,
        note: str | None, **identity: str | None) -> None:
    """Register an account: ID is the 8-digit business number, a hyphen and a 2-digit sequence.

    A public suffix (com.tw, co.uk) is refused as an agreed domain. The EV identity (jurisdiction,
    business category; the business number is the ID's first 8 digits) goes into every EV certificate.
    """
    from twcactl.authority.accounts import NewAccount, add_account

    new = NewAccount(account_id, org, domains=domains, aliases=org_aliases, quota=quota, note=note, **identity)
    store = app().open_store()
    try:
        _render(add_account(store, new, operator=current_operator()))
    finally:
        store.close()


@account.command("set", epilog="""\b
Examples:
  twcactl account set 70759028-01 --add-domain mis.twca.com.tw
  twcactl account set 70759028-01 --org "TWCA Inc" --add-alias TWCA --remove-domain old.twca.com.tw
""")
@click.argument("account_id", metavar="ID")
@click.option("--org", help="New registered English name.")
@click.option("--add-domain", "add_domains", multiple=True, metavar="D")
@click.option("--remove-domain", "remove_domains", multiple=True, metavar="D")
@click.option("--add-alias", "add_aliases", multiple=True, metavar="NAME", help="Another accepted O value.")
@click.option("--remove-alias", "remove_aliases", multiple=True, metavar="NAME")
@identity_options
@json_option
def set_(account_id: str, org: str | None, add_domains: tuple[str, ...], remove_domains: tuple[str, ...],
         add_aliases: tuple[str, ...], remove_aliases: tuple[str, ...], **identity: str | None) -> None:
    """Change an account's organisation name, agreed domains, O aliases or EV identity (logged)."""
    from twcactl.authority.accounts import AccountChange, update_account

    change = AccountChange(org=org, add_domains=add_domains, remove_domains=remove_domains, add_aliases=add_aliases,
                           remove_aliases=remove_aliases, **identity)
    store = app().open_store()
    try:
        _render(update_account(store, account_id, change, operator=current_operator()))
    finally:
        store.close()


@account.command("credit", epilog="""\b
Examples:
  twcactl account credit 70759028-01 10 --note "order 2026-118"
  twcactl account credit 70759028-01 --note "correction" -- -2  # a negative amount debits
""")
@click.argument("account_id", metavar="ID")
@click.argument("amount", type=click.IntRange(-1_000_000_000, 1_000_000_000), metavar="N")
@click.option("--note", help="Why: an order number, a correction.")
@json_option
def credit(account_id: str, amount: int, note: str | None) -> None:
    """Add N certificate-years to an account's balance (a ledger entry and a log entry); |N| <= 10^9."""
    from twcactl.authority.accounts import Credit, credit_account

    change = Credit(account_id, amount, note)
    store = app().open_store()
    try:
        _render(credit_account(store, change, operator=current_operator()))
    finally:
        store.close()


@account.command("show", epilog="""\b
Example:
  twcactl account show 70759028-01 --json
""")
@click.argument("account_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=0), metavar="N",
              help="Only the N newest ledger entries (the JSON's ledger_total counts them all).")
@wide_option
@json_option
def show(account_id: str, limit: int | None = None, wide: bool = False) -> None:
    """Show an account: organisation, aliases, domains, balance, ledger (newest first) and subscriptions."""
    store = app().open_store()
    try:
        acct = store.accounts.get(account_id)
        subscriptions = _subscriptions(store, acct.id)
        ledger = list(acct.ledger[:limit] if limit is not None else acct.ledger)
        short = serial_labels(store, [e.serial for e in ledger if e.serial], wide=wide)
    finally:
        store.close()
    _render(acct, subscriptions, ledger=(ledger, short, wide))


def _subscriptions(store: Any, account_id: str) -> list[dict[str, Any]]:
    """The account's current certificates with paid time (issue 16): ``{"serial", "cn", "not_after", "paid_until",
    "reissue_from"}`` each, from the certificates' own JSON."""
    from twcactl.rules.times import utcnow

    now, window = utcnow(), store.settings().renewal_window_days
    keys = ("serial", "cn", "not_after", "paid_until", "reissue_from")
    return [{k: doc[k] for k in keys} for r in store.certificates.matching(account=account_id, states=("valid",),
                                                                           not_after_min=now, renewed=False)
            if r.paid_until is not None for doc in [r.to_json(now, window)]]


@account.command("list", epilog="""\b
Example:
  twcactl account list --json
""")
@wide_option
@json_option
def list_(wide: bool = False) -> None:
    """List every account with its balance."""
    store = app().open_store()
    try:
        accounts = store.accounts.all()
    finally:
        store.close()

    def human(_console: Console) -> None:
        rows = [[a.id, safe(a.org), str(a.balance), safe(", ".join(a.domains))] for a in accounts]
        print_table([Column("ID", keep=True), Column("ORG", keep=True), Column("BALANCE", keep=True),
                     Column("DOMAINS", keep=True)], rows, wide=wide, footer=f"{len(accounts)} account(s).")

    emit({"accounts": [a.to_json() for a in accounts], "count": len(accounts)}, human)


#: ``account show``'s ledger columns (issue 28).
LEDGER_COLUMNS = [Column("TIME", keep=True), Column("DELTA", keep=True), Column("BALANCE", keep=True),
                  Column("ACTION", keep=True), Column("SERIAL"), Column("OPERATOR"), Column("NOTE", wrap=True)]


def _render(acct: Account, subscriptions: list[dict[str, Any]] | None = None,
            ledger: tuple[list[Any], dict[str, str], bool] | None = None) -> None:
    """An account in words (and its JSON); ``ledger`` is ``(entries, serial labels, wide)`` for ``account show``."""
    entries, short, wide = ledger if ledger is not None else (list(acct.ledger), {}, False)
    def human(console: Console) -> None:
        console.print(f"Account {acct.id}  {safe(acct.org)}")
        if acct.org_aliases:
            console.print("  aliases  " + safe(", ".join(acct.org_aliases)))
        console.print("  domains  " + safe(", ".join(acct.domains)))
        place = ", ".join(safe(v) for v in (acct.jurisdiction_locality, acct.jurisdiction_state) if v)
        console.print(f"  EV identity  business number {acct.business_number}, jurisdiction "
                      f"{acct.jurisdiction_country}{' (' + place + ')' if place else ''}, "
                      f"{safe(acct.business_category)}")
        console.print(f"  balance  {count(acct.balance, 'certificate-year')}")
        if entries:
            compact = compact_output(wide)
            rows = [[e.time[:16].replace("T", " ") if compact else e.time, f"{e.delta:+d}", str(e.balance), e.action,
                     short.get(e.serial or "", e.serial or ""), safe(e.operator), safe(e.note or "")] for e in entries]
            more = len(acct.ledger) - len(entries)
            print_table(LEDGER_COLUMNS, rows, wide=wide,
                        footer=f"({more} older ledger entr{'y' if more == 1 else 'ies'}: --limit)" if more else None)
        for sub in subscriptions or []:
            console.print(f"  subscription {sub['serial']}  CN={safe(sub['cn'] or '')}  paid until {sub['paid_until']}"
                          f"  next re-issue from {sub['reissue_from'] or '-'}")

    doc = acct.to_json()
    if ledger is not None:
        doc["ledger"] = doc["ledger"][:len(entries)]
        doc["ledger_total"] = len(acct.ledger)
    if subscriptions is not None:
        doc["subscriptions"] = subscriptions
    emit(doc, human)
