"""The layers of architecture.md stay true: the core never imports click or rich,
and each device library is imported by exactly one adapter module."""

from __future__ import annotations

import ast
from pathlib import Path

import twcactl

PACKAGE = Path(twcactl.__file__).parent
ADAPTERS = {"pkcs11": "backends/p11.py", "smartcard": "backends/pcsc.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(PACKAGE)), _imports(p)) for p in sorted(PACKAGE.rglob("*.py"))]


def test_core_does_not_import_the_ui() -> None:
    offenders = [name for name, imports in _modules()
                 if not name.startswith("cli/") and imports & {"click", "rich"}]
    assert offenders == []


def test_device_libraries_only_in_their_adapter() -> None:
    for library, adapter in ADAPTERS.items():
        users = [name for name, imports in _modules() if library in imports]
        assert set(users) <= {adapter}, f"{library} imported outside {adapter}: {users}"


def test_core_reads_no_environment() -> None:
    # default_home(): the platform data directory (XDG_DATA_HOME / LOCALAPPDATA); forwarder: the thin client
    # that hands a command line and its environment to the resident process (it runs before click loads)
    allowed = {"platform_dirs.py", "forwarder.py"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("cli/") or rel in allowed:
            continue
        if "os.environ" in path.read_text("utf-8") or "getenv" in path.read_text("utf-8"):
            offenders.append(rel)
    assert offenders == []


def test_this_test_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import click\nfrom rich.console import Console\n")
    assert _imports(bad) == {"click", "rich"}


# ---------------------------------------------------------------- a thin click layer (issue 11)

#: What only the core may do: open a transaction, write the activity log, change a balance, reach the connection.
# The store's writing calls: a transaction, the activity log's appends, the ledger's balance changes.
CORE_ONLY_CALLS = {"transaction", "change_balance", "change_balance_many"}
CORE_ONLY_LOG_CALLS = {"append", "append_many"}  # on ``store.log``
MAX_COMMAND_BODY = 40


def _core_only_uses(source: str) -> list[str]:
    """``line: name`` for each call of a core-only attribute and each touch of ``.conn`` in ``source``."""
    found = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Attribute) and (
                 node.attr == "conn" or node.attr in CORE_ONLY_CALLS
                 or (node.attr in CORE_ONLY_LOG_CALLS and isinstance(node.value, ast.Attribute)
                     and node.value.attr == "log"))]
    return [f"{node.lineno}: {node.attr}" for node in sorted(found, key=lambda n: (n.lineno, n.col_offset))]


def _is_click_command(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = ast.unparse(target)
    return name == "command" or name.endswith(".command")


def _long_commands(source: str, limit: int = MAX_COMMAND_BODY) -> list[str]:
    """``name (N lines)`` for each click command whose body, docstring excluded, is over ``limit`` lines."""
    long = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not any(_is_click_command(d) for d in node.decorator_list):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        lines = (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1 if body else 0
        if lines > limit:
            long.append(f"{node.name} ({lines} lines)")
    return long


def _cli_sources() -> list[tuple[str, str]]:
    return [(str(p.relative_to(PACKAGE)), p.read_text("utf-8")) for p in sorted((PACKAGE / "cli").glob("*.py"))]


def test_the_click_layer_leaves_state_changes_to_the_core() -> None:
    offenders = {name: uses for name, source in _cli_sources() if (uses := _core_only_uses(source))}
    assert offenders == {}, "cli/ opens transactions, writes the log or balances, or touches .conn"


def test_click_commands_stay_short() -> None:
    offenders = {name: long for name, source in _cli_sources() if (long := _long_commands(source))}
    assert offenders == {}, f"click command bodies over {MAX_COMMAND_BODY} lines: move work into the core or helpers"


def test_the_thin_layer_tests_can_fail() -> None:
    bad_state = ("def add(store):\n    with store.transaction():\n        store.log.append(operator='x', action='y')\n"
                 "    store.accounts.change_balance('a', 1)\n    store.conn.execute('DELETE FROM ledger')\n"
                 "    store.log.append_many([])\n    names.append('fine: a list, not the log')\n")
    assert [use.split(": ")[1] for use in _core_only_uses(bad_state)] == [
        "transaction", "append", "change_balance", "conn", "append_many"]
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_COMMAND_BODY + 1))
    bad_long = f'@group.command("long")\ndef long():\n    """Doc."""\n{body}\n'
    assert _long_commands(bad_long) == [f"long ({MAX_COMMAND_BODY + 1} lines)"]
    short = f'@click.command()\ndef short():\n    """Doc\n    on two lines."""\n{body[: body.rindex(chr(10))]}\n'
    assert _long_commands(short) == []
    assert _long_commands(bad_long.replace("@group.command", "@group.group")) == []


