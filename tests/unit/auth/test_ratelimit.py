"""The failed-login limiter: a token bucket per client address, bounded memory."""

from __future__ import annotations

import pytest

from k3sreg.auth.ratelimit import LoginLimiter


def test_burst_then_refill() -> None:
    """After `burst` failures the address waits 1/rate seconds per further try; others are unaffected."""
    now = [0.0]
    limiter = LoginLimiter(burst=3, rate=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(2.0)
    assert limiter.retry_after_header("10.0.0.1") == "2"
    assert limiter.retry_after("10.0.0.2") == 0
    now[0] += 1.0
    assert limiter.retry_after("10.0.0.1") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(2.0)


def test_memory_is_bounded() -> None:
    """Only `max_clients` addresses are kept, the least recently failed forgotten first."""
    limiter = LoginLimiter(burst=1, rate=1, max_clients=2, clock=lambda: 0.0)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    assert limiter.tracked() == 2
    assert limiter.retry_after("a") == 0 and limiter.retry_after("c") > 0


def test_bad_settings_are_refused() -> None:
    """A limiter that could never let anyone in is a programming error."""
    with pytest.raises(ValueError):
        LoginLimiter(burst=0)
