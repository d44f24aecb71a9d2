"""What every scenario receives: the run's settings, a private work directory and a progress logger."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import ALL_SERVERS


@dataclass(frozen=True)
class BenchConfig:
    """Sizes, repetitions and load settings of one run (`--quick` shrinks them for a sanity run)."""

    blob_mib: int = 256
    small_blob_mib: int = 16
    chunk_mib: int = 8
    runs: int = 3
    load_seconds: float = 10.0
    connections: int = 32
    wrk_threads: int = 2
    tags: int = 1000
    pull_clients: tuple[int, ...] = (1, 8)
    pushes_per_round: int = 2
    pulls_per_round: int = 3
    workers: int = 2
    servers: tuple[str, ...] = ALL_SERVERS
    # Extra environment for k3sreg (`--k3sreg-env`), to try allocator or loop settings without a code change.
    k3sreg_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def quick(cls, **overrides: object) -> BenchConfig:
        """A run of about a minute: small blobs, one repetition, 2-second load runs."""
        base: dict[str, object] = {
            "blob_mib": 32,
            "small_blob_mib": 4,
            "runs": 1,
            "load_seconds": 2.0,
            "tags": 200,
            "pushes_per_round": 1,
            "pulls_per_round": 2,
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


@dataclass
class Context:
    """A scenario's world: settings, a work directory removed after the run, and where progress goes."""

    config: BenchConfig
    workdir: Path
    verbose: bool = True
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        """Progress on stderr, so stdout stays clean for the table or the JSON."""
        if self.verbose:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def wants(self, server: str) -> bool:
        """Whether this run includes the server (`--servers`)."""
        return server in self.config.servers

    def subdir(self, *parts: str) -> Path:
        """A fresh directory under the work directory."""
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def parse_servers(value: str, known: Sequence[str] = ALL_SERVERS) -> tuple[str, ...]:
    """A comma-separated server list, checked against the known names."""
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown server(s) {unknown or value!r}; choose from {', '.join(known)}")
    return names
