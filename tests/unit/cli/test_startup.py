"""Start-up cost: `k3sreg --help` and the quick checks import none of the heavy libraries the server needs.

A behaviour, not a timing: each heavy import (pydantic, aiohttp, asyncssh, rich, cryptography) costs tens to
hundreds of milliseconds, and bench/scenarios/startup.py times the whole processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "aiohttp", "asyncssh", "rich", "cryptography", "prometheus_client", "uvloop", "yarl")

PROBE = """
import json, sys
sys.argv = ["k3sreg", *json.loads(sys.argv[1])]
from k3sreg.cli.main import run
try:
    run()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def loaded(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          timeout=60)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("nodes", "--help"), ("mirrors", "--help"),
                                  ("serve", "--help"), ("nodes", "apply", "--help"),
                                  ("images", "--help"), ("images", "sync", "--help"),
                                  ("doctor", "--help"),
                                  ("garbage-collect", "--help"), ("scrub", "--help")])
def test_help_imports_nothing_heavy(args: tuple[str, ...]) -> None:
    """Help and --version load typer and k3sreg's command modules only."""
    assert loaded(*args).isdisjoint(HEAVY), sorted(loaded(*args) & set(HEAVY))


def test_mirrors_validate_imports_nothing_heavy(tmp_path: Path) -> None:
    """`mirrors validate` reads the file with PyYAML and k3sreg.k3s alone."""
    f = tmp_path / "registries.yaml"
    f.write_text('mirrors:\n  docker.io:\n    endpoint: ["http://10.0.0.5:30500"]\n')
    modules = loaded("mirrors", "validate", str(f))
    assert "k3sreg" in modules and "yaml" in modules
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_mirrors_validate_with_absent_certificate_files_imports_nothing_heavy(tmp_path: Path) -> None:
    """Certificate files named in configs.*.tls but absent here are not read: cryptography stays unloaded."""
    f = tmp_path / "registries.yaml"
    f.write_text('mirrors:\n  docker.io:\n    endpoint: ["https://10.0.0.5:30500"]\n'
                 'configs:\n  "10.0.0.5:30500":\n    tls:\n      ca_file: /etc/rancher/k3s/absent-ca.crt\n')
    modules = loaded("mirrors", "validate", str(f))
    assert "k3sreg" in modules and modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_registry_client_loads_only_its_settings_section() -> None:
    """`doctor` and the image commands use the client with its `upstreams` section: the whole Settings model
    (every section's pydantic schema) is not built for them."""
    done = subprocess.run([sys.executable, "-c", "import sys, k3sreg.client, k3sreg.doctor; "
                           "print(sorted(m for m in sys.modules if m.startswith('k3sreg.config.')))"],
                          capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert "k3sreg.config.upstreams" in loaded and "k3sreg.config.model" not in loaded, sorted(loaded)
