"""Ending a test peer that runs in a process group of its own (``start_new_session=True``).

API: ``end_group(proc, sig)`` signals the whole group while its leader is not yet reaped (so the group id is
still ours), waits, escalates to SIGKILL after 10 s, and reaps the leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def end_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Send `sig` to proc's group, wait up to 10 s, then SIGKILL the group; the leader is reaped on return."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
