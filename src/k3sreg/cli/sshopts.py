"""The SSH options every command that reaches nodes takes (`nodes ...`, and `doctor --inventory` next).

`@ssh_options` adds the six flags to a command's signature, where typer reads them, and hands the command one
`ssh: SshOptions` instead, so each command states them once, by name, and they cannot drift apart.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from k3sreg.k3s.rollout import SshOptions

_FLAGS: dict[str, tuple[Any, Any]] = {
    "known_hosts": (Path, typer.Option(Path("~/.ssh/known_hosts"), "--known-hosts",
                                       help="Host keys to check against.")),
    "accept_new_host_keys": (bool, typer.Option(False, "--accept-new-host-keys",
                                                help="Trust and record the key of a host known_hosts does not "
                                                     "list yet.")),
    "identity": (Path | None, typer.Option(None, "--identity", "-k",
                                           help="Private key for nodes whose inventory names none.")),
    "no_agent": (bool, typer.Option(False, "--no-agent", help="Do not use the SSH agent (SSH_AUTH_SOCK).")),
    "connect_timeout": (float, typer.Option(10.0, "--connect-timeout", min=0.1,
                                            help="Seconds to connect and log in.")),
    "command_timeout": (float, typer.Option(60.0, "--command-timeout", min=0.1,
                                            help="Seconds for each remote command.")),
}


def ssh_options(command: Callable[..., None]) -> Callable[..., None]:
    """Replace the `ssh` parameter of `command` by the SSH flags; the command receives them as one SshOptions."""
    signature = inspect.signature(command)
    kept = [p for name, p in signature.parameters.items() if name != "ssh"]
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in _FLAGS.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in _FLAGS}
        command(*args, ssh=_build(**values), **kwargs)

    # typer reads the signature; the annotations it resolves must be the new parameters', not `ssh`'s.
    wrapper.__signature__ = signature.replace(parameters=[*kept, *flags])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {k: v for k, v in command.__annotations__.items() if k != "ssh"}
    wrapper.__annotations__.update({name: annotation for name, (annotation, _) in _FLAGS.items()})
    return wrapper


def _build(known_hosts: Path, accept_new_host_keys: bool, identity: Path | None, no_agent: bool,
           connect_timeout: float, command_timeout: float) -> SshOptions:
    from k3sreg.k3s.rollout import SshOptions

    return SshOptions(known_hosts=known_hosts.expanduser(), accept_new_host_keys=accept_new_host_keys,
                      identity=str(identity.expanduser()) if identity else None, use_agent=not no_agent,
                      connect_timeout=connect_timeout, command_timeout=command_timeout)
