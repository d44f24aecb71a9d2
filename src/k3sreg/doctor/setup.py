"""How K3s (or RKE2) is set up on a node, from what it leaves on disk: flavor and role (the unit installed),
data dir and registries.yaml path, `--embedded-registry` and `--disable-default-registry-endpoint`.

K3s reads its options from `/etc/rancher/<flavor>/config.yaml`, then `config.yaml.d/*.yaml` in name order
(later files win), then the command line (the unit's ExecStart), which wins over both. The embedded registry is
a server option: an agent learns it from its server, so `run` carries a server's answer over to the agents,
and a generated `certs.d/127.0.0.1:<supervisor port>` shows it was on at the last start.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

from k3sreg.doctor.gather import Facts, Reading
from k3sreg.doctor.versions import Runtime, Version, parse_version
from k3sreg.k3s.render import SUPERVISOR_PORTS, header_line
from k3sreg.k3s.rollout.model import FLAVORS, Flavor, Node, Role, service_for, unit_candidates
from k3sreg.k3s.rollout.remote import UNIT_DIRS


def default_data_dir(flavor: str) -> str:
    """K3s's `--data-dir` default (as root)."""
    return f"/var/lib/rancher/{flavor}"


def containerd_dir(data_dir: str) -> str:
    """Where K3s writes containerd's configuration: config.toml and certs.d/."""
    return f"{data_dir}/agent/etc/containerd"


def _config_dir(flavor: str) -> str:
    return f"/etc/rancher/{flavor}"


def _commands(flavor: str) -> list[tuple[str, list[str]]]:
    if flavor == "rke2":
        return [("rke2 --version", ["rke2", "--version"]),
                ("containerd --version", ["/var/lib/rancher/rke2/bin/containerd", "--version"])]
    return [("k3s --version", ["k3s", "--version"]), ("k3s ctr --version", ["k3s", "ctr", "--version"])]


def first_read(flavors: Sequence[str]) -> Reading:
    """What the first script reads for the candidate flavors."""
    reading = Reading()
    for flavor in flavors:
        reading.files += [f"{_config_dir(flavor)}/registries.yaml", f"{_config_dir(flavor)}/config.yaml",
                          f"{containerd_dir(default_data_dir(flavor))}/config.toml"]
        reading.globs.append((f"{_config_dir(flavor)}/config.yaml.d", ".yaml"))
        reading.dirs.append(f"{containerd_dir(default_data_dir(flavor))}/certs.d")
        reading.commands += _commands(flavor)
        for _, _, service in unit_candidates(flavor, None):  # type: ignore[arg-type]
            reading.files += [f"{d}/{service}.service" for d in UNIT_DIRS]
    return reading


@dataclass
class Setup:
    """The node's K3s as doctor understands it; `notes` say where each answer came from or why it is unsure."""

    flavor: Flavor
    role: Role | None
    service: str | None
    registries_path: str
    data_dir: str
    embedded: bool = False
    embedded_from: str = ""
    no_default: bool = False
    no_default_from: str = ""
    runtime: Runtime = field(default_factory=lambda: Runtime("k3s", None, None))
    problems: list[str] = field(default_factory=list)

    @property
    def certs_d(self) -> str:
        """containerd's hosts directory on this node."""
        return f"{containerd_dir(self.data_dir)}/certs.d"

    @property
    def config_toml(self) -> str:
        """containerd's config.toml that K3s writes."""
        return f"{containerd_dir(self.data_dir)}/config.toml"

    @property
    def mirror_address(self) -> str:
        """The embedded registry's address on every node."""
        return f"127.0.0.1:{SUPERVISOR_PORTS.get(self.flavor, 6443)}"

    def restart_hint(self) -> str:
        """`systemctl restart <service>` (both services when the role is unknown)."""
        if self.service:
            return f"systemctl restart {self.service}"
        return f"systemctl restart {service_for(self.flavor, 'server')} (or {service_for(self.flavor, 'agent')})"


def _units(facts: Facts, flavor: str | None, role: str | None) -> list[tuple[Flavor, Role, str, str]]:
    found = []
    for f, r, service in unit_candidates(flavor, role):  # type: ignore[arg-type]
        for d in UNIT_DIRS:
            fact = facts.file(f"{d}/{service}.service")
            if fact.state in ("present", "unreadable"):
                found.append((f, r, service, fact.text() or ""))
                break
    return found


