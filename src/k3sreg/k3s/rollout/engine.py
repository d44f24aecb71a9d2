"""plan / apply / status / rollback across the nodes of an inventory.

Per node, in this order (each step one SSH round trip):

    connect ─► detect flavor/role (only when the inventory leaves them out) ─► read registries.yaml
        ─► [--certs] compare the TLS files it names ─► compare bytes
        ─► [apply] write the TLS files that differ ─► write registries.yaml atomically + backup
        ─► [--hot] write hosts.toml files
        ─► restart the role's service and wait until active (not with --hot, not when registries.yaml is
           unchanged: containerd reads the certificate files at each pull, so new ones need no restart)

A node that fails is reported and the others carry on; with `rolling`, nodes go one at a time (servers
first) and the first failure stops the run: the rest are reported as skipped. Nothing here prints; progress
goes to an optional callback and the outcome comes back as one `NodeResult` per node, in inventory order.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from k3sreg.k3s.rollout import remote
from k3sreg.k3s.rollout.model import Flavor, Node, Role, certs_d_path, registries_path, service_for, unit_candidates
from k3sreg.k3s.rollout.ssh import NodeError, NodeShell, SshOptions
from k3sreg.k3s.rollout.textdiff import masked_diff

Outcome = Literal["unchanged", "changed", "would-change", "failed", "skipped",
                  "in-sync", "differs", "missing", "unreachable", "rolled-back", "would-roll-back"]
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class RolloutOptions:
    """How `apply` and `rollback` proceed."""

    parallel: int = 4
    rolling: bool = False
    dry_run: bool = False
    hot: bool = False
    restart: bool = True
    restart_timeout: int = 120


@dataclass(frozen=True)
class HotFiles:
    """The containerd hosts.toml files to install with `--hot`: `<dir>/hosts.toml` -> content.

    `generated_header` is the first line K3s puts in the files it writes: directories whose hosts.toml starts
    with it and that the render no longer has are removed, as K3s does on start; other files are left alone.
    """

    files: Mapping[str, bytes]
    generated_header: str


@dataclass(frozen=True)
class NodeFile:
    """A file to install next to registries.yaml (a CA, a node certificate or key): content and mode."""

    content: bytes
    mode: int


@dataclass
class NodeResult:
    """What happened on (or would happen to) one node."""

    node: str
    address: str
    outcome: Outcome
    role: Role | None = None
    flavor: Flavor | None = None
    service: str | None = None
    action: str = "none"  # none | create | update | secure | rollback
    restart: bool = False  # a restart follows (plan) or was done (apply)
    reason: str = ""
    diff: str = ""
    hot: list[str] = field(default_factory=list)  # hosts.toml directories written (+) or removed (-)
    files: list[str] = field(default_factory=list)  # TLS files written (or that would be)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON data."""
        return asdict(self)


@dataclass
class _Probe:
    flavor: Flavor
    role: Role
    service: str
    state: remote.FileState
    hot_write: dict[str, bytes] = field(default_factory=dict)
    hot_remove: list[str] = field(default_factory=list)
    files_write: dict[PurePosixPath, NodeFile] = field(default_factory=dict)


def failed(results: Sequence[NodeResult]) -> list[NodeResult]:
    """The results that count as failures for the exit code."""
    return [r for r in results if r.outcome in ("failed", "unreachable")]


HotRender = Mapping[Flavor, HotFiles]


NodeFiles = Mapping[PurePosixPath, NodeFile]


async def plan(nodes: Sequence[Node], desired: bytes, ssh: SshOptions, hot: HotRender | None = None,
               progress: Progress | None = None, parallel: int = 8, files: NodeFiles | None = None
               ) -> list[NodeResult]:
    """What `apply` would do on each node, with a masked diff; nothing on any node changes."""
    opts = RolloutOptions(parallel=parallel, dry_run=True, hot=hot is not None)
    return await apply(nodes, desired, ssh, opts, hot, progress, files)


async def apply(nodes: Sequence[Node], desired: bytes, ssh: SshOptions, opts: RolloutOptions,
                hot: HotRender | None = None, progress: Progress | None = None, files: NodeFiles | None = None
                ) -> list[NodeResult]:
    """Bring every node's registries.yaml to `desired` (validated by the caller), and the TLS `files` it names
    to their content, restarting only nodes whose registries.yaml changed."""

    async def one(node: Node) -> NodeResult:
        return await _apply_node(node, desired, ssh, opts, hot, _say(progress, node), files or {})

    return await _run_all(nodes, one, opts)