# The areas of docs/architecture.md ("Areas and allowed imports"): a module may import its own area and the areas
# listed for it, never one above it.  Lazy imports inside functions count too.
AREAS: dict[str, tuple[str, ...]] = {
    "foundation": (),
    "policy": ("foundation",),
    "pkix": ("foundation", "policy"),
    "backends": ("foundation", "policy", "pkix"),
    "store": ("foundation",),
    "front": ("foundation", "policy", "pkix", "backends"),
    "validation": ("foundation", "policy", "pkix"),
    "authority": ("foundation", "policy", "pkix", "backends", "store", "front", "validation"),
    "serve": ("foundation", "policy", "pkix", "backends", "store", "front", "authority", "validation"),
    "cli": ("foundation", "policy", "pkix", "backends", "store", "front", "authority", "serve", "validation"),
}
FRONT_DOORS = {"csr.py", "issue.py", "pfx.py", "card.py"}
FOUNDATION = {"__init__.py", "errors.py", "models.py", "fsutil.py", "platform_dirs.py"}


def _area(rel: str) -> str:
    """The area of a module path relative to the package (``authority/lifecycle.py`` -> ``authority``)."""
    top = rel.split("/")[0]
    if top == "rules" or rel in FOUNDATION:
        return "foundation"
    if rel in FRONT_DOORS:
        return "front"
    if top in ("__main__.py", "forwarder.py"):  # the console entry and its client of the resident process
        return "cli"
    if top.endswith(".py"):
        raise AssertionError(f"{rel}: a module outside every area; add it to an area in docs/architecture.md")
    return top


def _module_area(module: str) -> str | None:
    """The area of an imported ``twcactl.x.y`` module name, or None for other packages."""
    parts = module.split(".")
    if parts[0] != "twcactl":
        return None
    if len(parts) == 1:
        return "foundation"
    path = PACKAGE.joinpath(*parts[1:])
    rel = str(path.relative_to(PACKAGE)) + ("/__init__.py" if path.is_dir() else ".py")
    return _area(rel)


def _twcactl_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("twcactl"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("twcactl"):
            for alias in node.names:  # ``from twcactl.pkix import names`` imports the module twcactl.pkix.names
                sub = f"{node.module}.{alias.name}"
                is_module = PACKAGE.joinpath(*sub.split(".")[1:]).with_suffix(".py").exists()
                found.add(sub if is_module else node.module)
    return found


def _area_violations(package: Path) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package))
        area = _area(rel)
        for module in sorted(_twcactl_imports(path)):
            target = _module_area(module)
            if target is not None and target != area and target not in AREAS[area]:
                bad.append(f"{rel} ({area}) imports {module} ({target})")
    return bad


def test_areas_import_only_what_they_may() -> None:
    assert _area_violations(PACKAGE) == []


def test_rules_need_no_cryptography() -> None:
    offenders = [name for name, imports in _modules()
                 if name.startswith("rules/") and imports & {"cryptography", "asn1crypto", "pkcs11", "smartcard"}]
    assert offenders == []


def test_area_rule_can_fail() -> None:
    assert _module_area("twcactl.cli.output") == "cli"
    assert "cli" not in AREAS["authority"] and "authority" not in AREAS["store"]
    assert _area("store/records.py") == "store" and _area("rules/vocab.py") == "foundation"
