"""The node-side shell scripts, run by a real local `sh` on a temporary directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest

from k3sreg.k3s.rollout import remote


def sh(script: str) -> subprocess.CompletedProcess[bytes]:
    """Run `script` the way a node does: on stdin of `sh -s`."""
    return subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, check=False)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Where the scripts write registries.yaml."""
    return tmp_path / "etc" / "rancher" / "k3s" / "registries.yaml"


def read(target: Path) -> remote.FileState:
    """What `read_script` reports on `target`."""
    done = sh(remote.read_script(PurePosixPath(target)))
    assert done.returncode == 0, done.stderr
    return remote.parse_read(done.stdout)


def test_read_reports_a_missing_file(target: Path) -> None:
    """No file: absent, no backup."""
    assert read(target) == remote.FileState(None, None, None, "-")


def test_first_write_creates_the_file_0600_with_a_none_marker(target: Path) -> None:
    """The first write creates directories and the file (mode 0600) and notes that nothing was there before."""
    content = b"mirrors: {}\n\x00binary-safe\n"
    done = sh(remote.write_script(PurePosixPath(target), content))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == content
    assert target.stat().st_mode & 0o777 == 0o600
    state = read(target)
    assert (state.content, state.mode, state.backup, state.secure) == (content, 0o600, "none", True)
    assert sorted(p.name for p in target.parent.iterdir()) == ["registries.yaml", "registries.yaml.k3sreg-backup-none"]


def test_second_write_keeps_the_previous_version_as_backup(target: Path) -> None:
    """Replacing a file keeps exactly the replaced version, 0600, and no temporary file."""
    sh(remote.write_script(PurePosixPath(target), b"one\n"))
    sh(remote.write_script(PurePosixPath(target), b"two\n"))
    backup = target.with_name("registries.yaml.k3sreg-backup")
    assert (target.read_bytes(), backup.read_bytes()) == (b"two\n", b"one\n")
    assert backup.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["registries.yaml", "registries.yaml.k3sreg-backup"]
    assert read(target).backup == "file"


def test_damaged_content_leaves_the_old_file_and_no_temporary(target: Path) -> None:
    """A checksum mismatch on the node aborts before the rename: old file intact, temp file removed."""
    sh(remote.write_script(PurePosixPath(target), b"good\n"))
    script = remote.write_script(PurePosixPath(target), b"new\n")
    tampered = script.replace(hashlib.sha256(b"new\n").hexdigest(), "0" * 64)
    done = sh(tampered)
    assert done.returncode == remote.EXIT_DAMAGED
    assert b"damaged" in done.stderr
    assert target.read_bytes() == b"good\n"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_a_truncated_script_runs_nothing(target: Path) -> None:
    """A script cut anywhere before its last line is a syntax error or a no-op: the file is never touched."""
    sh(remote.write_script(PurePosixPath(target), b"keep\n"))
    script = remote.write_script(PurePosixPath(target), b"replace\n")
    for cut in range(10, len(script) - len('k3sreg_main "$@"\n'), 37):
        sh(script[:cut])
        assert target.read_bytes() == b"keep\n", f"cut at {cut}"


def test_rollback_swaps_file_and_backup(target: Path) -> None:
    """Rollback restores the backup and keeps the replaced file as the new backup (a second rollback redoes)."""
    sh(remote.write_script(PurePosixPath(target), b"one\n"))
    sh(remote.write_script(PurePosixPath(target), b"two\n"))
    assert sh(remote.rollback_script(PurePosixPath(target))).returncode == 0
    assert target.read_bytes() == b"one\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sh(remote.rollback_script(PurePosixPath(target))).returncode == 0
    assert target.read_bytes() == b"two\n"


def test_rollback_of_a_first_write_removes_the_file(target: Path) -> None:
    """When there was no file before, rolling back removes it (and can be undone)."""
    sh(remote.write_script(PurePosixPath(target), b"one\n"))
    assert sh(remote.rollback_script(PurePosixPath(target))).returncode == 0
    assert not target.exists()
    assert sh(remote.rollback_script(PurePosixPath(target))).returncode == 0
    assert target.read_bytes() == b"one\n"


def test_rollback_without_backup_fails_and_says_why(target: Path) -> None:
    """No backup: a distinct exit status and a reason, nothing changed."""
    target.parent.mkdir(parents=True)
    target.write_bytes(b"hand made\n")
    done = sh(remote.rollback_script(PurePosixPath(target)))
    assert done.returncode == remote.EXIT_NO_BACKUP
    assert b"no backup" in done.stderr
    assert target.read_bytes() == b"hand made\n"


def test_secure_fixes_mode_without_touching_content(target: Path) -> None:
    """A readable file becomes 0600, same bytes."""
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x\n")
    os.chmod(target, 0o644)
    assert read(target).secure is False
    assert sh(remote.secure_script(PurePosixPath(target))).returncode == 0
    assert read(target).secure is True and target.read_bytes() == b"x\n"


