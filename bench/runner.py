"""One benchmark run: settings from the command line, a temporary work directory, the scenarios, the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.context import BenchConfig, Context, parse_servers
from bench.report import Results, render_markdown, render_table
from bench.scenarios import SCENARIOS


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The run's settings: defaults (or `--quick`'s), then each explicit option on top."""
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    overrides: dict[str, object] = {}
    for option, name in [
        ("runs", "runs"),
        ("blob_mib", "blob_mib"),
        ("seconds", "load_seconds"),
        ("tags", "tags"),
        ("workers", "workers"),
    ]:
        value = getattr(args, option)
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{option.replace('_', '-')} must be positive")
            overrides[name] = value
    if args.servers:
        overrides["servers"] = parse_servers(args.servers)
    if args.k3sreg_env:
        pairs = [item.partition("=") for item in args.k3sreg_env]
        if any(not sep or not name for name, sep, _ in pairs):
            raise ValueError("--k3sreg-env takes NAME=VALUE")
        overrides["k3sreg_env"] = tuple((name, value) for name, _, value in pairs)
    if "blob_mib" in overrides:
        overrides["small_blob_mib"] = min(cfg.small_blob_mib, int(str(overrides["blob_mib"])))
    return replace(cfg, **overrides)  # type: ignore[arg-type]


def _scenarios(value: str | None) -> list[str]:
    if not value:
        return list(SCENARIOS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


def _default_base(cfg: BenchConfig) -> str | None:
    """/dev/shm when it has room, else the system's temporary directory.

    On tmpfs, pushes measure the servers (receiving, hashing, writing) rather than this machine's disk: on the
    disk both registries wait on the same write-back and push at the same speed, whatever their code does.
    """
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(shm).free
        if free >= 4 * (1 << 30) + 8 * cfg.blob_mib * (1 << 20):
            return str(shm)
    return None


def _fs_type(path: Path) -> str:
    """The filesystem type of the mount holding path, from /proc/mounts."""
    best, kind = "", "unknown filesystem"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
                best, kind = mount, fields[2]
    return kind


def _missing_tools() -> list[str]:
    tools = ["wrk", "ab", "nginx", "docker-registry"]
    return [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]


async def main(args: argparse.Namespace) -> int:
    """Run the selected scenarios and print the report; 0 when every cell was measured, 1 otherwise."""
    try:
        cfg = config_from_args(args)
        names = _scenarios(args.scenarios)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.from_json:
        return _replay(args, Path(args.from_json))
    missing = _missing_tools()
    if missing:
        print(f"error: missing programs {', '.join(missing)} (run `make peers`)", file=sys.stderr)
        return 2
    # SIGTERM (a timeout, a CI runner) cancels the run like Ctrl-C does, so the servers and files still go.
    task = asyncio.current_task()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    base = args.tmpdir or _default_base(cfg)
    workdir = Path(tempfile.mkdtemp(prefix="k3sreg-bench-", dir=base))
    ctx = Context(cfg, workdir, verbose=not args.quiet)
    results = Results()
    results.notes.append(f"data directories under {workdir.parent} ({_fs_type(workdir)})")
    began = time.monotonic()
    try:
        for name in names:
            ctx.log(f"scenario {name}")
            await SCENARIOS[name](ctx, results)
    finally:
        if args.keep:
            ctx.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - began
    ctx.log(f"done in {elapsed:.0f}s")
    _print(args, cfg, results, elapsed)
    return 1 if any(fig.errors for fig in results.figures.values()) else 0


def _print(args: argparse.Namespace, cfg: BenchConfig, results: Results, elapsed: float) -> None:
    env = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "seconds": round(elapsed, 1),
    }
    if args.json:
        print(json.dumps({"config": asdict(cfg), "environment": env, **results.to_json()}, indent=2))
        return
    title = (
        f"k3sreg bench: medians of {cfg.runs} round(s), {cfg.blob_mib} MiB blob, "
        f"{cfg.load_seconds:g}s loads at c{cfg.connections}, {env['cpus']} CPUs"
    )
    if args.markdown:
        notes = "".join(f"\n- {note}" for note in results.notes)
        print(f"{title}\n\n{render_markdown(results)}\n{notes}")
        return
    # A log or a pipe gets the whole table on one line per row; a terminal gets its own width.
    render_table(results, Console(width=None if sys.stdout.isatty() else 200), title)


def _replay(args: argparse.Namespace, path: Path) -> int:
    """Render a saved `--json` report as a table (or markdown) without measuring anything."""
    try:
        data = json.loads(path.read_text())
        results = Results.from_json(data)
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items()}
        cfg = BenchConfig(**fields)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    _print(args, cfg, results, float(data.get("environment", {}).get("seconds", 0.0)))
    return 1 if any(fig.errors for fig in results.figures.values()) else 0
