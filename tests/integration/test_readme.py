"""README.md's quick start works as written: its commands, run in order, push an image and list its tag."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start_blocks() -> list[str]:
    """The first two ```sh blocks of the README's "Quick start": the prerequisites and the commands."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)[:2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prerequisites_name_what_the_commands_use() -> None:
    """The install line names every program the quick start runs, and each is installed here."""
    install, commands = quick_start_blocks()
    assert install.startswith("sudo apt-get install")
    packages = install.split()[4:]
    used = {line.split()[0] for line in commands.splitlines() if line.strip() and not line.startswith("#")}
    assert {"make", "umoci", "skopeo"} <= used and {"make", "skopeo", "umoci"} <= set(packages)
    for program in ("make", "skopeo", "umoci", "python3"):
        assert shutil.which(program), f"{program} is not installed"


def test_quick_start_commands_push_and_list(tmp_path: Path) -> None:
    """Run the commands literally (in a scratch directory, on a free port): the pushed tag is listed."""
    _, commands = quick_start_blocks()
    port = free_port()
    lines = []
    for line in commands.splitlines():
        # From the repository root: the repository's make and .venv, while files land in the scratch directory.
        line = line.replace("make install", f"make -C {ROOT} install")
        line = line.replace(". .venv/bin/activate", f". {ROOT}/.venv/bin/activate")
        lines.append(line.replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
        if line.startswith("k3sreg serve &"):
            # The pause a person takes before the next command: wait until the port answers.
            lines.append(f"for i in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; "
                         "sleep 0.1; done")
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "REGISTRY_HTTP_ADDR")}
    env["REGISTRY_HTTP_ADDR"] = f"127.0.0.1:{port}"  # `k3sreg serve` itself, without a config, on the free port
    # Output to files: the registry left running in the background holds them open after bash is done.
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with out_file.open("w") as out_sink, err_file.open("w") as err_sink:
        proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=out_sink, stderr=err_sink,
                                start_new_session=True)
    try:
        proc.wait(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the registry started in the background, and bash if still there
    out, err = out_file.read_text(), err_file.read_text()
    assert proc.returncode == 0, err[-3000:]
    listed = json.loads(out[out.rindex("{\n"):])
    assert listed == {"Repository": f"127.0.0.1:{port}/library/demo", "Tags": ["1"]}
    assert (tmp_path / "data/docker/registry/v2/repositories/library/demo").is_dir()
