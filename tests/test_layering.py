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
    allowed = {"store/__init__.py"}  # default_home(): the platform data directory (XDG_DATA_HOME / LOCALAPPDATA)
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
