"""`mirrors validate` rules: one test per trap, and the seed guide's examples."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from k3sreg.k3s.findings import has_errors
from k3sreg.k3s.render import RenderOptions
from k3sreg.k3s.validate import validate_text

DATA = Path(__file__).parent / "data"


def found(text: str, **options: Any) -> set[tuple[str, str, str]]:
    """(severity, code, path) of every finding."""
    return {(f.severity, f.code, f.path)
            for f in validate_text(textwrap.dedent(text), RenderOptions(**options))}


@pytest.mark.parametrize("name", ["seed_mirrors_indented.yaml", "seed_mirrors_flattened.yaml",
                                  "seed_auth_indented.yaml", "seed_auth_flattened.yaml"])
def test_seed_examples_are_errors(name: str) -> None:
    """Both registries.yaml examples of the seed guide fail validation (as written and as meant)."""
    findings = validate_text((DATA / name).read_text())
    assert has_errors(findings)
    assert any("insecureskipverify" in f.path and "insecure_skip_verify" in f.fix for f in findings)


def test_seed_mirror_example_as_meant_points_at_the_typo() -> None:
    """The indented guide example: the typo is an error with line and fix, and nothing else is wrong."""
    findings = validate_text((DATA / "seed_mirrors_indented.yaml").read_text())
    assert [(f.severity, f.code, f.path, f.line) for f in findings] == [
        ("error", "unknown-key", 'configs."127.0.0.1:30500".tls.insecureskipverify', 22)]


def test_clean_file_has_no_finding() -> None:
    """A correct mirror setup passes with nothing to say."""
    assert found("""
        mirrors:
          docker.io:
            endpoint: ["https://mirror.example.com:5000"]
        configs:
          mirror.example.com:5000:
            auth: {username: u, password: p}
            tls: {ca_file: /etc/ssl/ca.pem}
    """) == set()


def test_keys_with_scheme_path_or_reserved_names() -> None:
    """Keys are registry names: URLs, paths, `_default`, `index.docker.io` never match."""
    got = found("""
        mirrors:
          "https://reg.example.com:5000": {endpoint: [m.example.com]}
          reg.example.com/project: {endpoint: [m.example.com]}
          _default: {endpoint: [m.example.com]}
          index.docker.io: {endpoint: [m.example.com]}
        configs:
          "https://m.example.com": {tls: {ca_file: /x}}
    """)
    assert {("error", "key-scheme", 'mirrors."https://reg.example.com:5000"'),
            ("error", "key-path", 'mirrors."reg.example.com/project"'),
            ("error", "bad-key", "mirrors._default"),
            ("error", "dockerhub-key", 'mirrors."index.docker.io"'),
            ("error", "key-scheme", 'configs."https://m.example.com"')} <= got


def test_endpoint_rules() -> None:
    """Scheme defaults, bad schemes, credentials, paths, IPv6, duplicates and the no-op last item."""
    got = found("""
        mirrors:
          docker.io:
            endpoint:
              - "reg.example.com:5000"
              - "ftp://m.example.com"
              - "https://u:p@m2.example.com"
              - "https://m3.example.com/prefix"
              - "http://[fd00::1]:5000"
              - "https://reg.example.com:5000/v2"
              - ""
              - "http://h:port"
              - docker.io
    """)
    base = 'mirrors."docker.io".endpoint'
    assert {("warning", "endpoint-https-default", f"{base}[0]"), ("error", "endpoint-scheme", f"{base}[1]"),
            ("warning", "endpoint-userinfo", f"{base}[2]"), ("warning", "endpoint-path", f"{base}[3]"),
            ("warning", "endpoint-ipv6", f"{base}[4]"), ("warning", "endpoint-duplicate", f"{base}[5]"),
            ("error", "endpoint-empty", f"{base}[6]"), ("error", "endpoint-invalid", f"{base}[7]"),
            ("warning", "endpoint-is-default", f"{base}[8]")} == got


def test_registry_listed_last_is_meaningful_without_default() -> None:
    """With --disable-default-registry-endpoint the registry itself as last endpoint is not a no-op."""
    text = "mirrors:\n  docker.io:\n    endpoint: [m.example.com, docker.io]\n"
    assert found(text, no_default_endpoint=True) == set()


def test_rewrite_rules() -> None:
    """Unused rewrites, TOML-breaking characters, non-RE2 syntax, bad groups and overlap."""
    got = found(r"""
        mirrors:
          quay.io:
            rewrite: {"^a/(.*)": "b/$1"}
          docker.io:
            endpoint: [m.example.com]
            rewrite:
              '^lib\.x/(.*)': "y/$1"
              "^l(?!x)": "b"
              "^library/(.*)": "$1_suffix"
              "(.*)": "mirror/$1"
              "^(unclosed": "x"
    """)
    rw = 'mirrors."docker.io".rewrite'
    assert {("error", "rewrite-unused", 'mirrors."quay.io".rewrite'),
            ("error", "rewrite-breaks-toml", rw + r'."^lib\\.x/(.*)"'),
            ("error", "rewrite-not-re2", rw + '."^l(?!x)"'),
            ("warning", "rewrite-group", rw + '."^library/(.*)"'),
            ("warning", "rewrite-overlap", rw),
            ("error", "rewrite-invalid", rw + '."^(unclosed"')} <= got


def test_distinct_anchored_rewrites_do_not_overlap() -> None:
    """Patterns anchored on different literal prefixes cannot both match."""
    assert found("""
        mirrors:
          docker.io:
            endpoint: [m.example.com]
            rewrite: {"^rancher/(.*)": "r/${1}", "^library/(.*)": "l/$1"}
    """) == set()


def test_tls_and_auth_rules() -> None:
    """key without cert, cert without key, relative paths, empty auth, password without user."""
    got = found("""
        mirrors:
          docker.io:
            endpoint: [a.example.com, b.example.com, c.example.com]
        configs:
          a.example.com: {tls: {key_file: /k}}
          b.example.com: {tls: {cert_file: certs/c.pem, key_file: /k}, auth: {}}
          c.example.com: {auth: {password: p}}
    """)
    assert {("error", "tls-key-only", 'configs."a.example.com".tls.key_file'),
            ("warning", "tls-relative-path", 'configs."b.example.com".tls.cert_file'),
            ("warning", "auth-empty", 'configs."b.example.com".auth'),
            ("warning", "auth-no-username", 'configs."c.example.com".auth')} == got
    assert ("warning", "tls-cert-only", "configs.h.tls.cert_file") in found(
        "configs:\n  h: {tls: {cert_file: /c}}\n")


def test_dockerhub_credentials_under_docker_io() -> None:
    """Docker Hub auth must be keyed by registry-1.docker.io, the host containerd contacts."""
    assert ("warning", "auth-dockerhub", 'configs."docker.io".auth') in found(
        "configs:\n  docker.io:\n    auth: {username: u, password: p}\n")
    assert found("configs:\n  registry-1.docker.io:\n    auth: {username: u, password: p}\n") == set()


def test_wildcard_config_rules() -> None:
    """configs."*" is dropped next to mirrors."*", and its auth matches no request."""
    got = found('mirrors:\n  "*": {endpoint: [m.example.com]}\nconfigs:\n  "*": {auth: {username: u, password: p}}\n')
    assert {("warning", "wildcard-config-dropped", 'configs."*"'),
            ("warning", "auth-wildcard", 'configs."*".auth')} <= got


def test_config_port_mismatch_and_unmatched() -> None:
    """A config under the bare host does not reach `host:port`; a config matching nothing is flagged."""
    got = found("""
        mirrors:
          docker.io:
            endpoint: ["https://reg.example.com:5000"]
        configs:
          reg.example.com: {tls: {ca_file: /ca}}
          other.example.com: {tls: {ca_file: /ca}}
    """)
    assert {("warning", "config-port-mismatch", 'configs."reg.example.com"'),
            ("warning", "config-unmatched", 'configs."other.example.com"')} == got


def test_tls_on_plain_http_endpoint() -> None:
    """TLS settings on an http:// endpoint make containerd try HTTPS first; skip_verify never means HTTP."""
    findings = validate_text(textwrap.dedent("""
        mirrors:
          docker.io:
            endpoint: ["http://127.0.0.1:30500"]
        configs:
          "127.0.0.1:30500":
            tls: {insecure_skip_verify: true}
    """))
    assert [(f.code, f.severity) for f in findings] == [("tls-on-http", "warning")]
    assert "never makes containerd use HTTP" in findings[0].message


