"""The k3sreg command line as a whole: --version, help, the exit status scheme, output when piped."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from k3sreg import __version__
from k3sreg.cli.main import app, run

GOOD = 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n'
BAD = 'mirrors:\n  docker.io:\n    endpoints: ["http://127.0.0.1:30500"]\n'
FATAL = 'mirrors:\n  docker.io:\n    endpoint: "http://x"\n'


def k3sreg(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the console script's entry point in-process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["k3sreg", *args])
    capsys.readouterr()
    try:
        run()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_version_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`k3sreg --version` (and -V) prints the version and exits 0."""
    for flag in ("--version", "-V"):
        code, out, _ = k3sreg(capsys, monkeypatch, flag)
        assert (code, out) == (0, f"k3sreg {__version__}\n")


def test_help_shows_no_type_after_flags() -> None:
    """No command's help prints a value type (`<bool>`) after an option that takes no value."""
    paths = list(command_paths(typer.main.get_command(app)))
    assert len(paths) >= 12
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "--help" in result.stdout, path
        assert "<bool>" not in result.stdout, (path, result.stdout)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    port = closed_port()
    paths = {
        "good": GOOD, "bad": BAD, "fatal": FATAL,
        "inventory": f"nodes:\n  - {{name: n1, address: 127.0.0.1, port: {port}, role: server, flavor: k3s}}\n",
        "badinv": "defaults: {usr: root}\nnodes:\n  - {address: 127.0.0.1}\n",
        "config": "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\nhttp:\n  adr: :5000\n",
    }
    out = {}
    for name, text in paths.items():
        (tmp_path / name).write_text(text)
        out[name] = str(tmp_path / name)
    out["missing"] = str(tmp_path / "missing.yaml")
    out["dir"] = str(tmp_path / "out")
    return out


# (arguments, expected exit status): 0 ok, 1 = the command found problems, 2 = usage or configuration error.
CASES: list[tuple[str, int]] = [
    ("version", 0),
    ("mirrors validate {good}", 0),
    ("mirrors validate {bad}", 1),
    ("mirrors validate {missing}", 2),
    ("mirrors validate", 2),
    ("mirrors validate {good} --no-such-flag", 2),
    ("mirrors render {good} --out {dir}", 0),
    ("mirrors render {fatal} --out {dir}", 2),
    ("mirrors render {missing} --out {dir}", 2),
    ("mirrors render {good} --out {dir} --flavor nope", 2),
    ("mirrors render {good} --out {good}", 2),
    ("mirrors explain nginx --config {good}", 0),
    ("mirrors explain nginx", 2),
    ("mirrors explain nginx --config {fatal}", 2),
    ("mirrors explain nginx --config {missing}", 2),
    ("mirrors init -e http://127.0.0.1:5000 -m docker.io", 0),
    ("mirrors init -e http://127.0.0.1:5000 --rewrite nope", 2),
    ("mirrors init -e http://127.0.0.1:5000 --from-config {config}", 2),
    ("mirrors init -e http://127.0.0.1:5000 -m docker.io -o {dir}/no/such/dir/r.yaml", 2),
    ("nodes status -i {inventory} -r {good} --known-hosts {missing} --connect-timeout 5", 1),
    ("nodes plan -i {inventory} -r {good} --known-hosts {missing} --connect-timeout 5", 1),
    ("nodes apply -i {inventory} -r {good} --known-hosts {missing} --connect-timeout 5", 1),
    ("nodes rollback -i {inventory} --all --known-hosts {missing} --connect-timeout 5", 1),
    ("nodes apply -i {inventory} -r {fatal}", 2),
    ("nodes plan -i {badinv} -r {good}", 2),
    ("nodes status -i {missing} -r {good}", 2),
    ("nodes rollback -i {inventory}", 2),
    ("nodes plan -i {inventory} -r {good} --node nope", 2),
    ("serve {config}", 2),
    ("serve {missing}", 2),
    ("serve {good} --config {good}", 2),
    ("serve --workers 0", 2),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[f"{a} -> {c}" for a, c in CASES])
def test_exit_status_scheme(args: str, expected: int, files: dict[str, str], capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command exits 0 when fine, 1 when it found problems, 2 on usage or configuration errors."""
    code, _out, err = k3sreg(capsys, monkeypatch, *args.format(**files).split())
    assert code == expected, err
    assert "Traceback" not in err
    if expected == 2:
        assert err.strip(), "a usage or configuration error says what is wrong"


def test_serve_refuses_a_config_given_twice(files: dict[str, str], capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve a.yml --config b.yml` is an error naming both files, not a silent choice of b.yml."""
    code, _, err = k3sreg(capsys, monkeypatch, "serve", files["good"], "--config", files["bad"])
    assert code == 2 and files["good"] in err and files["bad"] in err


def test_node_table_is_one_plain_line_per_node_when_piped(files: dict[str, str], capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With stdout not a terminal, `nodes status` prints a header and one tab-separated line per node."""
    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = k3sreg(capsys, monkeypatch, "nodes", "status", "-i", files["inventory"], "-r", files["good"],
                          "--known-hosts", files["missing"], "--connect-timeout", "5")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split("\t") == ["node", "address", "role", "service", "result", "detail"]
    row = lines[1].split("\t")
    assert row[:5] == ["n1", "127.0.0.1", "server", "?", "unreachable"]
    assert row[5].startswith("cannot connect to 127.0.0.1:")
    assert lines[2] == "in-sync 0 · differs 0 · missing 0 · unreachable 1"
    assert len(lines) == 3


def test_help_shows_argument_help() -> None:
    """Positional arguments keep their help text in --help (click 8.5 with this typer dropped it)."""
    result = CliRunner().invoke(app, ["mirrors", "validate", "--help"])
    assert "The registries.yaml to check ('-' for stdin)." in result.stdout
