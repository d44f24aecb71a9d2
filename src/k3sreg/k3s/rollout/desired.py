"""The file to roll out: read, validated with `mirrors validate`'s rules, and rendered for `--hot`."""

from __future__ import annotations

from pathlib import Path

from k3sreg.errors import ConfigError, UsageError
from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.findings import Finding
from k3sreg.k3s.render import RenderOptions, header_line, render_hosts
from k3sreg.k3s.rollout.engine import HotFiles, HotRender
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