def test_mirror_without_file_and_legacy_auths() -> None:
    """An endpoint-less mirror writes nothing (unless Spegel); `auths` is never used."""
    text = "mirrors:\n  docker.io:\nauths:\n  h: {username: u}\n"
    assert found(text) == {("warning", "mirror-no-file", 'mirrors."docker.io"'),
                           ("warning", "auths-legacy", "auths")}
    assert found(text, embedded_registry=True) == {("warning", "auths-legacy", "auths")}


def test_config_under_mirror_name_with_no_default() -> None:
    """With the default disabled, configs under the mirror's own name keep `server` (K3s quirk)."""
    got = found("""
        mirrors:
          docker.io: {endpoint: [m.example.com]}
        configs:
          docker.io: {tls: {ca_file: /ca}}
    """, no_default_endpoint=True)
    assert ("warning", "config-keeps-default", 'configs."docker.io"') in got


def test_findings_are_in_file_order_with_positions() -> None:
    """Findings carry line:column and come sorted by position."""
    findings = validate_text("mirrors:\n  quay.io:\nconfigs:\n  h:\n    tls: {key_file: /k}\n")
    assert [f.line for f in findings] == sorted(f.line or 0 for f in findings)
    assert findings[0].location() == "2:3"


def test_tls_on_loopback_registry_defaulting_to_http() -> None:
    """A loopback registry key with a port becomes `server = http://...`: TLS settings there are a trap."""
    got = found('configs:\n  "127.0.0.1:5000":\n    tls: {ca_file: /ca.pem}\n')
    assert got == {("warning", "tls-on-default-http", 'configs."127.0.0.1:5000".tls')}
    assert found('configs:\n  "reg.example.com:5000":\n    tls: {ca_file: /ca.pem}\n') == set()


