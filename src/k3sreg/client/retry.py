"""Retrying one request to a registry: on which failures, how often, how patiently (tenacity does the looping).

A request is tried once and then up to `retries` more times while it fails in a way that may pass: the
connection is refused, reset or times out, or the registry answers 500, 502, 503 or 504. The waits grow 0.1 s,
0.2 s, 0.4 s ... up to 2 s. Everything else ends the request at once: a TLS certificate that does not verify
(it will not verify on the next attempt either), and every answer the registry meant (404, 401, 429, ...).
When the attempts run out, or a failure is not worth another one, `GaveUp` says which failure ended it and after
how many attempts, so the one message about the request can say both. Retries are logged at debug only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES = frozenset({500, 502, 503, 504})
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
log = logging.getLogger("k3sreg.upstream")  # the logger name operators' log lines have always carried


class RetryableStatus(Exception):
    """An answer with one of RETRY_STATUSES: `body` is the start of it, read for the final message."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class GaveUp(Exception):
    """A request that failed for good: `cause` is the last attempt's failure, `attempts` how many were made."""

    def __init__(self, cause: BaseException, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.attempts = attempts


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, aiohttp.ClientSSLError):
        return False
    return isinstance(exc, (*NETWORK_ERRORS, RetryableStatus))


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` more attempts after the first, waiting `first_wait` doubled each time up to `max_wait`;
    `sleep` waits (tests pass one that records instead)."""

    retries: int = 2
    first_wait: float = 0.1
    max_wait: float = 2.0
    sleep: Sleep = asyncio.sleep

    async def run(self, attempt: Callable[[], Awaitable[T]], what: str,
                  describe: Callable[[BaseException], str] = str) -> T:
        """The result of the first `attempt()` that succeeds. A network error or RetryableStatus that is not
        retried (any more) raises GaveUp; any other exception passes through at once. `what` and `describe`
        name the request and a failure in the debug log."""
        tries = 0

        async def counted() -> T:
            nonlocal tries
            tries += 1
            return await attempt()

        def note(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            why = describe(failure) if failure is not None else "?"
            log.debug("%s failed (%s), retry %d of %d", what, why, state.attempt_number, self.retries)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            retry=retry_if_exception(_worth_retrying),
            sleep=self.sleep,
            before_sleep=note,
            reraise=True,
        )
        try:
            return await retrying(counted)
        except (*NETWORK_ERRORS, RetryableStatus) as exc:
            raise GaveUp(exc, tries) from exc

    def once(self) -> RetryPolicy:
        """The same policy without retries, for requests that must not be sent twice (a streamed upload)."""
        return RetryPolicy(0, self.first_wait, self.max_wait, self.sleep)
