"""`k3sreg doctor` options and output, without nodes: usage errors exit 2; tables and lines render a report."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from k3sreg.cli import doctor as cli
from k3sreg.cli.main import app
from k3sreg.doctor.model import NodeReport, Report, failed, passed, warned


@pytest.mark.parametrize(("args", "said"), [
    (["--node", "n1"], "--node picks nodes of an inventory"),
    (["--push-test"], "--push-test pushes to the registry of --registry"),
    (["--image", "docker.io/"], "is not an image reference"),
    (["--registry", "10.0.0.5:30500"], "write the URL with its scheme"),
    (["--registry", "https://"], "write the URL with its scheme and host"),
    (["--registry", "https://r", "--username", "u"], "--username needs a password"),
    (["-i", "inv.yaml", "--registries", "r.yaml"], "each node's own is read"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], said: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Contradicting or malformed options stop before anything is contacted."""
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    from k3sreg.cli.main import run

    monkeypatch.setattr("sys.argv", ["k3sreg", "doctor", *args])
    with pytest.raises(SystemExit) as exit_info:
        run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and said in err and len(err.splitlines()) == 1


def report() -> Report:
    """n1 with a failure and a warning, the registry fine."""
    n1, reg = NodeReport("n1", "10.0.0.1"), NodeReport("registry", "https://r")
    n1.add([passed("dns", "registry.lan", "-> 10.0.0.5"),
            failed("tls", "registry.lan:30500", "the certificate expired\tyesterday", "issue a new one"),
            warned("fallback", "docker.io", "goes to registry-1.docker.io", "set disable-default-registry-endpoint")])
    reg.add([passed("registry.api", "https://r", "GET /v2/ answers 200")])
    return Report([n1, reg], 0.42)


def test_piped_output_is_a_header_then_one_line_per_finding(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a terminal: tab-separated lines (tabs inside a value become spaces), then the summary."""
    cli._print(report(), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "node\tcheck\tstatus\tsubject\tseen\tfix"
    assert lines[2] == "n1\ttls\tfail\tregistry.lan:30500\tthe certificate expired yesterday\tissue a new one"
    assert lines[1].endswith("\t-") and len(lines) == 6
    assert lines[-1] == "pass 2 · warn 1 · fail 1 · 0.4 s"


def test_terminal_output_is_a_node_by_check_table_and_the_problems(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal: the worst status per node and check, then each problem with its fix."""
    cli._rich(report(), "summary line")
    out = capsys.readouterr().out
    assert "k3sreg doctor" in out and "FAIL" in out and "warn" in out and "problems" in out
    assert "issue a new one" in out and out.rstrip().endswith("summary line")


def test_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the report's document."""
    import json

    cli._print(report(), as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"] == {"pass": 2, "warn": 1, "fail": 1} and len(doc["findings"]) == 4


def test_help_lists_the_ssh_flags_once() -> None:
    """doctor takes the same SSH flags as `nodes`, from one declaration."""
    out = CliRunner().invoke(app, ["doctor", "--help"]).stdout
    assert out.count("--known-hosts") == 1 and "--connect-timeout" in out and "--push-test" in out