async def status(nodes: Sequence[Node], desired: bytes, ssh: SshOptions, progress: Progress | None = None,
                 parallel: int = 8) -> list[NodeResult]:
    """Drift report: in-sync, differs, missing or unreachable for each node; nothing changes."""

    async def one(node: Node) -> NodeResult:
        say = _say(progress, node)
        shell = NodeShell(node, ssh)
        try:
            await shell.connect()
        except NodeError as e:
            say("unreachable")
            return NodeResult(node.name, node.address, "unreachable", node.role, node.flavor, reason=e.reason)
        try:
            probe = await _probe(shell, node, None, say)
        except NodeError as e:
            say("failed")
            return NodeResult(node.name, node.address, "failed", node.role, node.flavor, reason=e.reason)
        finally:
            await shell.close()
        state = probe.state
        result = _result(node, probe, "in-sync")
        if state.content is None:
            result.outcome, result.reason = "missing", f"no {registries_path(probe.flavor)}"
        elif state.content != desired:
            result.outcome, result.reason = "differs", "content differs"
            result.diff = masked_diff(state.content, desired, node.name)
        elif not state.secure:
            result.reason = f"owner uid {state.uid}, mode {state.mode:o}: should be root 0600"
        say(result.outcome)
        return result

    return await _run_all(nodes, one, RolloutOptions(parallel=parallel))


async def rollback(nodes: Sequence[Node], ssh: SshOptions, opts: RolloutOptions,
                   progress: Progress | None = None) -> list[NodeResult]:
    """Put back the backup kept by the last write on each node, and restart its service."""

    async def one(node: Node) -> NodeResult:
        say = _say(progress, node)
        result = NodeResult(node.name, node.address, "failed", node.role, node.flavor, action="rollback")
        try:
            async with NodeShell(node, ssh) as shell:
                probe = await _probe(shell, node, None, say)
                result = _result(node, probe, "failed")
                result.action = "rollback"
                if probe.state.backup == "-":
                    raise NodeError("no backup kept on this node (nothing was applied by k3sreg)")
                if opts.dry_run:
                    result.outcome, result.restart = "would-roll-back", opts.restart
                    say(result.outcome)
                    return result
                say("restoring the backup")
                await shell.must(remote.rollback_script(registries_path(probe.flavor)), "rollback failed")
                result.outcome = "rolled-back"
                if opts.restart:
                    await _restart(shell, probe.service, opts, say)
                    result.restart = True
        except NodeError as e:
            result.outcome, result.reason = "failed", e.reason
        say(result.outcome)
        return result

    return await _run_all(nodes, one, opts)


async def _apply_node(node: Node, desired: bytes, ssh: SshOptions, opts: RolloutOptions, hot: HotRender | None,
                      say: Callable[[str], None], files: NodeFiles) -> NodeResult:
    result = NodeResult(node.name, node.address, "failed", node.role, node.flavor)
    try:
        async with NodeShell(node, ssh) as shell:
            probe = await _probe(shell, node, hot, say)
            if files:
                await _probe_files(shell, probe, files)
            result = _plan_node(node, probe, desired, opts)
            if result.action == "none" and not result.hot and not result.files:
                say("up to date")
                return result
            if opts.dry_run:
                result.outcome = "would-change"
                say(result.outcome)
                return result
            await _carry_out(shell, probe, result, desired, opts, say)
    except NodeError as e:
        result.outcome, result.reason = "failed", e.reason
        if result.restart and result.action in ("create", "update"):
            result.restart = False
    say(result.outcome)
    return result


def _plan_node(node: Node, probe: _Probe, desired: bytes, opts: RolloutOptions) -> NodeResult:
    """What applying `desired` to a node in the probed state takes: the action on registries.yaml, the masked
    diff, the TLS files and hosts.toml to write, and whether the service restarts. Reads and writes nothing."""
    result = _result(node, probe, "unchanged")
    state = probe.state
    if state.content != desired:
        result.action = "create" if state.content is None else "update"
        result.diff = masked_diff(state.content, desired, node.name)
        result.restart = opts.restart and not opts.hot
    elif not state.secure:
        result.action = "secure"
        result.reason = f"owner uid {state.uid}, mode {state.mode:o} -> root 0600"
    result.hot = [f"+{d.rsplit('/', 1)[0]}" for d in sorted(probe.hot_write)]
    result.hot += [f"-{d}" for d in probe.hot_remove]
    result.files = [str(p) for p in sorted(probe.files_write)]
    return result


async def _carry_out(shell: NodeShell, probe: _Probe, result: NodeResult, desired: bytes, opts: RolloutOptions,
                     say: Callable[[str], None]) -> None:
    """Make the planned changes on the node, in the order that keeps it consistent; sets the outcome."""
    path = registries_path(probe.flavor)
    if probe.files_write:
        # Before registries.yaml: a restart must never find a file that names a missing certificate.
        say("writing TLS files")
        await shell.must(remote.files_write_script({p: (f.content, f.mode) for p, f in probe.files_write.items()}),
                         "TLS file write failed")
    if result.action in ("create", "update"):
        say("writing registries.yaml")
        await shell.must(remote.write_script(path, desired), "write failed")
    elif result.action == "secure":
        await shell.must(remote.secure_script(path), "chmod failed")
    if probe.hot_write or probe.hot_remove:
        say("writing hosts.toml")
        await shell.must(remote.hosts_write_script(certs_d_path(probe.flavor), probe.hot_write, probe.hot_remove),
                         "hosts.toml write failed")
    result.outcome = "changed"
    if result.restart:
        # The file is in place whatever happens next; a failed restart is reported, not undone.
        await _restart(shell, probe.service, opts, say)
    elif result.action in ("create", "update") and opts.hot:
        result.reason = "hot: containerd reads hosts.toml on each pull; no restart"
    elif result.action == "none" and result.files:
        result.reason = "TLS files updated; containerd reads them at each pull: no restart"


