"""The listener's certificate, renewed without a restart and without dropping a connection.

    SIGHUP ─────────────┐
    every CHECK_EVERY s: ├─► certificate or key file changed? ─► ctx.load_cert_chain(cert, key) on the SAME
    (mtime, size, inode) ┘                                      SSLContext: new handshakes get the new pair,
                                                                open connections keep theirs
A pair that cannot be loaded (the key written after the certificate, a typo) leaves the previous one in force;
the error is logged once per change of the files, and the load is tried again until it works. Each certificate
put in force is checked for expiry: `EXPIRY_WARNING_DAYS` ahead, a warning names the file and the fix.
`http.tls.clientcas` is read at start only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from k3sreg.auth.certinfo import EXPIRY_WARNING_DAYS, expires_within, read_certificates
from k3sreg.errors import UsageError

log = logging.getLogger("k3sreg.server")
CHECK_EVERY = 2.0
"""Seconds between looks at the certificate files (two stat calls)."""

Stamp = tuple[tuple[int, int, int], ...]


def expiry_warning(certificate: str, now: datetime.datetime | None = None) -> str | None:
    """The warning for a server certificate file that expires within EXPIRY_WARNING_DAYS, or None."""
    try:
        leaf = read_certificates(Path(certificate))[0]
    except (UsageError, IndexError):
        return None
    if not expires_within(leaf, EXPIRY_WARNING_DAYS, now):
        return None
    moment = now or datetime.datetime.now(datetime.UTC)
    left = (leaf.not_valid_after_utc - moment).days
    when = "has expired" if left < 0 else f"expires in {left} day{'s' if left != 1 else ''}"
    return (f"http.tls.certificate {certificate} {when} ({leaf.not_valid_after_utc:%Y-%m-%d}): issue a new one "
            "(k3sreg certs issue --force ...); k3sreg picks it up without a restart")


class CertificateReloader:
    """Keeps `ctx` serving the pair in `certificate` and `key` (see the module docstring)."""

    def __init__(self, ctx: ssl.SSLContext, certificate: str, key: str) -> None:
        self.ctx = ctx
        self.certificate = certificate
        self.key = key
        self.loaded = self._stamp()
        self._failed: Stamp | None = None

    def _stamp(self) -> Stamp:
        found = []
        for path in (self.certificate, self.key):
            try:
                st = os.stat(path)
                found.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                found.append((0, 0, 0))
        return tuple(found)

    def check(self) -> bool:
        """Reload when the files changed since the pair in force was loaded; True when a new pair went in."""
        stamp = self._stamp()
        return stamp != self.loaded and self.reload(stamp)

    def reload(self, stamp: Stamp | None = None, why: str = "the files changed") -> bool:
        """Load the files into the context now; True on success (a failure keeps the previous pair)."""
        stamp = stamp or self._stamp()
        try:
            self.ctx.load_cert_chain(self.certificate, self.key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if stamp != self._failed:
                log.error("http.tls: cannot load %s with %s (%s); the previous certificate stays in force",
                          self.certificate, self.key, getattr(exc, "strerror", None) or type(exc).__name__)
            self._failed = stamp
            return False
        self.loaded, self._failed = stamp, None
        log.info("http.tls: certificate %s loaded (%s); new connections use it", self.certificate, why)
        warning = expiry_warning(self.certificate)
        if warning:
            log.warning("%s", warning)
        return True

    async def watch(self, every: float = CHECK_EVERY) -> None:
        """Check the files every `every` seconds, forever."""
        while True:
            await asyncio.sleep(every)
            self.check()


def install(app: web.Application, reloader: CertificateReloader) -> None:
    """Run `reloader` for the application's lifetime: its file watch, and a reload on SIGHUP."""

    async def running(_app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(reloader.watch())
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: reloader.reload(why="SIGHUP"))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(running)
