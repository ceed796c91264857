"""``twcactl csr``: make, read and check certificate signing requests (domain.md §1-§2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from twcactl.cli.context import app, json_option, subject_options
from twcactl.cli.output import emit, note, safe

if TYPE_CHECKING:
    from cryptography import x509
    from rich.console import Console

    from twcactl.csr import CsrDescription, RequestSpec
    from twcactl.models import AccountPolicy, CheckResult
    from twcactl.pkix.keys import PrivateKey

PROFILE_CHOICES = ("ssl", "wildcard", "ev", "user-sign", "user-enc")
KEY_TYPE_CHOICES = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384")


@click.group()
def csr() -> None:
    """Make, read and check certificate signing requests."""


def _is_stdout(path: Path | None) -> bool:
    return path is None or str(path) == "-"


@csr.command("new", epilog="""\b
Examples:
  twcactl csr new --cn www.twca.com.tw --org TWCA --ou SYSTEM --locality Taipei \\
      --state Taiwan --country TW --key-out www.key --out www.csr --key-passphrase env:KEY_PASS
  twcactl csr new --cn api.twca.com.tw --san api2.twca.com.tw --key-type ec-p256 \\
      --org TWCA --locality Taipei --state Taiwan --country TW --key-out api.key --no-passphrase
  # renewal: same subject, SANs and key type as the old certificate, a new key
  twcactl csr new --from-cert server.cer --key-out www-2027.key --out www-2027.csr
  twcactl csr new --from-cert cert.zip --key-out www-2027.key --out www-2027.csr   # or fullchain.pem
  # scripted: values from a TOML template (keys: cn org ou locality state country san key_type profile)
  twcactl csr new --template www.toml --key-out www.key --no-passphrase --json
