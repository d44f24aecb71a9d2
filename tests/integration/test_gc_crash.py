"""SIGKILL in the middle of a garbage collection's sweep loses nothing still referenced, and the next run
finishes the job: `k3sreg garbage-collect` killed again and again, and `serve` (two workers) killed while its
background collection sweeps.

The store is written straight to disk through the storage API: tagged images sharing layers, a multi-arch
index, a referrer, untagged manifests, and thousands of blobs nothing needs, so that a sweep lasts long enough
to be cut. A kill lands once the number of blobs on disk has started to fall (the sweep is under way).
"""

from __future__ import annotations

import functools
import json
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.gc import blob_digests
from tests.peers.registry import K3SREG_BIN, K3sregServer
from tests.peers.skopeo import Skopeo
from tests.unit.storage.pushes import Store

GARBAGE = 4000


def _layer(seed: str) -> bytes:
    return f"{seed} ".encode().ljust(256, b".")


def build(root: Path) -> tuple[Store, set[Digest], list[str]]:
    """The store: (its helper, every digest that must survive, the tags to pull)."""
    store = Store(FilesystemDriver(root))
    tags = []
    for i in range(6):
        store.image("app", f"v{i}", _layer("shared base"), _layer(f"app {i}"))
        tags.append(f"app:v{i}")
    children = [store.image("multi", "@", _layer("shared base"), _layer(f"arch {a}")) for a in ("amd64", "arm64")]
    store.index("multi", "latest", *children)
    tags.append("multi:latest")
    subject = store.manifests.resolve("app", "v0")
    store.image("app", "@", _layer("signature"),
                subject={"mediaType": mt.OCI_MANIFEST, "digest": str(subject), "size": 1})
    for i in range(20):
        store.image("old", "@", _layer(f"untagged {i}"))
    for i in range(GARBAGE):
        store.blobs.put_small(Digest.of(_layer(f"garbage {i}")), _layer(f"garbage {i}"))
    return store, _needed(store), tags


def _needed(store: Store) -> set[Digest]:
    """Every digest a tag reaches (children, referrers and what they need), from the store as it is now."""
    keep: set[Digest] = set()
    for repo in ("app", "multi"):
        todo = [store.manifests.resolve(repo, t) for t in store.manifests.tags.list(repo)]
        todo += [r.digest for d in list(todo) for r in store.manifests.referrers(repo, d, None)]
        while todo:
            d = todo.pop()
            keep.add(d)
            doc = json.loads(store.blobs.get_small(d))
            todo += [Digest.parse(m["digest"]) for m in doc.get("manifests", [])]
            keep.update(Digest.parse(b["digest"]) for b in [doc.get("config"), *doc.get("layers", [])] if b)
    return keep


def _count(root: Path) -> int:
    return sum(1 for _ in blob_digests(FilesystemDriver(root)))


def _intact(store: Store, needed: set[Digest], config: Path) -> None:
    missing = [d for d in needed if store.blobs.stat_global(d) is None]
    assert missing == []
    scrub = subprocess.run([str(K3SREG_BIN), "scrub", str(config)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert scrub.returncode == 0, scrub.stdout[-2000:]


def _kill_once_sweeping(alive: Callable[[], bool], kill: Callable[[], None], root: Path, before: int,
                        rng: random.Random) -> int:
    """Wait until the blob count has fallen by a random amount, then kill; returns the count at the kill."""
    target = before - rng.randrange(1, GARBAGE // 4)
    deadline = time.monotonic() + 60
    while (now := _count(root)) > target and alive():
        assert time.monotonic() < deadline, "the sweep never started"
        time.sleep(0.002)
    kill()
    return now


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "gc.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    return config


def test_garbage_collect_killed_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    """`garbage-collect --delete-untagged` killed at random points of its sweep, five times: after each kill
    everything a tag reaches is there (and scrub is clean); a last run removes the rest."""
    root = tmp_path / "data"
    store, needed, tags = build(root)
    config, rng = _config(tmp_path, root), random.Random(7)
    cut = []
    for _ in range(5):
        before = _count(root)
        proc = subprocess.Popen([str(K3SREG_BIN), "garbage-collect", "-m", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        at = _kill_once_sweeping(functools.partial(_running, proc), functools.partial(proc.send_signal,
                                 signal.SIGKILL), root, before, rng)
        proc.wait(30)
        cut.append((before, at))
        _intact(store, needed, config)
    assert any(len(needed) < at < before for before, at in cut), cut  # some kills landed mid-sweep
    done = subprocess.run([str(K3SREG_BIN), "garbage-collect", "-m", str(config)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert set(blob_digests(store.driver)) == needed
    _intact(store, needed, config)
    with K3sregServer(tmp_path / "serve", root=root) as server:
        for tag in tags:
            Skopeo().copy(f"docker://{server.host}/{tag}", f"dir:{tmp_path / tag.replace(':', '-')}", all=True)


def test_serve_killed_while_collecting_loses_nothing(tmp_path: Path) -> None:
    """Two workers collecting in the background, killed (SIGKILL, every process) mid-sweep three times and
    restarted: nothing a tag reaches goes, and a run after the last restart finishes the job."""
    root = tmp_path / "data"
    store, needed, tags = build(root)
    config = {"storage": {"gc": {"interval": "1s", "delay": "0s", "deleteuntagged": True}}}
    rng = random.Random(11)
    server = K3sregServer(tmp_path / "srv", root=root, config=config, workers=2)
    try:
        for n in range(3):
            before = _count(root)
            if n:
                server.restart()
            else:
                server.start()
            _kill_once_sweeping(lambda: True, server.kill, root, before, rng)
            _intact(store, needed, _config(tmp_path, root))
        server.restart()
        deadline = time.monotonic() + 120
        while _count(root) > len(needed):
            assert time.monotonic() < deadline, "the collection never finished"
            time.sleep(0.2)
        for tag in tags:
            Skopeo().copy(f"docker://{server.host}/{tag}", f"dir:{tmp_path / tag.replace(':', '-')}", all=True)
    finally:
        server.stop()
    assert set(blob_digests(store.driver)) == needed
