"""Roll registries.yaml out to every node of a cluster over SSH: plan, apply, status, rollback.

    inventory.py / ansible.py   nodes from our YAML or a k3s-ansible inventory (YAML, INI)
    model.py                    Node, flavors (k3s, rke2), their paths and services
    ssh.py                      asyncssh sessions: known_hosts policy, sudo, timeouts, NodeError
    remote.py                   the shell run on nodes (atomic write + backup, restart, rollback, hosts.toml)
    engine.py                   plan / apply / status / rollback over many nodes, parallel or rolling
    desired.py                  the file to roll out: validated, rendered to hosts.toml for --hot
    textdiff.py                 diffs with credentials masked
"""

from k3sreg.k3s.rollout.engine import (
    HotFiles,
    NodeResult,
    RolloutOptions,
    apply,
    failed,
    plan,
    rollback,
    status,
)
from k3sreg.k3s.rollout.inventory import load_inventory, parse_inventory, select_nodes
from k3sreg.k3s.rollout.model import Node
from k3sreg.k3s.rollout.ssh import NodeError, SshOptions

__all__ = [
    "HotFiles", "Node", "NodeError", "NodeResult", "RolloutOptions", "SshOptions", "apply", "failed",
    "load_inventory", "parse_inventory", "plan", "rollback", "select_nodes", "status",
]
