"""Issue 8: how long a k3sreg command takes to start, as whole processes (interpreter start-up included).

Rows: `k3sreg --help` and `k3sreg mirrors validate <file>` (a one-mirror registries.yaml), each run
`RUNS_PER_ROUND` times per round from a fresh process with its output thrown away: the median wall time, and
the median CPU time (user + system, steadier on a busy machine). As a user's second run does, the commands
run with Python's bytecode cache (`PYTHONDONTWRITEBYTECODE` is dropped and one warm-up run writes it):
without it every start compiles ~60 modules first, which doubles the time. No other server has such a
command, so only the k3sreg column is filled; the notes give two yardsticks measured the same way: the bare
interpreter (`python -c pass`) and `skopeo --help` (a Go binary).
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from bench.context import Context
from bench.procs import StartError, with_bytecode_cache
from bench.report import Figure, Results, Target
from bench.servers import K3SREG, k3sreg_binary

RUNS_PER_ROUND = 7
TARGET_MS = 300.0
REGISTRIES = 'mirrors:\n  docker.io:\n    endpoint:\n      - "http://10.0.0.5:30500"\n'


def timed(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of running `argv` to its exit, output discarded; its exit status must be 0.

    CPU is the children's rusage difference: the scenario runs one command at a time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          env=dict(env), timeout=60, check=False)
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}")
    return wall, cpu


async def run(ctx: Context, results: Results) -> None:
    """Time the commands RUNS_PER_ROUND times in each round; add the two yardsticks to the notes."""
    target = Target("abs_max", TARGET_MS, text=f"≤{TARGET_MS:g} ms")
    commands = {"help": ("k3sreg --help", ["--help"]),
                "validate": ("k3sreg mirrors validate FILE", ["mirrors", "validate"])}
    for key, (label, _) in commands.items():
        results.declare(Figure(f"startup.{key}", f"{label}, whole process", "ms", False, target))
        results.declare(Figure(f"startup.{key}.cpu", f"{label}, CPU (user+sys)", "ms", False))
    if not ctx.wants(K3SREG):
        return
    try:
        binary = str(k3sreg_binary())
    except StartError as exc:
        for fig in results.figures.values():
            if fig.key.startswith("startup."):
                fig.fail(K3SREG, str(exc))
        return
    registries = ctx.subdir("startup") / "registries.yaml"
    registries.write_text(REGISTRIES)
    argvs = {key: [binary, *args, *([str(registries)] if key == "validate" else [])]
             for key, (_, args) in commands.items()}
    env = with_bytecode_cache()
    yardsticks: dict[str, list[float]] = {"python -c pass": []}
    others = {"python -c pass": [sys.executable, "-c", "pass"]}
    skopeo = shutil.which("skopeo")
    if skopeo:
        yardsticks["skopeo --help"] = []
        others["skopeo --help"] = [skopeo, "--help"]
    try:
        for argv in [*argvs.values(), *others.values()]:
            await asyncio.to_thread(timed, argv, env)  # warm-up: bytecode cache, page cache
        for round_no in range(ctx.config.runs):
            ctx.log(f"start-up round {round_no + 1}/{ctx.config.runs}")
            for _ in range(RUNS_PER_ROUND):
                for key, argv in argvs.items():
                    wall, cpu = await asyncio.to_thread(timed, argv, env)
                    results[f"startup.{key}"].add(K3SREG, wall)
                    results[f"startup.{key}.cpu"].add(K3SREG, cpu)
                for name, argv in others.items():
                    yardsticks[name].append((await asyncio.to_thread(timed, argv, env))[0])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        for fig in results.figures.values():
            if fig.key.startswith("startup."):
                fig.fail(K3SREG, str(exc))
        return
    shown = ", ".join(f"{name} {statistics.median(v):.0f} ms" for name, v in yardsticks.items() if v)
    results.notes.append(f"start-up yardsticks, same method (median wall): {shown}")
