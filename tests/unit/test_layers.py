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
