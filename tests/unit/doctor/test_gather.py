"""The script that reads a node, run by a real local `sh` on a temporary tree, and the parsing of its records."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from k3sreg.doctor import gather
from k3sreg.k3s.rollout.remote import MARK


def run(reading: gather.Reading) -> gather.Facts:
    """Run the script as a node would (`sh -s`) and parse what it printed."""
    done = subprocess.run(["sh", "-s"], input=gather.script(reading).encode(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    return gather.parse(done.stdout)


def test_files_are_read_with_owner_mode_mtime_and_bytes(tmp_path: Path) -> None:
    """A present file comes back byte for byte, with its uid, mode and mtime; a missing one is absent."""
    f = tmp_path / "registries yaml"
    f.write_bytes(b"mirrors:\n  \xc3\xa9: {}\n\x00end")
    f.chmod(0o640)
    os.utime(f, (1_700_000_000, 1_700_000_000))
    facts = run(gather.Reading(files=[str(f), str(tmp_path / "nope")]))
    fact = facts.file(str(f))
    assert (fact.state, fact.content, fact.mode, fact.mtime, fact.uid) == (
        "present", f.read_bytes(), 0o640, 1_700_000_000, os.getuid())
    assert facts.file(str(tmp_path / "nope")).state == "absent"


def test_a_directory_where_a_file_is_expected_is_notfile(tmp_path: Path) -> None:
    """A path that is a directory is reported as not a file, without content."""
    facts = run(gather.Reading(files=[str(tmp_path)]))
    assert facts.file(str(tmp_path)).state == "notfile"


def test_certs_d_lists_each_hosts_toml_and_globs_match_by_suffix(tmp_path: Path) -> None:
    """A certs.d directory is reported present with its <dir>/hosts.toml files; a glob reads matching files."""
    certs = tmp_path / "certs.d"
    for name in ("docker.io", "10.0.0.5:30500"):
        (certs / name).mkdir(parents=True)
        (certs / name / "hosts.toml").write_text(f"# {name}\n")
    (certs / "stray.toml").write_text("x")
    drop = tmp_path / "config.yaml.d"
    drop.mkdir()
    (drop / "10-a.yaml").write_text("a: 1\n")
    (drop / "b.txt").write_text("no\n")
    facts = run(gather.Reading(dirs=[str(certs), str(tmp_path / "missing")], globs=[(str(drop), ".yaml")]))
    assert facts.dirs == {str(certs): "present"}
    assert sorted(facts.under(str(certs))) == ["10.0.0.5:30500/hosts.toml", "docker.io/hosts.toml"]
    assert facts.file(str(drop / "10-a.yaml")).text() == "a: 1\n"
    assert facts.file(str(drop / "b.txt")).state == "absent"


def test_commands_report_status_and_output_and_missing_ones_are_left_out() -> None:
    """A command found on PATH reports its exit status and output; one that is not there prints nothing."""
    facts = run(gather.Reading(commands=[("says", ["sh", "-c", "echo 'k3s version v1.2.3' ; exit 3"]),
                                         ("gone", ["k3sreg-no-such-command", "--version"])]))
    assert facts.commands == {"says": (3, "k3s version v1.2.3")}


def test_names_are_looked_up_with_getent() -> None:
    """localhost resolves to a loopback address; a .invalid name does not resolve (status 2)."""
    facts = run(gather.Reading(names=["localhost", "nothing.invalid"]))
    assert facts.names["localhost"].status == 0 and facts.names["localhost"].addresses
    assert facts.names["nothing.invalid"].status == 2 and facts.names["nothing.invalid"].addresses == ()


def test_output_before_the_mark_is_dropped_and_garbage_after_it_refused() -> None:
    """What a login shell prints before the mark is ignored; an unknown record is an error."""
    facts = gather.parse(f"motd line\n{MARK}\nH node-7\n".encode())
    assert facts.hostname == "node-7"
    with pytest.raises(ValueError, match="no output marker"):
        gather.parse(b"H x\n")
    with pytest.raises(ValueError, match="unexpected"):
        gather.parse(f"{MARK}\nZ what\n".encode())
    with pytest.raises(ValueError, match="bad base64"):
        gather.parse(f"{MARK}\nF present 0 600 1 !!! /x\n".encode())


def test_merge_adds_a_second_reading() -> None:
    """Facts of a second script are added to the first's."""
    one = gather.parse(f"{MARK}\nH a\nL present /d\n".encode())
    one.merge(gather.parse(f"{MARK}\nH b\nC 0 eA== x\nL unreadable /e\n".encode()))
    assert (one.hostname, one.dirs, one.commands) == ("a", {"/d": "present", "/e": "unreadable"}, {"x": (0, "x")})
