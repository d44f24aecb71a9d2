"""The CA and certificates k3sreg issues, checked with openssl as an outside verifier, and reading them back."""

from __future__ import annotations

import datetime
import json
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from k3sreg.auth.certinfo import covers_host, describe, expires_within, read_certificates
from k3sreg.auth.certs import Issued, issue_client, issue_server, load_ca, make_ca, server_hosts, write_pair
from k3sreg.cli.main import app
from k3sreg.errors import UsageError

runner = CliRunner()


def openssl_verify(ca: Path, cert: Path, purpose: str) -> bool:
    done = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(ca), str(cert)],
                          capture_output=True, text=True)
    return done.returncode == 0


def test_ca_and_server_certificate_verify_with_openssl(tmp_path: Path) -> None:
    """A server certificate from our CA is valid for sslserver in openssl's eyes; a client one for sslclient."""
    ca = make_ca()
    write_pair(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    write_pair(issue_server(ca, server_hosts(["reg.example", "10.0.0.5"])), tmp_path / "s.crt", tmp_path / "s.key")
    write_pair(issue_client(ca, "node-1"), tmp_path / "c.crt", tmp_path / "c.key")
    assert openssl_verify(tmp_path / "ca.crt", tmp_path / "s.crt", "sslserver")
    assert openssl_verify(tmp_path / "ca.crt", tmp_path / "c.crt", "sslclient")
    assert not openssl_verify(tmp_path / "ca.crt", tmp_path / "c.crt", "sslserver")
    for key in ("ca.key", "s.key", "c.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600


def test_server_names() -> None:
    """registry.localhost by default, localhost names on request, IPs as IP SANs, no duplicates."""
    assert server_hosts(["reg.example", "reg.example"]) == ["reg.example", "registry.localhost"]
    assert server_hosts(["10.0.0.5"], registry_localhost=False, local=True) == ["10.0.0.5", "localhost", "127.0.0.1",
                                                                                  "::1"]
    cert = issue_server(make_ca(), server_hosts(["reg.example", "10.0.0.5", "[fd00::1]"])).cert
    info = describe(cert)
    assert info["dns_names"] == ["reg.example", "registry.localhost"]
    assert info["ip_addresses"] == ["10.0.0.5", "fd00::1"] and info["roles"] == ["server"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize("host", ["bad host", "-x.example", "a..b", ""])
def test_bad_host_names_are_refused(host: str) -> None:
    """A SAN that is neither IP nor DNS name is a one-line usage error."""
    with pytest.raises(UsageError):
        issue_server(make_ca(), [host] if host else [])


@pytest.mark.parametrize(("host", "covered"), [
    ("reg.example", True), ("REG.example", True), ("reg.example:30500", True), ("other.example", False),
    ("x.wild.example", True), ("wild.example", False), ("a.b.wild.example", False),
    ("10.0.0.5", True), ("10.0.0.5:30500", True), ("10.0.0.6", False), ("[fd00::1]:5000", True), ("fd00::1", True),
    ("registry.localhost", True), ("localhost", False),
])
def test_covers_host(host: str, covered: bool) -> None:
    """Names and IPs as a TLS client checks them: SANs only, one-label wildcards, ports ignored."""
    cert = issue_server(make_ca(), server_hosts(["reg.example", "*.wild.example", "10.0.0.5", "fd00::1"])).cert
    assert covers_host(cert, host) is covered


def test_expires_within() -> None:
    """A certificate counts as expiring within N days when its end is at most N days away (or past)."""
    ca = make_ca(days=40)
    now = datetime.datetime.now(datetime.UTC)
    assert not expires_within(ca.cert, 30, now)
    assert expires_within(ca.cert, 41, now)
    assert expires_within(ca.cert, 0, now + datetime.timedelta(days=41))


def test_leaf_never_outlives_its_ca() -> None:
    """A leaf asked for longer than the CA's life ends with the CA."""
    ca = make_ca(days=10)
    assert issue_server(ca, ["a.example"], days=365).cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_load_ca_checks_the_pair(tmp_path: Path, ca: Issued) -> None:
    """A CA key that does not match the certificate, or a non-CA certificate, is refused in one line."""
    write_pair(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    assert load_ca(tmp_path / "ca.crt", tmp_path / "ca.key").cert == ca.cert
    write_pair(make_ca(), tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(UsageError, match="is not the key"):
        load_ca(tmp_path / "ca.crt", tmp_path / "b.key")
    write_pair(issue_client(ca, "n"), tmp_path / "n.crt", tmp_path / "n.key")
    with pytest.raises(UsageError, match="not a CA"):
        load_ca(tmp_path / "n.crt", tmp_path / "n.key")
    with pytest.raises(UsageError, match="k3sreg certs init"):
        load_ca(tmp_path / "none.crt", tmp_path / "none.key")


def test_cli_init_issue_show(tmp_path: Path) -> None:
    """certs init, issue (server, --client, --signer) and show --json; keys are never printed."""
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["certs", "init", "--dir", d]).exit_code == 0
    issued = runner.invoke(app, ["certs", "issue", "--dir", d, "-H", "10.0.0.5", "-H", "reg.example", "--local"])
    assert issued.exit_code == 0 and "10.0.0.5" in issued.stdout
    assert runner.invoke(app, ["certs", "issue", "--dir", d, "--client", "node-1"]).exit_code == 0
    assert runner.invoke(app, ["certs", "issue", "--dir", d, "--signer", "tokens"]).exit_code == 0
    shown = runner.invoke(app, ["certs", "show", "--json", f"{d}/registry.crt", f"{d}/node-1.crt", f"{d}/ca.crt"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert [d["roles"] for d in doc] == [["server"], ["client"], ["ca"]]
    assert set(doc[0]["dns_names"]) == {"reg.example", "registry.localhost", "localhost"}
    assert set(doc[0]["ip_addresses"]) == {"10.0.0.5", "127.0.0.1", "::1"}
    text = runner.invoke(app, ["certs", "show", f"{d}/registry.crt"]).stdout
    assert "days left" in text and "registry.localhost" in text
    everything = issued.output + shown.output + text
    for key in ("ca.key", "registry.key", "node-1.key", "tokens.key"):
        assert (tmp_path / "pki" / key).read_text() not in everything
        assert "PRIVATE KEY" not in everything


def test_cli_show_skips_a_key_in_the_same_file(tmp_path: Path) -> None:
    """A PEM with key and certificate shows the certificate and never the key."""
    ca = make_ca()
    write_pair(ca, tmp_path / "c.crt", tmp_path / "k.key")
    both = tmp_path / "both.pem"
    both.write_bytes((tmp_path / "k.key").read_bytes() + (tmp_path / "c.crt").read_bytes())
    result = runner.invoke(app, ["certs", "show", str(both)])
    assert result.exit_code == 0 and "PRIVATE" not in result.output
    assert len(read_certificates(both)) == 1


@pytest.mark.parametrize("args", [
    ["certs", "issue", "--dir", "{d}"],  # no CA yet
    ["certs", "show", "{d}/missing.crt"],
    ["certs", "issue", "--dir", "{d}", "--client", "n", "--signer", "s"],
    ["certs", "issue", "--dir", "{d}", "--client", "n", "-H", "x.example"],
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    """Missing CA, missing file, conflicting options: exit 1 with one `error:` line, no traceback."""
    result = runner.invoke(app, [a.format(d=tmp_path) for a in args])
    assert result.exit_code == 2  # usage error (README exit-status scheme)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """A second init would replace the CA every node trusts: refused unless --force."""
    d = str(tmp_path)
    assert runner.invoke(app, ["certs", "init", "--dir", d]).exit_code == 0
    again = runner.invoke(app, ["certs", "init", "--dir", d])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["certs", "init", "--dir", d, "--force"]).exit_code == 0


def test_every_certs_command_has_help() -> None:
    """`--help` works on the group and on each command."""
    for args in (["certs"], ["certs", "init"], ["certs", "issue"], ["certs", "show"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_rotate_token_key_puts_a_new_key_in_front(tmp_path: Path) -> None:
    """`certs rotate-token-key` gives the keyring a new current key and keeps the old one for verifying; a
    config without a built-in service is a one-line usage error."""
    from k3sreg.auth.signing import KeyRing

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"auth:\n  token:\n    service: s\n    issuer: i\n    builtin:\n      htpasswd: {htpasswd}\n")
    ring = KeyRing(tmp_path / "data" / "k3sreg" / "token-keys.json", 300)
    before = ring.signing_key().kid
    result = runner.invoke(app, ["certs", "rotate-token-key", "--config", str(config)])
    assert result.exit_code == 0, result.output
    after = ring.signing_key().kid
    assert after != before and after in result.output and set(ring.public_keys()) == {before, after}
    plain = tmp_path / "plain.yml"
    plain.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}\n")
    result = runner.invoke(app, ["certs", "rotate-token-key", "--config", str(plain)])
    assert result.exit_code == 2 and "no auth.token.builtin" in result.output