def exec_args(unit_text: str) -> list[str]:
    """The arguments of the unit's (last) ExecStart, continuation lines joined; [] when it has none."""
    joined = unit_text.replace("\\\n", " ")
    args: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("ExecStart="):
            try:
                args = shlex.split(line[len("ExecStart="):].lstrip("-@+!:"))
            except ValueError:
                args = line[len("ExecStart="):].split()
    return args[1:]


def _flags(args: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    it = iter(range(len(args)))
    for i in it:
        arg = args[i]
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        name = {"d": "data-dir"}.get(name, name)
        if name in ("embedded-registry", "disable-default-registry-endpoint"):
            out[name] = value.lower() not in ("false", "0") if eq else True
        elif name in ("data-dir", "private-registry"):
            if eq:
                out[name] = value
            elif i + 1 < len(args):
                out[name] = args[i + 1]
                next(it, None)
    return out


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"))


def decide(facts: Facts, node: Node | None) -> Setup:
    """The node's setup from the first read; the inventory's flavor and role win over what the units say."""
    flavor: str | None = node.flavor if node else None
    role: str | None = node.role if node else None
    units = _units(facts, flavor, role)
    problems = []
    if flavor is None:
        flavors = {u[0] for u in units}
        if len(flavors) == 1:
            flavor = flavors.pop()
        else:
            present = [f for f in FLAVORS if facts.file(f"{_config_dir(f)}/registries.yaml").state != "absent"]
            flavor = present[0] if len(present) == 1 else "k3s"
    units = [u for u in units if u[0] == flavor]
    if role is None and len({u[1] for u in units}) == 1:
        role = units[0][1]
    assert flavor in FLAVORS
    settings: dict[str, object] = {}
    sources: dict[str, str] = {}
    drop_ins = sorted(p for p in facts.files if p.startswith(f"{_config_dir(flavor)}/config.yaml.d/"))
    config_files = [f"{_config_dir(flavor)}/config.yaml", *drop_ins]
    for path in config_files:
        text = facts.file(path).text()
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            problems.append(f"{path} is not valid YAML ({str(e).splitlines()[0]}): K3s does not start with it")
            continue
        if isinstance(data, dict):
            for key, value in data.items():
                settings[str(key)] = value
                sources[str(key)] = path
    unit = next((u for u in units if u[1] == role), units[0] if units else None)
    if unit is not None:
        for key, value in _flags(exec_args(unit[3])).items():
            settings[key] = value
            sources[key] = f"the {unit[2]} unit's command line"
    service = service_for(flavor, role) if role else None  # type: ignore[arg-type]
    data_dir = str(settings.get("data-dir") or default_data_dir(flavor))
    registries = str(settings.get("private-registry") or f"{_config_dir(flavor)}/registries.yaml")
    setup = Setup(flavor, role, service, registries, data_dir, problems=problems)  # type: ignore[arg-type]
    if _truthy(settings.get("embedded-registry")):
        setup.embedded, setup.embedded_from = True, sources["embedded-registry"]
    if _truthy(settings.get("disable-default-registry-endpoint")):
        setup.no_default, setup.no_default_from = True, sources["disable-default-registry-endpoint"]
    setup.runtime = _runtime(facts, flavor)
    return setup


def second_read(setup: Setup) -> Reading:
    """What the first read missed: a non-default data dir or registries.yaml path."""
    reading = Reading()
    if setup.registries_path != f"{_config_dir(setup.flavor)}/registries.yaml":
        reading.files.append(setup.registries_path)
    if setup.data_dir != default_data_dir(setup.flavor):
        reading.files.append(setup.config_toml)
        reading.dirs.append(setup.certs_d)
    return reading


def note_embedded_from_certs(setup: Setup, facts: Facts) -> None:
    """Mark the embedded registry on when K3s generated the directory of its mirror at the last start."""
    if setup.embedded:
        return
    fact = facts.file(f"{setup.certs_d}/{setup.mirror_address}/hosts.toml")
    text = fact.text()
    if text is not None and text.startswith(header_line(setup.flavor) + "\n"):
        setup.embedded, setup.embedded_from = True, f"{setup.certs_d}/{setup.mirror_address} (written by K3s)"


def _runtime(facts: Facts, flavor: str) -> Runtime:
    def answer(name: str, program: str) -> Version | None:
        status, output = facts.commands.get(name, (127, ""))
        return parse_version(output, program) if status == 0 else None

    containerd = "k3s ctr --version" if flavor == "k3s" else "containerd --version"
    return Runtime(flavor, answer(f"{flavor} --version", f"{flavor} version"), answer(containerd, "containerd"))
