"""Suggestions for keys K3s silently ignores: the nearest valid key and why the guess is right."""

from __future__ import annotations

import difflib
import re

from k3sreg.k3s.model import AUTH_FIELDS, CONFIG_FIELDS, MIRROR_FIELDS, TLS_FIELDS, TOP_FIELDS

# Level → the keys valid there.
LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "top": tuple(TOP_FIELDS),
    "mirror": tuple(MIRROR_FIELDS),
    "config": tuple(CONFIG_FIELDS),
    "auth": tuple(AUTH_FIELDS),
    "tls": tuple(TLS_FIELDS),
}

# Misspellings met in guides and issues, with the fix spelled out. Keyed by (level, key).
_KNOWN: dict[tuple[str, str], tuple[str, str]] = {
    ("auth", "token"): (
        "",
        "there is no `token` field: containerd gets bearer tokens itself from the registry's token service "
        "using `username`/`password`; use `identity_token` only for an OAuth2 refresh token",
    ),
    ("auth", "identitytoken"): ("identity_token", "containerd's spelling is not the registries.yaml one"),
    ("tls", "skip_verify"): ("insecure_skip_verify", "`skip_verify` is the hosts.toml name; K3s writes it"),
    ("tls", "ca"): ("ca_file", "`ca` is the hosts.toml name; registries.yaml takes a file path as `ca_file`"),
    ("tls", "cert"): ("cert_file", ""),
    ("tls", "key"): ("key_file", ""),
    ("tls", "client"): ("cert_file", "`client` is the hosts.toml name; write `cert_file` and `key_file`"),
    ("mirror", "endpoints"): ("endpoint", "the list is called `endpoint` (singular)"),
    ("mirror", "rewrites"): ("rewrite", "the map is called `rewrite` (singular)"),
    ("mirror", "url"): ("endpoint", "write the mirror address as a list item under `endpoint`"),
    ("top", "mirror"): ("mirrors", "the whole section is ignored, so the file behaves as empty"),
    ("top", "config"): ("configs", "the whole section is ignored, so the file behaves as empty"),
    ("top", "registries"): ("mirrors", "registries.yaml has `mirrors` and `configs` at the top level"),
}

# hosts.toml-only settings people try to put into registries.yaml.
_HOSTS_TOML_ONLY = {"capabilities", "override_path", "header", "dial_timeout", "plain_http", "insecure", "server"}

_REGISTRY_LIKE = re.compile(r"^(\*|localhost(:\d+)?|\[[0-9a-fA-F:.]+\](:\d+)?|[^\s/]*[.:][^\s/]*)$")


def _norm(key: str) -> str:
    return re.sub(r"[-_\s]", "", key).lower()


def looks_like_registry(key: str) -> bool:
    """Whether `key` reads as a registry name (`docker.io`, `host:5000`, `localhost`, `*`)."""
    return bool(_REGISTRY_LIKE.match(key))


def level_of(key: str) -> str | None:
    """The level where `key` would be valid (e.g. `endpoint` → mirror), or None."""
    for level, keys in LEVEL_KEYS.items():
        if key in keys:
            return level
    for level, keys in LEVEL_KEYS.items():
        if _norm(key) in {_norm(k) for k in keys}:
            return level
    return None


def suggest(level: str, key: str) -> tuple[str, str]:
    """(nearest valid key or "", an explanation or "") for an unknown `key` at `level`."""
    if (level, key) in _KNOWN:
        return _KNOWN[(level, key)]
    if (level, _norm(key)) in _KNOWN:
        return _KNOWN[(level, _norm(key))]
    valid = LEVEL_KEYS[level]
    for candidate in valid:
        if candidate.lower() == key.lower():
            return candidate, "keys are case-sensitive"
        if _norm(candidate) == _norm(key):
            return candidate, "words are joined with `_`"
    if key in _HOSTS_TOML_ONLY:
        return "", (
            f"`{key}` is a hosts.toml setting that registries.yaml cannot express: K3s derives it itself; "
            "for anything else write a hand-made hosts.toml under certs.d for a registry that is not in "
            "registries.yaml"
        )
    close = difflib.get_close_matches(_norm(key), [_norm(k) for k in valid], n=1, cutoff=0.6)
    if close:
        return next(k for k in valid if _norm(k) == close[0]), ""
    return "", ""
