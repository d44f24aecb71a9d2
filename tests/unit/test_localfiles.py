"""localfiles: local files appear whole or not at all, with exactly the mode asked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from k3sreg.localfiles import replacing, write_file


def test_write_file_sets_exactly_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    """A secret written with 0600 is 0600 even under a permissive umask, and its new directory 0700."""
    old = os.umask(0)
    try:
        write_file(tmp_path / "keys" / "ca.key", b"secret", 0o600, dir_mode=0o700)
    finally:
        os.umask(old)
    assert (tmp_path / "keys" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["ca.key"]


def test_exclusive_write_keeps_the_first_file(tmp_path: Path) -> None:
    """With exclusive, a second writer gets FileExistsError and the first content stays (no temp file left)."""
    target = tmp_path / "keyring.json"
    write_file(target, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_file(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["keyring.json"]


def test_replacing_leaves_the_old_file_and_no_temporary_on_error(tmp_path: Path) -> None:
    """A stream that fails half-way replaces nothing and leaves no partial file behind."""
    target = tmp_path / "bundle.tar.zst"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("cut")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.tar.zst"]
    with replacing(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
