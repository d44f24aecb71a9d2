"""The file to roll out: read, validated with `mirrors validate`'s rules, rendered for `--hot`, and the TLS files
it names (`--certs DIR`: each `configs.*.tls` path on the node is filled from `DIR/<its file name>`)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from k3sreg.errors import ConfigError, UsageError
from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.findings import Finding
from k3sreg.k3s.render import RenderOptions, header_line, render_hosts
from k3sreg.k3s.rollout.engine import HotFiles, HotRender, NodeFile
from k3sreg.k3s.rollout.model import FLAVORS, Flavor
from k3sreg.k3s.validate import validate_text


def load_desired(path: Path) -> tuple[bytes, list[Finding]]:
    """The file's bytes and its warnings; ConfigError listing every error when K3s would refuse or ignore it."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from e
    findings = validate_text(text)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ConfigError([_line(path, f) for f in errors]
                          + [f"{path}: refusing to roll out a file with errors (see `k3sreg mirrors validate`)"])
    return content, [f for f in findings if f.severity == "warning"]


def hot_render(content: bytes, source: str = "registries.yaml") -> HotRender:
    """The hosts.toml files K3s would write from `content`, for each flavor (the header line differs)."""
    registries = load_registries(content.decode("utf-8"), source)
    render: dict[Flavor, HotFiles] = {}
    for flavor in FLAVORS:
        files = render_hosts(registries, RenderOptions(program=flavor))
        render[flavor] = HotFiles({rel: text.encode() for rel, text in files.items()}, header_line(flavor))
    return render


def hot_caveats(content: bytes) -> list[str]:
    """What `--hot` cannot change without a restart: credentials live in containerd's config.toml, not in
    hosts.toml, so new `configs.*.auth` entries reach containerd only when K3s restarts."""
    registries = load_registries(content.decode("utf-8"))
    hosts = sorted(h for h, c in registries.configs.items() if c.auth is not None and not c.auth.is_empty())
    if not hosts:
        return []
    return [f"--hot does not restart: credentials for {', '.join(hosts)} (configs.*.auth) are read by containerd "
            "from config.toml, which K3s rewrites only at its next start"]


def _line(path: Path, f: Finding) -> str:
    where = f"{path}:{f.location()}" if f.location() else str(path)
    return f"{where}: {f.path}: {f.message}; fix: {f.fix}"


TLS_MODES = {"ca_file": 0o644, "cert_file": 0o644, "key_file": 0o600}
"""How each kind of TLS file is installed on a node (root:root): certificates readable, keys the owner's only."""


def node_files(content: bytes, certs: Path) -> dict[PurePosixPath, NodeFile]:
    """The TLS files registries.yaml `content` names, read from `certs/<file name>`; ConfigError listing every
    problem (a file missing here, a relative path, the CA's own key, two names for one path)."""
    registries = load_registries(content.decode("utf-8"))
    found: dict[PurePosixPath, NodeFile] = {}
    problems: list[str] = []
    for host, config in registries.configs.items():
        tls = config.tls
        for kind, mode in TLS_MODES.items():
            value = getattr(tls, kind) if tls is not None else ""
            if not value:
                continue
            where = f"configs.{host!r}.tls.{kind}"
            path = PurePosixPath(value)
            local = certs / path.name
            if not path.is_absolute():
                problems.append(f"{where}: {value!r} is not an absolute path on the node")
            elif path.name == "ca.key":
                problems.append(f"{where}: {value!r} would put the CA's private key on every node; nodes need the "
                                "CA certificate (ca.crt) only")
            elif not local.is_file():
                problems.append(f"{where}: names {value}, but {local} does not exist (--certs {certs})")
            else:
                wanted = NodeFile(local.read_bytes(), mode)
                if found.get(path, wanted) != wanted:
                    problems.append(f"{where}: {value} is also named as another kind of file")
                found[path] = wanted
    if not found and not problems:
        problems.append("--certs: registries.yaml names no TLS file (configs.<host>.tls.ca_file, cert_file, "
                        "key_file); write them with `k3sreg mirrors init --ca-file ...`")
    if problems:
        raise ConfigError(problems)
    return found
