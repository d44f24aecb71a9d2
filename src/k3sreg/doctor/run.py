"""A doctor run: on this machine (the node doctor runs on), or on every node of an inventory over SSH.

Per node:

    read (one script: registries.yaml, K3s config and unit, certs.d, config.toml, versions)
      ─► decide the setup (flavor, role, data dir, embedded registry, no default endpoint)
      ─► [agents] the embedded registry of the cluster's servers
      ─► file checks ─► read again: the names to look up, the CA files hosts.toml names
      ─► every endpoint's checks, the test resolves and the fallback, concurrently, from the node

Nodes run in parallel (`parallel` at a time) in two rounds, so that the agents know whether a server turned on
the embedded registry before they are judged. The registry's own checks (`--registry`) run beside them, from
here. A node that cannot be reached, or that fails under way, is a failed `ssh` finding, never an exception.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from k3sreg.doctor import gather, netchecks, nodefiles, pullchecks
from k3sreg.doctor.gather import Facts
from k3sreg.doctor.hosts import endpoints
from k3sreg.doctor.model import REGISTRY_ROW, Finding, NodeReport, Report, failed, passed
from k3sreg.doctor.regchecks import RegistryTarget, check_registry
from k3sreg.doctor.setup import Setup, decide, first_read, note_embedded_from_certs, second_read
from k3sreg.doctor.vantage import Local, OverSsh, Vantage
from k3sreg.k3s.render import render_hosts
from k3sreg.k3s.rollout.model import FLAVORS, Node
from k3sreg.k3s.rollout.ssh import Completed, NodeError, NodeShell, SshOptions

Progress = Callable[[str, str], None]


class Shell(Protocol):
    """Runs a script as root on the node (NodeShell over SSH, LocalShell here)."""

    async def script(self, text: str, timeout: float | None = None) -> Completed:
        """Run `text` with `sh -s`; the exit status and output."""
        ...


class LocalShell:
    """This machine, as the user doctor runs as."""

    async def script(self, text: str, timeout: float | None = None) -> Completed:
        proc = await asyncio.create_subprocess_exec("sh", "-s", stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode()), timeout or 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise NodeError("reading the local files timed out") from None
        return Completed(proc.returncode if proc.returncode is not None else 255, out, err)


@dataclass(frozen=True)
class Options:
    """What to check beyond the node's own files."""

    images: tuple[str, ...] = ()
    timeout: float = 3.0
    registry: RegistryTarget | None = None
    registries_path: str | None = None  # read this registries.yaml instead of K3s's (doctor on this machine)


@dataclass
class _Survey:
    node: Node | None
    report: NodeReport
    ssh: NodeShell | None = None  # the open connection between the two rounds (inventory runs)
    facts: Facts = field(default_factory=Facts)
    setup: Setup | None = None


async def _read(shell: Shell, reading: gather.Reading) -> Facts:
    done = await shell.script(gather.script(reading))
    if done.status != 0:
        raise NodeError(f"reading the node failed: {done.why()}")
    try:
        return gather.parse(done.stdout)
    except ValueError as e:
        raise NodeError(str(e)) from e


async def _survey(survey: _Survey, shell: Shell, options: Options) -> None:
    node = survey.node
    flavors = [node.flavor] if node is not None and node.flavor else list(FLAVORS)
    reading = first_read(flavors)
    if options.registries_path:
        reading.files.append(options.registries_path)
    survey.facts = await _read(shell, reading)
    setup = decide(survey.facts, node)
    if options.registries_path:
        setup.registries_path = options.registries_path
    more = second_read(setup)
    if not more.empty():
        survey.facts.merge(await _read(shell, more))
    note_embedded_from_certs(setup, survey.facts)
    survey.setup = setup
    report = survey.report
    report.flavor, report.role = setup.flavor, setup.role
    report.version = str(setup.runtime.k3s) if setup.runtime.k3s else None
    if not report.node:
        report.node = survey.facts.hostname or "local"


def _hint_ports(options: Options) -> dict[str, set[int]]:
    """Where the registry listens by --registry: a refused endpoint on that host is then told apart as a wrong
    port or the registry down."""
    if options.registry is None:
        return {}
    parts = urlsplit(options.registry.url)
    if not parts.hostname:
        return {}
    return {parts.hostname: {parts.port or (443 if parts.scheme == "https" else 80)}}


