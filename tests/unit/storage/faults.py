"""A storage driver that fails at a chosen step, to check that every write is all-or-nothing at each step."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from k3sreg import errors
from k3sreg.storage.driver import Driver


class Injected(OSError):
    """The failure the faulty driver injects (EIO: a failing disk)."""

    def __init__(self) -> None:
        super().__init__(errno.EIO, "injected fault")


class _FaultyWriter:
    def __init__(self, faulty: Faulty, inner: Any):
        self._faulty, self._inner = faulty, inner

    @property
    def size(self) -> int:
        return int(self._inner.size)

    def write(self, data: bytes) -> None:
        if self._faulty.step():
            self._inner.write(data[:len(data) // 2])  # the disk failed half-way through
            raise Injected()
        self._inner.write(data)

    def close(self, sync: bool = False) -> None:
        if self._faulty.step():
            self._inner.cancel()  # what reached the disk is unknown: nothing, here
            raise Injected()
        self._inner.close(sync)

    def cancel(self) -> None:
        self._inner.cancel()


class Faulty:
    """Wraps a driver; the `fail_at`-th step that changes anything (a put, a move, a delete, opening a writer,
    a write, a close) fails with EIO, and every later one goes through."""

    def __init__(self, inner: Any, fail_at: int):
        self.inner, self.fail_at, self.steps = inner, fail_at, 0
        self.name, self.cheap_reads = inner.name, inner.cheap_reads

    def step(self) -> bool:
        self.steps += 1
        return self.steps == self.fail_at

    @property
    def failed(self) -> bool:
        return self.steps >= self.fail_at

    def _check(self) -> None:
        if self.step():
            raise Injected()

    def put_content(self, path: str, data: bytes, sync: bool = True) -> None:
        self._check()
        self.inner.put_content(path, data, sync)

    def move(self, src: str, dst: str) -> None:
        self._check()
        self.inner.move(src, dst)

    def delete(self, path: str) -> bool:
        self._check()
        return bool(self.inner.delete(path))

    def writer(self, path: str, append: bool) -> _FaultyWriter:
        self._check()
        return _FaultyWriter(self, self.inner.writer(path, append))

    def __getattr__(self, name: str) -> Any:  # reads and locks go straight through
        return getattr(self.inner, name)


def every_fault(make: Callable[[], Driver], prepare: Callable[[Driver], None], act: Callable[[Any], None],
                 check: Callable[[Driver, bool], None]) -> int:
    """For n = 1, 2, ...: on a fresh driver, `prepare` it, then `act` through a driver whose n-th change fails;
    `check(driver, done)` the state seen without faults (`done`: `act` went through), then that `act` works on
    it once the fault is gone. Returns how many faults were injected (until `act` needed fewer steps)."""
    for n in range(1, 500):
        driver = make()
        prepare(driver)
        faulty = Faulty(driver, n)
        try:
            act(faulty)
        except (Injected, errors.RegistryError) as e:
            assert faulty.failed, f"failed without a fault: {e!r}"
        if not faulty.failed:
            check(driver, True)
            return n - 1
        check(driver, False)
        act(Faulty(driver, 0))
        check(driver, True)
    raise AssertionError("the operation never ran through")
