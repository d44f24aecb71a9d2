"""`k3sreg doctor`: why does this node not pull through my registry? Checks on a node, on every node of an
inventory over SSH, and on the registry, each answered pass / warn / fail with what was seen and the fix.

    run_local(Options) -> Report                          on this machine (a node), and --registry
    run_inventory(nodes, SshOptions, Options) -> Report    every node over SSH, in parallel, and --registry
    Options(images, timeout, registry=RegistryTarget(url, username, password, ca_file, insecure, push_test))

Modules: `model` (findings, reports, check ids), `gather` (the script that reads a node), `setup` (K3s's
options on the node), `versions` (release rules), `nodefiles` (file checks), `hosts` (endpoints from
hosts.toml), `vantage` (connections from the node), `tlsprobe`, `netchecks` (dns, tcp, tls, api, auth),
`pullchecks` (resolve, fallback), `regchecks` (the registry's own), `run` (orchestration). Nothing here prints;
the CLI renders the report. Never imports the server or the storage.
"""

from k3sreg.doctor.model import CHECKS, Finding, NodeReport, Report
from k3sreg.doctor.regchecks import RegistryTarget
from k3sreg.doctor.run import Options, run_inventory, run_local

__all__ = ["CHECKS", "Finding", "NodeReport", "Options", "RegistryTarget", "Report", "run_inventory", "run_local"]