async def _examine(survey: _Survey, shell: Shell, vantage: Vantage, options: Options, local: bool) -> None:
    setup, facts, report = survey.setup, survey.facts, survey.report
    assert setup is not None
    report.add(setup_problems(setup))
    found, loaded = nodefiles.check_registries(setup, facts)
    report.add(found)
    report.add(nodefiles.check_hosts(setup, facts, loaded))
    report.add(nodefiles.check_credentials(setup, facts, loaded))
    report.add(nodefiles.check_version(setup, loaded))
    report.add(nodefiles.check_embedded(setup, loaded))
    registries = loaded.registries
    if facts.dirs.get(setup.certs_d) == "present" and setup.runtime.hosts_toml:
        files = {rel: f.text() or "" for rel, f in facts.under(setup.certs_d).items()}
    elif registries is not None:
        files = render_hosts(registries, nodefiles.render_options(setup))
    else:
        files = {}
    skip = {setup.mirror_address} if setup.embedded else set()
    targets = endpoints(files, skip, registries)
    names = sorted({ep.hostname for ep in targets if not netchecks.is_ip(ep.hostname)})
    ca_files = sorted({p for ep in targets for p in ep.ca})
    if names or ca_files:
        facts.merge(await _read(shell, gather.Reading(files=ca_files, names=names)))
    config = facts.file(setup.config_toml).text()
    if config is not None:
        credentials, source = nodefiles.containerd_credentials(config), "containerd's config.toml"
    else:
        credentials = {k: c.auth for k, c in (registries.configs if registries else {}).items() if c.auth}
        source = "registries.yaml (containerd's config.toml is missing)"
    with tempfile.TemporaryDirectory(prefix="k3sreg-doctor-") as scratch:
        async with vantage.session() as session:
            ctx = netchecks.NetContext(vantage, session, facts, credentials, source, options.timeout, Path(scratch),
                                       local, _hint_ports(options))
            broken: dict[str, str] = {}
            for found in await asyncio.gather(*(netchecks.check_endpoint(ep, ctx) for ep in targets)):
                report.add(found)
                broken.update((f.subject, f.check) for f in found if f.status == "fail")
            report.add(await asyncio.gather(*(pullchecks.check_resolve(image, files, registries, ctx, skip, broken)
                                              for image in options.images)))
            if registries is not None:
                report.add(await pullchecks.check_fallback(registries, files, ctx))


def setup_problems(setup: Setup) -> list[Finding]:
    """What made the setup unsure (a K3s config.yaml K3s cannot read): K3s's own problem, with its release."""
    return [failed("k3s.version", "config.yaml", p, "fix the YAML of K3s's config.yaml") for p in setup.problems]


async def run_local(options: Options) -> Report:
    """Doctor on this machine: its files, its network, and the registry."""
    started = time.monotonic()
    survey = _Survey(None, NodeReport(""))
    shell = LocalShell()
    registry = asyncio.ensure_future(_registry_report(options))
    try:
        await _survey(survey, shell, options)
        await _examine(survey, shell, Local(), options, local=True)
    except NodeError as e:
        survey.report.node = survey.report.node or "local"
        survey.report.add([failed("registries.file", "", e.reason, "run doctor as root on a K3s node")])
    reports = [survey.report, *await registry]
    return Report(reports, time.monotonic() - started)


async def _registry_report(options: Options) -> list[NodeReport]:
    if options.registry is None:
        return []
    report = NodeReport(REGISTRY_ROW, options.registry.url)
    report.add(await check_registry(options.registry, options.timeout))
    return [report]


async def run_inventory(nodes: Sequence[Node], ssh: SshOptions, options: Options, parallel: int = 8,
                        progress: Progress | None = None) -> Report:
    """Doctor on every node of the inventory over SSH, `parallel` nodes at a time, and on the registry."""
    started = time.monotonic()
    gate = asyncio.Semaphore(max(1, parallel))
    surveys = [_Survey(n, NodeReport(n.name, n.address, role=n.role, flavor=n.flavor)) for n in nodes]

    def say(survey: _Survey, step: str) -> None:
        if progress is not None and survey.node is not None:
            progress(survey.node.name, step)

    async def first(survey: _Survey) -> None:
        assert survey.node is not None
        async with gate:
            say(survey, "connecting")
            shell = NodeShell(survey.node, ssh)
            try:
                await shell.connect()
            except NodeError as e:
                survey.report.reached = False
                survey.report.add([failed("ssh", survey.node.target, e.reason, "check the node's address, port, "
                                          "user and key in the inventory (try `ssh` to it by hand)")])
                say(survey, "unreachable")
                return
            survey.report.add([passed("ssh", survey.node.target, f"connected as {survey.node.user}")])
            say(survey, "reading")
            try:
                await _survey(survey, shell, options)
            except NodeError as e:
                survey.report.add([failed("ssh", survey.node.target, e.reason, "check sudo and sh on the node")])
                await shell.close()
                return
            survey.ssh = shell

    async def second(survey: _Survey, cluster_embedded: str) -> None:
        shell = survey.ssh
        if shell is None or survey.setup is None:
            return
        setup = survey.setup
        if cluster_embedded and setup.role == "agent" and (not setup.embedded
                                                            or setup.embedded_from.startswith(setup.certs_d)):
            setup.embedded, setup.embedded_from = True, cluster_embedded
        async with gate:
            say(survey, "checking")
            vantage = OverSsh(shell.connection)
            try:
                await _examine(survey, shell, vantage, options, local=False)
            except NodeError as e:
                survey.report.add([failed("ssh", survey.node.target if survey.node else "", e.reason,
                                          "check the SSH connection to the node")])
            finally:
                await vantage.close()
                await shell.close()
            say(survey, "done")

    registry = asyncio.ensure_future(_registry_report(options))
    await asyncio.gather(*(first(s) for s in surveys))
    servers = [s for s in surveys if s.setup is not None and s.setup.role == "server" and s.setup.embedded]
    cluster_embedded = f"the config of server {servers[0].report.node}" if servers else ""
    await asyncio.gather(*(second(s, cluster_embedded) for s in surveys))
    return Report([s.report for s in surveys] + await registry, time.monotonic() - started)
