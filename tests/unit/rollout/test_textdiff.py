"""Diffs of registries.yaml never show credentials."""

from __future__ import annotations

from k3sreg.k3s.rollout.textdiff import mask_secrets, masked_diff

FILE = b"""mirrors:
  docker.io:
    endpoint: ["https://mirror.lan"]
configs:
  mirror.lan:
    auth:
      username: robot
      password: s3cr3t
      "auth": dXNlcjpwYXNz
    other: {identity_token: abc, password: "x,y"}
    tls:
      insecure_skip_verify: true
"""


def test_mask_hides_every_secret_value_and_keeps_the_rest() -> None:
    """password, auth, identity_token values (block and flow style) become ***; structure stays."""
    masked = mask_secrets(FILE.decode())
    for secret in ("s3cr3t", "dXNlcjpwYXNz", "abc"):
        assert secret not in masked
    assert "      password: ***\n" in masked
    assert "    auth:\n" in masked  # a mapping key with nothing after it is not a secret
    assert "username: robot" in masked
    assert masked.count("\n") == FILE.decode().count("\n")


def test_diff_of_a_missing_file_shows_the_whole_file_masked() -> None:
    """A node without the file gets a creation diff from /dev/null."""
    diff = masked_diff(None, FILE, "n1")
    assert diff.startswith("--- /dev/null\n+++ desired\n")
    assert "+      password: ***" in diff
    assert "s3cr3t" not in diff


def test_diff_of_a_changed_password_shows_the_line_but_not_the_values() -> None:
    """A password change is visible as a change, never as text."""
    diff = masked_diff(FILE, FILE.replace(b"s3cr3t", b"n3w").replace(b"mirror.lan\"]", b"m2.lan\"]"), "n1")
    assert '+    endpoint: ["https://m2.lan"]' in diff
    assert "s3cr3t" not in diff and "n3w" not in diff


def test_a_difference_only_in_secrets_is_still_reported() -> None:
    """When masking hides the only change, the diff says so instead of being empty."""
    diff = masked_diff(FILE, FILE.replace(b"s3cr3t", b"other"), "n1")
    assert "differ only in masked values" in diff


def test_identical_files_have_an_empty_diff() -> None:
    """No difference, no diff."""
    assert masked_diff(FILE, FILE, "n1") == ""
