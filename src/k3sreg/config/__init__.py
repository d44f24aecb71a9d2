"""k3sreg's configuration: Distribution's config.yml read as it is, plus k3sreg's own keys, as one validated model.

    config/
      loader.py     load_settings / parse_settings: file or embedded defaults, REGISTRY_* overrides, validation
      env.py        the REGISTRY_<SECTION>_<KEY> overrides
      problems.py   how a problem is told: "key.path: what is wrong; the fix", nearest key for typos
      values.py     value types: Go strings, durations, sizes, hosts, URLs; the YAML loader; Section (base)
      units.py      parsing and printing durations and sizes (no pydantic)
      model.py      Settings, the root, and the checks that span sections
      log.py http.py health.py storage.py proxy.py auth.py catalog.py tags.py   Distribution's sections
      upstreams.py limits.py access.py (and auth.token.builtin in auth.py)         k3sreg's own sections

Every section keeps its defaults in one place (its module); consumers receive their own section, not the whole
Settings. The full reference of every key is docs/configuration.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k3sreg.config.loader import EMBEDDED_DEFAULTS, load_settings, parse_settings
    from k3sreg.config.model import Settings

# Loaded on first use: a command that needs one section (the registry client's `upstreams`) does not build the
# models of every other section at start.
_HOME = {"EMBEDDED_DEFAULTS": "loader", "load_settings": "loader", "parse_settings": "loader", "Settings": "model"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f"k3sreg.config.{_HOME[name]}"), name)
    raise AttributeError(f"module 'k3sreg.config' has no attribute {name!r}")


__all__ = ["EMBEDDED_DEFAULTS", "Settings", "load_settings", "parse_settings"]