""")
@subject_options(cn_help="Common Name: the site name, e.g. www.twca.com.tw (no https://). "
                         "Required unless --from-cert or --template gives it.", cn_required=False,
                 san_help="A subjectAltName (repeatable): DNS names; for user profiles e-mail addresses. "
                          "For SSL profiles the CN is always included. Replaces the SANs of --from-cert / --template.")
@click.option("--profile", type=click.Choice(PROFILE_CHOICES),
              help="What the request is for (decides how --san is read)  [default: ssl]")
@click.option("--key-type", type=click.Choice(KEY_TYPE_CHOICES),
              help="The new key  [default: the --from-cert key's type and size, else rsa2048]")
@click.option("--from-cert", type=click.Path(path_type=Path, allow_dash=True), metavar="CERT",
              help="Renewal: take the subject (in order), DNS/e-mail SANs and key type and size of this certificate "
                   "(server.cer, a fullchain PEM with the leaf first, or cert.zip); options given here override them.")
@click.option("--template", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True), metavar="FILE.toml",
              help="Take values from a TOML file; options given here override them.")
@click.option("--key-out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the new private key (PKCS#8 PEM, mode 0600).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Where to write the CSR (PEM); default stdout (inside the document under --json).")
@click.option("--key-passphrase", metavar="SOURCE", help="Encrypt the key: env:NAME, file:PATH, fd:N, stdin, pass:TEXT "
              "(default: prompt twice).")
@click.option("--no-passphrase", is_flag=True, help="Write the key unencrypted.")
@click.option("--pair", is_flag=True, help="A signing and an encryption key (user-sign and user-enc, as on a card): "
              "two keys and two CSRs, NAME-sign and NAME-enc after --key-out and --out; issue them with "
              "cert issue --pair.")
@click.option("--force", is_flag=True, help="Replace existing output files, and write a request that breaks the "
              "profile's rules (https:// in the CN, a lower-case or missing C) instead of refusing it (exit 1).")
@json_option
def new(cn: str | None, org: str | None, ous: tuple[str, ...], locality: str | None, state: str | None,
        country: str | None, sans: tuple[str, ...], profile: str | None, key_type: str | None,
        from_cert: Path | None, template: Path | None, key_out: Path, out: Path | None,
        key_passphrase: str | None, no_passphrase: bool, force: bool, pair: bool = False) -> None:
    """Generate a key pair and a CSR for it.

    Values come from --from-cert, then --template, then the options (each
    later source wins). Every value must be printable ASCII (the manuals'
    most common mistake is a Chinese value); such input is refused before
    any key is generated. A request that breaks the profile's rules
    (https:// in the CN, a lower-case or missing C) is refused, exit 1 and
    nothing written, unless --force; the other rules are warnings.
    """
    from cryptography.hazmat.primitives import serialization

    from twcactl.cli.secrets import get_secret
    from twcactl.csr import new_request_check, subject_options
    from twcactl.errors import UsageError
    from twcactl.fsutil import ensure_free, write_file
    from twcactl.pkix.keys import private_key_pem

    if no_passphrase and key_passphrase:
        raise UsageError("give --key-passphrase or --no-passphrase, not both.")
    if str(key_out) == "-":
        raise UsageError("--key-out needs a file name; a private key is never written to stdout.")
    if from_cert is not None and template is not None and str(from_cert) == "-" and str(template) == "-":
        raise UsageError("--from-cert and --template cannot both read stdin.")

    spec, renewal_of = _base_spec(from_cert, template)
    options = subject_options(cn=cn, org=org, ous=ous, locality=locality, state=state, country=country)
    spec = spec.override(subject=options, sans=list(sans), key_type=key_type,
                         profile=profile or ("user-sign" if pair else None))  # a pair's --san: e-mail addresses
    profile_name = spec.profile or "ssl"
    key_type_name = spec.key_type or "rsa2048"

    if spec.cn is None:
        raise UsageError("--cn is required (unless --from-cert or --template gives a CN).")
    spec.check_values(force=force)  # refused: exit 1 (not English) or 2, before any key is made
    if pair:
        return _new_pair(spec, key_type_name, key_out, out, key_passphrase, no_passphrase, force=force)
    ensure_free([key_out, out], force=force)
    key, request = _make_request(spec, profile_name, key_type_name)
    result = new_request_check(request, profile_name, force=force)  # refused: exit 1, nothing written
    passphrase = None if no_passphrase else get_secret(
        key_passphrase, option="--key-passphrase", what="new key passphrase", new=True)
    pem = request.public_bytes(serialization.Encoding.PEM)
    write_file(key_out, private_key_pem(key, passphrase), mode=0o600, force=force)
    if not _is_stdout(out):
        write_file(out, pem, force=force)  # type: ignore[arg-type]

    _render_new(request, result, key_type_name, key_out=key_out, out=out, encrypted=passphrase is not None,
                renewal_of=renewal_of)


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value)
    return str(value)


def _render_description(console: Console, file: str, desc: CsrDescription) -> None:
    console.print(f"CSR  {safe(file)}")
    console.print(f"  subject    {safe(desc.subject_text) or '(empty)'}")
    for attr in desc.subject:
        console.print(f"    {safe(attr['name']):<14} {safe(attr['value'])}")
    console.print("  SANs       " + (safe(", ".join(desc.sans)) if desc.sans else "(none)"))
    console.print(f"  key        {desc.key}")
    console.print(f"  signature  {safe(desc.signature_algorithm)}: {desc.signature}")
    console.print(f"             {safe(desc.signature_reason)}")
    if desc.extensions:
        console.print("  requested extensions")
        for ext in desc.extensions:
            crit = " (critical)" if ext["critical"] else ""
            value = "(not decoded)" if ext["value"] is None else _value_text(ext["value"])
            console.print(f"    {safe(ext['name'])}{crit}: {safe(value)}")
    shown = [a for a in desc.attributes if a["oid"] != "1.2.840.113549.1.9.14"]
    if shown:
        console.print("  attributes")
        for attr in shown:
            text = f"cannot decode: {attr['error']}" if "error" in attr else _value_text(attr["value"])
            console.print(f"    {safe(attr['name'])}: {safe(text)}")
    for problem in desc.problems:
        console.print(f"  cannot decode {safe(problem['field'])}: {safe(problem['reason'])}")


def _make_request(spec: RequestSpec, profile_name: str, key_type_name: str
                  ) -> tuple[PrivateKey, x509.CertificateSigningRequest]:
    """A new key and its CSR: SSL profiles list the CN first among the DNS SANs, the others e-mail SANs."""
    from twcactl.csr import build_csr
    from twcactl.errors import UsageError
    from twcactl.pkix.keys import generate_key
    from twcactl.rules.vocab import SSL_PROFILES

    assert spec.cn is not None
    if profile_name in SSL_PROFILES:
        dns_names, emails = [spec.cn, *spec.dns_names], []
    else:
        dns_names, emails = list(spec.dns_names), list(spec.emails)
    note(f"Generating a {key_type_name} key ...")
    key = generate_key(key_type_name)
    try:
        return key, build_csr(key, spec.subject, dns_names=dns_names, emails=emails)
    except ValueError as exc:
        raise UsageError(f"cannot build the CSR: {exc}.") from exc


def _base_spec(from_cert: Path | None, template: Path | None) -> tuple[RequestSpec, dict[str, str] | None]:
    """The values of --from-cert, then --template (the later wins), and the certificate being renewed."""
    from twcactl.csr import RequestSpec, parse_template, spec_from_certificate
    from twcactl.fsutil import read_input

    spec = RequestSpec()
    renewal_of: dict[str, str] | None = None
    if from_cert is not None:
        from twcactl.pkix.leaf import read_bundle, split_leaf
        from twcactl.pkix.names import rfc4514
        from twcactl.rules.serials import format_serial

        # server.cer, a fullchain PEM (leaf first) or the manuals' cert.zip (issue 17)
        cert, _others = split_leaf(read_bundle([from_cert]), name=str(from_cert))
        spec = spec_from_certificate(cert)
        renewal_of = {"file": str(from_cert), "serial": format_serial(cert.serial_number),
                      "subject": rfc4514(cert.subject)}
    if template is not None:
        tmpl = parse_template(read_input(template, what="template"), name=str(template))
        spec = spec.override(subject=tmpl.subject, sans=tmpl.sans, key_type=tmpl.key_type, profile=tmpl.profile)
    return spec, renewal_of


#: ``csr new --pair``: each half's profile and the tag added to its file names (domain.md §7).
PAIR = (("user-sign", "sign"), ("user-enc", "enc"))


def pair_path(path: Path, tag: str) -> Path:
    """``holder.key`` -> ``holder-sign.key``: a pair's file name for one half."""
    return path.with_name(f"{path.stem}-{tag}{path.suffix}")


def _new_pair(spec: RequestSpec, key_type_name: str, key_out: Path, out: Path | None, key_passphrase: str | None,
              no_passphrase: bool, *, force: bool) -> None:
    """``csr new --pair``: a user-sign and a user-enc key and CSR, all checked before any file is written; one key
    passphrase for both (issue 28: a software pair, as ``card enroll --pair`` makes on a card)."""
    from cryptography.hazmat.primitives import serialization

    from twcactl.cli.secrets import get_secret
    from twcactl.csr import new_request_check
    from twcactl.errors import UsageError
    from twcactl.fsutil import ensure_free, write_file
    from twcactl.pkix.keys import private_key_pem

    if out is None or _is_stdout(out):
        raise UsageError("--pair writes two CSRs: give --out FILE (FILE-sign and FILE-enc are written).")
    if spec.profile not in (None, "user-sign"):
        raise UsageError("--pair makes user-sign and user-enc requests; do not give another --profile.")
    targets = [(profile, pair_path(key_out, tag), pair_path(out, tag)) for profile, tag in PAIR]
    ensure_free([p for _profile, k, o in targets for p in (k, o)], force=force)
    made = []
    for profile, k, o in targets:
        key, request = _make_request(spec, profile, key_type_name)
        made.append((key, request, new_request_check(request, profile, force=force), k, o))
    passphrase = None if no_passphrase else get_secret(
        key_passphrase, option="--key-passphrase", what="new key passphrase", new=True)
    for key, request, _result, k, o in made:
        write_file(k, private_key_pem(key, passphrase), mode=0o600, force=force)
        write_file(o, request.public_bytes(serialization.Encoding.PEM), force=force)
    docs = [_new_document(request, result, key_type_name, key_out=k, out=o, encrypted=passphrase is not None,
                          renewal_of=None) for _key, request, result, k, o in made]

    def human(console: Console) -> None:
        for d in docs:
            console.print(f"CSR  {d['csr_file']}  {safe(d['subject'])}  ({d['profile']})")
            console.print(f"key  {d['key_file']}  ({key_type_name}, "
                          f"{'encrypted' if d['key_encrypted'] else 'NOT encrypted'}, 0600)")
        console.print(f"Next: twcactl cert issue --pair {docs[0]['csr_file']} {docs[1]['csr_file']} --account ID")

    emit({"pair": docs}, human)


def _render_new(request: x509.CertificateSigningRequest, result: CheckResult, key_type_name: str, *, key_out: Path,
                out: Path | None, encrypted: bool, renewal_of: dict[str, str] | None) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = request.public_bytes(serialization.Encoding.PEM)
    doc = _new_document(request, result, key_type_name, key_out=key_out, out=out, encrypted=encrypted,
                        renewal_of=renewal_of)

    def human(console: Console) -> None:
        if doc["csr_file"] is None:
            click.echo(pem.decode("ascii"), nl=False)
        else:
            console.print(f"CSR  {doc['csr_file']}  {safe(doc['subject'])}")
            console.print(f"key  {doc['key_file']}  ({key_type_name}, "
                          f"{'encrypted' if encrypted else 'NOT encrypted'}, 0600)")

    emit(doc, human)


def _new_document(request: x509.CertificateSigningRequest, result: CheckResult, key_type_name: str, *,
                  key_out: Path, out: Path | None, encrypted: bool,
                  renewal_of: dict[str, str] | None) -> dict[str, Any]:
    """``csr new``'s JSON for one request; its warnings (rules that did not refuse it) go to stderr."""
    from cryptography.hazmat.primitives import serialization

    from twcactl import csr as csr_mod
    from twcactl.pkix.names import rfc4514, sans_json

    pem = request.public_bytes(serialization.Encoding.PEM)
    # The account-independent rules that did not refuse the request are warnings: it may be meant
    # for another CA (csr check / cert issue apply them all).
    for finding in result.failed:
        note(f"warning: {finding.rule}: {safe(finding.message)}")
    doc = {
        "subject": rfc4514(request.subject),
        "sans": sans_json(csr_mod.requested_sans(request)),
        "profile": result.profile,
        "key_type": key_type_name,
        "key_file": str(key_out),
        "key_encrypted": encrypted,
        "csr_file": None if _is_stdout(out) else str(out),
        "csr": pem.decode("ascii"),
        "warnings": [{"rule": f.rule, "message": f.message} for f in result.failed],
        "from_cert": renewal_of,
    }
    return doc


@csr.command("show", epilog="""\b
Examples:
  twcactl csr show www.csr
  twcactl csr show iis-request.txt --json
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@json_option
def show(file: Path) -> None:
    """Parse a CSR (PEM with either header, text around it, CRLF, or DER) and show every field.

    Subject attributes in order, SANs, key, signature algorithm and state
    (valid, invalid, or "not checked" for a weak hash such as SHA-1),
    requested extensions, and the Microsoft attributes of IIS requests.
    """
    from twcactl.csr import describe
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_csr

    request = load_csr(read_input(file, what="CSR"), name=str(file))
    desc = describe(request)
    doc = {"file": str(file), **desc.to_json()}
    emit(doc, lambda console: _render_description(console, str(file), desc))


def _hash_label(name: str | None) -> str:
    labels = {"sha1": "SHA-1", "sha224": "SHA-224", "sha256": "SHA-256", "sha384": "SHA-384", "sha512": "SHA-512",
              "md5": "MD5", "md4": "MD4", "md2": "MD2"}
    return "no hash" if name is None else labels.get(name, name)


def _account_line(policy: AccountPolicy | None, source: str | None) -> str:
    if policy is None:
        return "no account: subject.org and cn.domain not applied (give --account ID or --policy FILE)"
    names = [policy.org, *policy.org_aliases]
    text = f"account {policy.id} ({' / '.join(names)}; {', '.join(policy.domains)})"
    return text + (f" from {source}" if source else "")


@csr.command("check", epilog="""\b
Examples:
  twcactl csr check www.csr --account 70759028-01
  twcactl csr check www.csr --policy twca-policy.toml --profile wildcard --json
  # twca-policy.toml:
  #   id = "70759028-01"
  #   org = "TWCA"
  #   org_aliases = ["TAIWAN-CA Inc."]
  #   domains = ["twca.com.tw", "mis.twca.com.tw"]
\b
Exit status: 0 when every rule passes, 1 when one fails, 3 for an unreadable CSR.
""")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--account", "account_id", metavar="ID", help="Check against this account of the CA home.")
@click.option("--policy", "policy_file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              metavar="FILE.toml", help="Check against an account defined in a TOML file (no CA home needed).")
@click.option("--profile", default="ssl", show_default=True, type=click.Choice(PROFILE_CHOICES))
@json_option
def check(file: Path, account_id: str | None, policy_file: Path | None, profile: str) -> None:
    """Apply every rule of a profile to a CSR: the same checks as `cert issue`.

    Lists each rule in a fixed order with ok/FAIL and a reason. Without
    --account or --policy only the account-independent rules run.
    """
    from twcactl import csr as csr_mod
    from twcactl.errors import InputError, UsageError
    from twcactl.fsutil import read_input
    from twcactl.pkix.pem import load_csr
    from twcactl.policy.checks import check_request

    if account_id is not None and policy_file is not None:
        raise UsageError("give --account or --policy, not both.")
    if policy_file is not None and str(policy_file) == "-" and str(file) == "-":
        raise UsageError("the CSR and --policy cannot both read stdin.")
    request = load_csr(read_input(file, what="CSR"), name=str(file))
    policy, source = _check_policy(account_id, policy_file)
    try:
        request_facts = csr_mod.facts(request)
    except csr_mod.FACTS_ERRORS as exc:
        raise InputError(f"{file}: the CSR's public key or requested extensions cannot be decoded.") from exc
    result = check_request(request_facts, policy, profile)
    desc = csr_mod.describe(request)
    doc: dict[str, Any] = {
        **result.to_json(),
        "file": str(file),
        "csr": {"cn": desc.cn, "subject": desc.subject_text, "sans": desc.sans, "key": desc.key,
                "signature_hash": desc.signature_hash, "signature": desc.signature},
        "account": None if policy is None else {"id": policy.id, "org": policy.org,
                                                 "org_aliases": list(policy.org_aliases),
                                                 "domains": list(policy.domains), "source": source or "store"},
    }
    emit(doc, lambda console: _render_check(console, desc, result, policy, source))
    if not result.ok:
        raise SystemExit(1)


def _check_policy(account_id: str | None, policy_file: Path | None) -> tuple[AccountPolicy | None, str | None]:
    """The account policy to check against (from --policy, or the CA home's --account) and its file, if any."""
    from twcactl.fsutil import read_input

    if policy_file is not None:
        from twcactl.policy.toml_policy import parse_account_policy

        return parse_account_policy(read_input(policy_file, what="policy"), name=str(policy_file)), str(policy_file)
    if account_id is None:
        return None, None
    store = app().open_store()
    try:
        return store.accounts.get(account_id, ledger=False).policy(), None
    finally:
        store.close()


def _render_check(console: Console, desc: CsrDescription, result: CheckResult, policy: AccountPolicy | None,
                  source: str | None) -> None:
    cn = safe(desc.cn) if desc.cn is not None else "(no CN)"
    console.print(f"CSR  {cn}  ({desc.key}, {_hash_label(desc.signature_hash)}, signature {desc.signature})")
    console.print(f"profile {result.profile}, {safe(_account_line(policy, source))}")
    console.print("")
    width = max(len(f.rule) for f in result.findings) + 2
    indent = " " * (2 + 6 + width)
    for finding in result.findings:
        status = "ok" if finding.ok else "FAIL"
        lines = safe(finding.message).split("; ") if not finding.ok else [safe(finding.message)]
        # Long failure reasons break at their "; " clauses, aligned under the message.
        first, rest = lines[0], lines[1:]
        console.print(f"  {status:<6}{finding.rule:<{width}}{first}{';' if rest else ''}")
        for i, line in enumerate(rest):
            console.print(f"{indent}{line}{';' if i < len(rest) - 1 else ''}")
    failed = len(result.failed)
    if failed:
        console.print(f"{failed} rule{'s' if failed != 1 else ''} failed.")
    else:
        console.print(f"All {len(result.findings)} rules passed.")
