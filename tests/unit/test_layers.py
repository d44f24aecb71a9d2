"""Layer rules import-linter cannot express: only `server/` imports aiohttp.web, only `cli/` prints or exits."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "k3sreg"


def modules_outside(package: str) -> list[Path]:
    return [p for p in SRC.rglob("*.py") if package not in p.relative_to(SRC).parts]


def test_only_server_imports_aiohttp_web() -> None:
    """No module outside k3sreg/server imports aiohttp.web (the client half of aiohttp is fine)."""
    offenders = []
    for path in modules_outside("server"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "aiohttp" and \
                    any(a.name == "web" for a in node.names):
                offenders.append(str(path))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp.web"):
                offenders.append(str(path))
            if isinstance(node, ast.Import) and any(a.name.startswith("aiohttp.web") for a in node.names):
                offenders.append(str(path))
    assert offenders == []


def test_only_cli_prints_or_exits() -> None:
    """print(), sys.exit() and typer.echo appear only under k3sreg/cli."""
    offenders = []
    for path in modules_outside("cli"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else (f"{getattr(f.value, 'id', '')}.{f.attr}"
                                                              if isinstance(f, ast.Attribute) else "")
                if name in ("print", "sys.exit", "typer.echo", "exit"):
                    offenders.append(f"{path}:{node.lineno} {name}")
    assert offenders == []


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def test_upstream_reaches_storage_only_through_its_store_api() -> None:
    """k3sreg/upstream never reaches into a store's driver or BlobStore, nor local files with os.pread: an
    object-store driver can take the filesystem's place (import-linter forbids the driver and path modules)."""
    offenders = []
    for path in (SRC / "upstream").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if (node.attr in ("driver", "blobs") and _name(node.value) in ("store", "registry")) or \
                    (node.attr == "pread" and _name(node.value) == "os"):
                offenders.append(f"{path.name}:{node.lineno} {_name(node.value)}.{node.attr}")
    assert offenders == []
