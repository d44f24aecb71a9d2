"""k3sreg: a registry and toolkit that gives a K3s cluster its own image supply."""

__version__ = "0.1.0"
