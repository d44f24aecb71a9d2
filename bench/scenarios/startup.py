"""Issue 8: how long a k3sreg command takes to start, as whole processes (interpreter start-up included).

Rows: `k3sreg --help` and `k3sreg mirrors validate <file>` (a one-mirror registries.yaml), each run
`RUNS_PER_ROUND` times per round from a fresh process with its output thrown away; the cell is the median wall
time. No other server has such a command, so only the k3sreg column is filled; the notes give two yardsticks
measured the same way: the bare interpreter (`python -c pass`) and `skopeo --help` (a Go binary).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.context import Context
from bench.procs import StartError
from bench.report import Figure, Results, Target
from bench.servers import K3SREG, k3sreg_binary

RUNS_PER_ROUND = 7
TARGET_MS = 300.0
REGISTRIES = 'mirrors:\n  docker.io:\n    endpoint:\n      - "http://10.0.0.5:30500"\n'


def wall_ms(argv: Sequence[str]) -> float:
    """Milliseconds from starting `argv` to its exit (stdout and stderr discarded); its exit status must be 0."""
    began = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          timeout=60, check=False)
    elapsed = (time.perf_counter() - began) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}")
    return elapsed


async def run(ctx: Context, results: Results) -> None:
    """Time the commands RUNS_PER_ROUND times in each round; add the two yardsticks to the notes."""
    target = Target("abs_max", TARGET_MS, text=f"≤{TARGET_MS:g} ms")
    commands = {
        "startup.help": ("k3sreg --help, whole process", ["--help"]),
        "startup.validate": ("k3sreg mirrors validate FILE, whole process", ["mirrors", "validate"]),
    }
    for key, (label, _) in commands.items():
        results.declare(Figure(key, label, "ms", False, target))
    if not ctx.wants(K3SREG):
        return
    try:
        binary = str(k3sreg_binary())
    except StartError as exc:
        for key in commands:
            results[key].fail(K3SREG, str(exc))
        return
    registries = ctx.subdir("startup") / "registries.yaml"
    registries.write_text(REGISTRIES)
    argvs = {key: [binary, *args, *([str(registries)] if key == "startup.validate" else [])]
             for key, (_, args) in commands.items()}
    yardsticks: dict[str, list[float]] = {"python -c pass": []}
    skopeo = shutil.which("skopeo")
    if skopeo:
        yardsticks["skopeo --help"] = []
    for round_no in range(ctx.config.runs):
        ctx.log(f"start-up round {round_no + 1}/{ctx.config.runs}")
        for _ in range(RUNS_PER_ROUND):
            for key, argv in argvs.items():
                try:
                    results[key].add(K3SREG, await asyncio.to_thread(wall_ms, argv))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    results[key].fail(K3SREG, str(exc))
            yardsticks["python -c pass"].append(await asyncio.to_thread(wall_ms, [sys.executable, "-c", "pass"]))
            if skopeo:
                yardsticks["skopeo --help"].append(await asyncio.to_thread(wall_ms, [skopeo, "--help"]))
    shown = ", ".join(f"{name} {statistics.median(v):.0f} ms" for name, v in yardsticks.items() if v)
    results.notes.append(f"start-up yardsticks, same method (median): {shown}")