def test_detect_lists_installed_units_only(tmp_path: Path) -> None:
    """Detection prints the services whose unit file exists in a systemd unit directory."""
    done = sh(remote.detect_script(["k3sreg-test-no-such-unit", "k3s-agent-none"]))
    assert done.returncode == 0 and remote.parse_units(done.stdout) == []
    assert remote.parse_units(remote.MARK.encode() + b"\nunit=k3s\nnoise\nunit=k3s-agent\n") == ["k3s", "k3s-agent"]


def test_hosts_write_and_listing(tmp_path: Path) -> None:
    """hosts.toml files land 0600 in 0700 directories; listed directories are removed; the listing sees them."""
    certs = PurePosixPath(tmp_path / "certs.d")
    (tmp_path / "certs.d" / "old.lan").mkdir(parents=True)
    (tmp_path / "certs.d" / "old.lan" / "hosts.toml").write_text("# File generated by k3s. DO NOT EDIT.\n")
    (tmp_path / "certs.d" / "mine").mkdir()
    (tmp_path / "certs.d" / "mine" / "hosts.toml").write_text('server = "http://x"\n')
    files = {"docker.io/hosts.toml": b"# File generated by k3s. DO NOT EDIT.\nserver = 'a'\n"}
    done = sh(remote.hosts_write_script(certs, files, ["old.lan"]))
    assert done.returncode == 0, done.stderr
    written = tmp_path / "certs.d" / "docker.io" / "hosts.toml"
    assert written.read_bytes() == files["docker.io/hosts.toml"]
    assert written.stat().st_mode & 0o777 == 0o600
    assert written.parent.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "certs.d" / "old.lan").exists()
    listing = remote.parse_hosts_listing(sh(remote.hosts_listing_script(certs)).stdout)
    assert {(h.directory, h.first_line) for h in listing} == {
        ("docker.io", "# File generated by k3s. DO NOT EDIT."), ("mine", 'server = "http://x"')}
    by_dir = {h.directory: h for h in listing}
    assert by_dir["docker.io"].sha256 == hashlib.sha256(files["docker.io/hosts.toml"]).hexdigest()


def test_parse_read_rejects_garbage_and_skips_what_rc_files_print() -> None:
    """Output before the marker (a chatty .bashrc) is dropped; no marker or a bad header is an error."""
    mark = remote.MARK.encode()
    with pytest.raises(ValueError, match="unexpected answer"):
        remote.parse_read(b"Welcome to Ubuntu!\npresent 0 600 file\nabc")
    with pytest.raises(ValueError, match="unexpected answer"):
        remote.parse_read(mark + b"\nWelcome!\n")
    assert remote.parse_read(mark + b"\npresent 0 600 file\nabc").content == b"abc"
    assert remote.parse_read(b"hello from bashrc\n" + mark + b"\npresent 0 600 -\n" + mark).content == mark
    assert remote.parse_units(b"unit=k3s\n" + mark + b"\nunit=k3s-agent\n") == ["k3s-agent"]


def test_remote_command_stops_the_whole_script_at_its_limit() -> None:
    """The node kills a script (and what it started) at the limit: exit 124, nothing after it runs."""
    from k3sreg.k3s.rollout.ssh import TIMEOUT_STATUS, remote_command

    started = time.monotonic()
    done = subprocess.run(["sh", "-c", remote_command(1, sudo=False)], input=b"sleep 30\necho after\n",
                          capture_output=True, check=False)
    assert done.returncode == TIMEOUT_STATUS
    assert b"after" not in done.stdout
    assert time.monotonic() - started < 10
    quick = subprocess.run(["sh", "-c", remote_command(5, sudo=False)], input=b"echo ok\n", capture_output=True)
    assert (quick.returncode, quick.stdout) == (0, b"ok\n")


def test_tls_files_are_written_with_their_modes_and_reported(tmp_path: Path) -> None:
    """files_write_script installs each file with its mode (a key 0600, a certificate 0644) in a directory it
    creates; files_state_script reports content hash, owner and mode, and `-` for a missing file."""
    ca, key, absent = (PurePosixPath(tmp_path / "etc" / n) for n in ("ca.crt", "node.key", "none.crt"))
    done = sh(remote.files_write_script({ca: (b"CA PEM\n", 0o644), key: (b"KEY PEM\n", 0o600)}))
    assert done.returncode == 0, done.stderr
    assert (Path(str(ca)).read_bytes(), Path(str(ca)).stat().st_mode & 0o777) == (b"CA PEM\n", 0o644)
    assert Path(str(key)).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in Path(str(ca)).parent.iterdir()) == ["ca.crt", "node.key"]  # no temporary left
    state = remote.parse_files_state(sh(remote.files_state_script([ca, key, absent])).stdout)
    assert state[str(ca)] == remote.NodeFileState(hashlib.sha256(b"CA PEM\n").hexdigest(), os.getuid(), 0o644)
    assert state[str(absent)] == remote.NodeFileState(None, None, None)
