"""Editing htpasswd files (`k3sreg htpasswd`): bcrypt entries Distribution reads, passwords never in argv."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.model import Denial, Principal
from k3sreg.auth.users import delete_user, hash_password, list_users, set_user
from k3sreg.cli.main import app
from k3sreg.errors import UsageError
from tests.unit.auth.conftest import SECRETS

runner = CliRunner()
SECRET = "cli-secret-pw"
SECRETS.add(SECRET)


def test_set_adds_then_updates_keeping_other_lines(tmp_path: Path) -> None:
    """A new file is 0600; updating a user replaces its line in place; comments and others stay."""
    path = tmp_path / "htpasswd"
    assert set_user(path, "alice", SECRET, cost=4) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"# team\n" + path.read_bytes())
    assert set_user(path, "bob", "bob-pw", cost=4) is True
    assert set_user(path, "alice", "new-pw", cost=4) is False
    lines = path.read_bytes().splitlines()
    assert lines[0] == b"# team" and lines[1].startswith(b"alice:$2y$04$") and lines[2].startswith(b"bob:")
    users = HtpasswdFile(path)
    assert isinstance(users.verify("alice", "new-pw"), Principal)
    assert isinstance(users.verify("alice", SECRET), Denial)


def test_existing_mode_is_kept(tmp_path: Path) -> None:
    """A file the operator made 0640 stays 0640."""
    path = tmp_path / "htpasswd"
    path.write_text("")
    path.chmod(0o640)
    set_user(path, "alice", SECRET, cost=4)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_delete_and_list(tmp_path: Path) -> None:
    """delete removes every line of the user; list names each user once."""
    path = tmp_path / "htpasswd"
    for user in ("a", "b"):
        set_user(path, user, SECRET, cost=4)
    assert list_users(path) == ["a", "b"]
    assert delete_user(path, "a") is True and delete_user(path, "a") is False
    assert list_users(path) == ["b"]


@pytest.mark.parametrize(("user", "password"), [("a:b", "x"), ("a b", "x"), ("#a", "x"), ("", "x"),
                                                ("ok", ""), ("ok", "x" * 73)])
def test_refused_input(tmp_path: Path, user: str, password: str) -> None:
    """Names htpasswd cannot hold, empty passwords and passwords bcrypt would cut are refused."""
    with pytest.raises(UsageError):
        set_user(tmp_path / "h", user, password, cost=4)
    assert not (tmp_path / "h").exists()


def test_hash_is_2y_bcrypt() -> None:
    """Entries are $2y$ as `htpasswd -B` writes them."""
    assert hash_password("pw", 4).startswith(b"$2y$04$")


def test_cli_reads_the_password_from_stdin_only(tmp_path: Path) -> None:
    """`set --password-stdin` takes the first line of stdin; there is no option to pass it as an argument."""
    path = tmp_path / "htpasswd"
    result = runner.invoke(app, ["htpasswd", "set", str(path), "ci", "--password-stdin", "--cost", "4"],
                           input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert isinstance(HtpasswdFile(path).verify("ci", SECRET), Principal)
    help_text = runner.invoke(app, ["htpasswd", "set", "--help"]).output
    assert "--password " not in help_text and "--password-stdin" in help_text
    extra = runner.invoke(app, ["htpasswd", "set", str(path), "ci", SECRET])
    assert extra.exit_code != 0  # a password given as an argument is not accepted


def test_cli_delete_list_check(tmp_path: Path) -> None:
    """delete (exit 1 for an unknown user), list, and check flagging a non-bcrypt line."""
    path = tmp_path / "htpasswd"
    set_user(path, "a", SECRET, cost=4)
    assert runner.invoke(app, ["htpasswd", "list", str(path)]).stdout == "a\n"
    assert runner.invoke(app, ["htpasswd", "check", str(path)]).exit_code == 0
    path.write_bytes(path.read_bytes() + b"old:$apr1$abcdefgh$0123456789abcdefghijkl\n")
    checked = runner.invoke(app, ["htpasswd", "check", str(path)])
    assert checked.exit_code == 1 and "line 2" in checked.output and "old" in checked.output
    assert runner.invoke(app, ["htpasswd", "delete", str(path), "nobody"]).exit_code == 2
    assert runner.invoke(app, ["htpasswd", "delete", str(path), "a"]).exit_code == 0


def test_cli_without_a_terminal_asks_for_stdin(tmp_path: Path) -> None:
    """Without --password-stdin and no terminal, a one-line error says how to pass the password."""
    result = runner.invoke(app, ["htpasswd", "set", str(tmp_path / "h"), "ci"])
    assert result.exit_code == 2 and "--password-stdin" in result.output