def test_config_for_the_mirrored_registry_itself_is_matched() -> None:
    """configs."registry-1.docker.io" reaches docker.io's `server` line, so it is not unmatched."""
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n' \
           'configs:\n  registry-1.docker.io:\n    auth: {username: u, password: p}\n'
    assert found(text) == set()


def test_endpoint_query_and_fragment_are_reported() -> None:
    """containerd drops an endpoint's `?query` and `#fragment`: both are warned about."""
    text = ('mirrors:\n  docker.io:\n    endpoint: ["https://m.example.com/v2?x=1", "https://n.example.com#frag"]\n')
    base = 'mirrors."docker.io".endpoint'
    assert {("warning", "endpoint-query", f"{base}[0]"), ("warning", "endpoint-query", f"{base}[1]")} <= found(text)


def test_credentials_over_plain_http_and_unchecked_certificates() -> None:
    """Credentials to an http:// endpoint (or a loopback registry K3s reaches over HTTP) and
    insecure_skip_verify on an https one are flagged, naming `k3sreg certs`; TLS on https with a CA is not."""
    got = found("""
        mirrors:
          docker.io:
            endpoint: ["http://10.0.0.5:30500", "https://10.0.0.6:30500"]
        configs:
          "10.0.0.5:30500": {auth: {username: u, password: p}}
          "10.0.0.6:30500": {auth: {username: u, password: p}, tls: {insecure_skip_verify: true}}
          "127.0.0.1:5000": {auth: {username: u, password: p}}
    """)
    assert {("warning", "auth-over-http", 'configs."10.0.0.5:30500".auth'),
            ("warning", "tls-skip-verify", 'configs."10.0.0.6:30500".tls.insecure_skip_verify'),
            ("warning", "auth-over-http", 'configs."127.0.0.1:5000".auth')} <= got
    assert not any(code in ("auth-over-http", "tls-skip-verify") and "10.0.0.6" in path and "auth" in path
                   for _, code, path in got)
    finding = next(f for f in validate_text(textwrap.dedent("""
        configs:
          "reg.example.com:5000": {tls: {insecure_skip_verify: true}}
    """)) if f.code == "tls-skip-verify")
    assert "k3sreg certs init" in finding.fix and "k3sreg certs issue --host reg.example.com" in finding.fix


def test_certificate_files_readable_here_are_checked(tmp_path: Path) -> None:
    """A ca_file that is expired, or a server certificate (no CA) that does not name the host, is an error;
    one expiring within 30 days a warning; a CA, or a certificate naming the host, passes; an unreadable path
    is not looked at."""
    from k3sreg.auth.certs import cert_pem, issue_client, issue_server, make_ca

    ca = make_ca("validate CA")
    good_ca, server, soon, expired, client = (tmp_path / n for n in ("ca.crt", "srv.crt", "soon.crt", "old.crt",
                                                                      "node.crt"))
    good_ca.write_bytes(cert_pem(ca.cert))
    server.write_bytes(cert_pem(issue_server(ca, ["reg.example.com"]).cert))
    soon.write_bytes(cert_pem(issue_server(ca, ["10.0.0.5"], days=10).cert))
    expired.write_bytes(cert_pem(expired_certificate()))
    client.write_bytes(cert_pem(issue_client(ca, "node1").cert))
    text = f"""
        mirrors:
          docker.io:
            endpoint: ["https://10.0.0.5:30500", "https://reg.example.com:5000"]
        configs:
          "10.0.0.5:30500": {{tls: {{ca_file: "{server}", cert_file: "{client}", key_file: /k}}}}
          "reg.example.com:5000": {{tls: {{ca_file: "{good_ca}"}}}}
          "a.example.com": {{tls: {{ca_file: "{expired}"}}}}
          "b.example.com": {{tls: {{ca_file: "{soon}"}}}}
          "c.example.com": {{tls: {{ca_file: "{tmp_path}/missing.crt"}}}}
    """
    got = {(s, c, p) for s, c, p in found(text) if c.startswith("tls-")}
    assert got == {("error", "tls-host-not-covered", 'configs."10.0.0.5:30500".tls.ca_file'),
                   ("error", "tls-cert-expired", 'configs."a.example.com".tls.ca_file'),
                   ("error", "tls-host-not-covered", 'configs."a.example.com".tls.ca_file'),
                   ("warning", "tls-cert-expiring", 'configs."b.example.com".tls.ca_file'),
                   ("error", "tls-host-not-covered", 'configs."b.example.com".tls.ca_file')}


def expired_certificate() -> Any:
    """A self-signed certificate that expired yesterday."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