async def _restart(shell: NodeShell, service: str, opts: RolloutOptions, say: Callable[[str], None]) -> None:
    say(f"restarting {service}")
    await shell.must(remote.restart_script(service, opts.restart_timeout), f"restart of {service} failed",
                     timeout=opts.restart_timeout + shell.options.command_timeout)


async def _probe(shell: NodeShell, node: Node, hot: HotRender | None, say: Callable[[str], None]) -> _Probe:
    say("reading")
    flavor, role = node.flavor, node.role
    if flavor is None or role is None:
        candidates = unit_candidates(flavor, role)
        done = await shell.must(remote.detect_script([s for _, _, s in candidates]), "detection failed")
        try:
            units = remote.parse_units(done.stdout)
        except ValueError as e:
            raise NodeError(str(e)) from e
        found = [c for c in candidates if c[2] in units]
        if not found:
            wanted = ", ".join(s for _, _, s in candidates)
            raise NodeError(f"no unit of {wanted} installed; set role/flavor in the inventory")
        if len(found) > 1:
            raise NodeError(f"several units installed ({', '.join(s for _, _, s in found)}); "
                            "set role/flavor in the inventory")
        flavor, role, _ = found[0]
    done = await shell.must(remote.read_script(registries_path(flavor)), "read failed")
    try:
        state = remote.parse_read(done.stdout)
    except ValueError as e:
        raise NodeError(str(e)) from e
    probe = _Probe(flavor, role, service_for(flavor, role), state)
    if hot is not None:
        listing = await shell.must(remote.hosts_listing_script(certs_d_path(flavor)), "certs.d listing failed")
        try:
            present = remote.parse_hosts_listing(listing.stdout)
        except ValueError as e:
            raise NodeError(str(e)) from e
        _plan_hot(probe, hot[flavor], present)
    return probe


async def _probe_files(shell: NodeShell, probe: _Probe, files: NodeFiles) -> None:
    """Note in `probe` the files whose content, owner or mode differ on the node."""
    done = await shell.must(remote.files_state_script(sorted(files)), "reading the TLS files failed")
    try:
        present = remote.parse_files_state(done.stdout)
    except ValueError as e:
        raise NodeError(str(e)) from e
    for path, wanted in files.items():
        state = present.get(str(path))
        if state is None or state.sha256 != hashlib.sha256(wanted.content).hexdigest() or state.uid != 0 \
                or state.mode != wanted.mode:
            probe.files_write[path] = wanted


def _plan_hot(probe: _Probe, hot: HotFiles, present: Sequence[remote.HostsFile]) -> None:
    have = {f.directory: f for f in present}
    wanted_dirs = {rel.rsplit("/", 1)[0] for rel in hot.files}
    for rel, content in hot.files.items():
        current = have.get(rel.rsplit("/", 1)[0])
        if current is None or current.sha256 != hashlib.sha256(content).hexdigest():
            probe.hot_write[rel] = content
    header = hot.generated_header.rstrip("\n")
    probe.hot_remove = sorted(d for d, f in have.items() if d not in wanted_dirs and f.first_line == header)


def _result(node: Node, probe: _Probe, outcome: Outcome) -> NodeResult:
    return NodeResult(node.name, node.address, outcome, probe.role, probe.flavor, probe.service)


def _say(progress: Progress | None, node: Node) -> Callable[[str], None]:
    def say(step: str) -> None:
        if progress is not None:
            progress(node.name, step)

    return say


async def _run_all(nodes: Sequence[Node], one: Callable[[Node], Any], opts: RolloutOptions) -> list[NodeResult]:
    if opts.rolling:
        # One at a time, servers before agents (as a K3s upgrade goes); the first failure stops the run.
        order = sorted(nodes, key=lambda n: 0 if n.role == "server" else 1 if n.role == "agent" else 2)
        done: dict[str, NodeResult] = {}
        for node in order:
            if any(r.outcome == "failed" for r in done.values()):
                done[node.name] = NodeResult(node.name, node.address, "skipped", node.role, node.flavor,
                                             reason="not attempted: an earlier node failed (--rolling)")
            else:
                done[node.name] = await one(node)
        return [done[n.name] for n in nodes]
    gate = asyncio.Semaphore(max(1, opts.parallel))

    async def limited(node: Node) -> NodeResult:
        async with gate:
            result: NodeResult = await one(node)
            return result

    return list(await asyncio.gather(*(limited(n) for n in nodes)))
