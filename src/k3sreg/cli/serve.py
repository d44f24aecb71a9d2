"""`k3sreg serve`: run the registry."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help="Distribution-style config.yml."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes sharing the port."),
) -> None:
    """Run the registry (OCI Distribution v1.1, a drop-in for Docker Distribution)."""
    from k3sreg.server.run import run_server

    run_server(config, workers)
