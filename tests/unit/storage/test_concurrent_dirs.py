"""Directory operations of the filesystem driver are safe against each other across processes."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

from k3sreg.storage import paths
from k3sreg.storage.filesystem import FilesystemDriver

ROUNDS = 1500
LINK = b"sha256:" + b"0" * 64


def _writer(root: str, out: multiprocessing.Queue[str]) -> None:
    fs = FilesystemDriver(Path(root))
    try:
        for i in range(ROUNDS):
            fs.put_content(f"{paths.tag_dir('r', 't')}/index/sha256/{i % 7:064d}/link", LINK)
            fs.put_content(paths.tag_current_link("r", "t"), LINK)
    except Exception:
        out.put(traceback.format_exc())
    else:
        out.put("done")


def _deleter(root: str, out: multiprocessing.Queue[str]) -> None:
    fs = FilesystemDriver(Path(root))
    try:
        for _ in range(ROUNDS):
            fs.delete(paths.tag_dir("r", "t"))
    except Exception:
        out.put(traceback.format_exc())
    else:
        out.put("done")


def test_tag_writes_and_deletes_race_without_errors(tmp_path: Path) -> None:
    """Processes writing a tag's links and deleting its directory at the same time never fail."""
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=fn, args=(str(tmp_path), out)) for fn in (_writer, _writer, _deleter, _deleter)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    failures = [r for r in results if r != "done"]
    assert failures == [], failures[0]
    fs = FilesystemDriver(tmp_path)
    assert fs.list(paths.TMP) == []
    current = fs.stat(paths.tag_current_link("r", "t"))
    assert current is None or fs.get_content(paths.tag_current_link("r", "t")) == LINK
