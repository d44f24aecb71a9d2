"""Failed logins limited per client address: a token bucket each (beyond Distribution).

Each address may fail `burst` times at once; the bucket then refills at `rate` tokens a second. While it is
empty, the address is turned away (429 with `Retry-After`) before any password is checked, so guessing costs
the guesser time and the registry no bcrypt. Successes cost nothing. Memory is bounded: at most `max_clients`
addresses are tracked, the least recently failed forgotten first (a forgotten address starts afresh, which only
ever favours a client).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable


class LoginLimiter:
    """Token buckets of failed logins by client address."""

    def __init__(self, burst: int = 10, rate: float = 1 / 6, max_clients: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be at least 1 and rate above 0")
        self.burst = burst
        self.rate = rate
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def _level(self, address: str, now: float) -> float:
        tokens, since = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - since) * self.rate)

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        with self._lock:
            now = self._clock()
            level = self._level(address, now)
            return 0.0 if level >= 1 else (1 - level) / self.rate

    def limited(self, address: str) -> bool:
        """True when `address` must wait; a dictionary lookup for an address that never failed."""
        return address in self._buckets and self.retry_after(address) > 0

    def retry_after_header(self, address: str) -> str:
        """`Retry-After` for `address`: whole seconds, rounded up (at least 1)."""
        return str(max(1, math.ceil(self.retry_after(address))))

    def failed(self, address: str) -> None:
        """Count one failed login from `address`."""
        with self._lock:
            now = self._clock()
            level = self._level(address, now)
            self._buckets[address] = (max(0.0, level - 1), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)

    def tracked(self) -> int:
        """How many addresses have failed recently (for metrics and tests)."""
        return len(self._buckets)
