"""`k3sreg garbage-collect` and `k3sreg scrub`: output, --json, exit status, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.filesystem import FilesystemDriver
from tests.unit.cli.test_cli import k3sreg
from tests.unit.storage.pushes import Store


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Store, Path]:
    """A store with one image and one stray blob, and a config.yml naming it."""
    store = Store(FilesystemDriver(tmp_path / "data"))
    store.image("app", "1", b"layer")
    store.blob("app", b"stray")
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    return store, config


def test_garbage_collect_prints_distributions_lines(setup: tuple[Store, Path], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines of `registry garbage-collect` on stdout, one summary line with the bytes freed on stderr, exit
    0; the stray blob is gone and the run's report saved."""
    store, config = setup
    code, out, err = k3sreg(capsys, monkeypatch, "garbage-collect", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "app" and lines[1].startswith("app: marking manifest sha256:") and lines[-3] == ""
    assert lines[-2] == "3 blobs marked, 1 blobs and 0 manifests eligible for deletion"
    assert lines[-1] == f"blob eligible for deletion: {Digest.of(b'stray')}"
    assert err.startswith("garbage collection: removed 0 manifests and 1 blobs (5 bytes)")
    assert not store.has(Digest.of(b"stray"))
    assert store.driver.stat(paths.GC_REPORT) is not None


def test_garbage_collect_dry_run_json(setup: tuple[Store, Path], capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run --json prints the report alone and removes nothing (nor records a run)."""
    store, config = setup
    code, out, _ = k3sreg(capsys, monkeypatch, "garbage-collect", "-d", "-m", "--json", str(config))
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "gc" and doc["dry_run"] and doc["delete_untagged"]
    assert (doc["blobs_removed"], doc["bytes_freed"], doc["objects_removed"]) == (1, 5, 1)
    assert store.has(Digest.of(b"stray")) and store.driver.stat(paths.GC_REPORT) is None


def test_garbage_collect_delay_keeps_a_fresh_upload(setup: tuple[Store, Path], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--delay 1h keeps a blob uploaded a moment ago."""
    store, config = setup
    code, _, err = k3sreg(capsys, monkeypatch, "garbage-collect", "--delay", "1h", str(config))
    assert code == 0 and store.has(Digest.of(b"stray")) and "1 unneeded blobs kept" in err


def test_garbage_collect_refuses_while_another_runs(setup: tuple[Store, Path], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A second collection on the same storage stops at once: exit 1, one line."""
    store, config = setup
    store.driver.put_content(paths.GC_CLOCK, b"")
    lock = store.driver.try_lock(paths.GC_LOCK)
    try:
        code, out, err = k3sreg(capsys, monkeypatch, "garbage-collect", str(config))
    finally:
        assert lock is not None
        lock.release()
    assert (code, out) == (1, "") and err.startswith("error: another garbage collection") and err.count("\n") == 1


@pytest.mark.parametrize("args", [("garbage-collect", "missing.yml"), ("garbage-collect", "--delay", "soon", "{c}"),
                                  ("scrub", "--rate", "fast", "{c}"), ("scrub",)])
def test_usage_errors_are_one_line(args: tuple[str, ...], setup: tuple[Store, Path],
                                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing config, a bad --delay or --rate, a missing argument: exit 2, no traceback."""
    _, config = setup
    code, _, err = k3sreg(capsys, monkeypatch, *(a.format(c=config) for a in args))
    assert code == 2 and "Traceback" not in err and err.strip()


def test_scrub_exit_status_and_output(setup: tuple[Store, Path], capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole store: exit 0 and a summary line. A flipped byte: exit 1, the blob named; with --quarantine it
    is moved aside; --json gives the report."""
    store, config = setup
    code, out, _ = k3sreg(capsys, monkeypatch, "scrub", str(config))
    assert code == 0 and out.startswith("4 blobs") and "0 corrupt blobs" in out
    layer = Digest.of(b"layer")
    store.driver.put_content(paths.blob_data(layer), b"LAYER")
    code, out, _ = k3sreg(capsys, monkeypatch, "scrub", str(config))
    assert code == 1 and out.splitlines()[0].startswith(f"blob {layer}: its bytes are sha256:")
    code, out, _ = k3sreg(capsys, monkeypatch, "scrub", "--json", "--quarantine", "--rate", "1GiB", str(config))
    doc = json.loads(out)
    assert code == 1 and doc["corrupt"][0]["quarantined"] and doc["missing_blobs"][0]["blob"] == str(layer)
    assert store.driver.stat(paths.quarantine_dir(layer) + "/data") is not None


@pytest.mark.parametrize("command", ["garbage-collect", "scrub"])
def test_a_root_that_does_not_exist_is_refused_and_not_made(command: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped storage root: exit 2 with one line naming it, and no directory is created there."""
    root = tmp_path / "typo"
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    code, out, err = k3sreg(capsys, monkeypatch, command, str(config))
    assert (code, out) == (2, "") and f"{root} is not a directory" in err and err.count("\n") == 1
    assert not root.exists()
