"""`mirrors init`: the written registries.yaml is minimal, valid and means what was asked."""

from __future__ import annotations

import pytest

from k3sreg.errors import UsageError
from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.generate import InitSpec, generate, scheme_notes
from k3sreg.k3s.validate import validate_text


def test_issue_example_round_trips_without_findings() -> None:
    """The issue's own command line gives a file validate has nothing to say about."""
    text = generate(InitSpec(endpoints=["http://127.0.0.1:30500"],
                             mirrors=["docker.io", "gcr.io", "ghcr.io", "quay.io"], insecure_skip_verify=True))
    assert validate_text(text) == []
    reg = load_registries(text)
    assert set(reg.mirrors) == {"docker.io", "gcr.io", "ghcr.io", "quay.io"}
    assert reg.mirrors["gcr.io"].endpoint == ["http://127.0.0.1:30500"]
    assert reg.configs == {}  # skip_verify would do nothing useful on plain HTTP


def test_tiers_credentials_tls_rewrites_and_wildcard() -> None:
    """Local → Regional → Global order, TLS on https hosts only, auth per host, quoted `*` and secrets."""
    text = generate(InitSpec(
        endpoints=["127.0.0.1:30500", "regional.example.com:5000", "https://registry-1.docker.io"],
        mirrors=["docker.io", "*"], ca_file="/etc/ssl/ca.pem", cert_file="/c.pem", key_file="/k.pem",
        username="bot", password="p #ss: yes", rewrites={"^rancher/(.*)": "mirrored/$1"}))
    assert [(f.code, f.path) for f in validate_text(text)] == [("auth-over-http", 'configs."127.0.0.1:30500".auth')]
    reg = load_registries(text)
    assert reg.mirrors["docker.io"].endpoint == ["http://127.0.0.1:30500", "https://regional.example.com:5000"]
    assert reg.mirrors["*"].endpoint[-1] == "https://registry-1.docker.io"
    regional = reg.configs["regional.example.com:5000"]
    assert regional.tls is not None and regional.tls.ca_file == "/etc/ssl/ca.pem"
    assert regional.auth is not None and regional.auth.password == "p #ss: yes"
    assert reg.configs["127.0.0.1:30500"].tls is None
    assert reg.configs["registry-1.docker.io"].auth is not None


@pytest.mark.parametrize(
    "spec",
    [
        InitSpec(endpoints=[], mirrors=["docker.io"]),
        InitSpec(endpoints=["http://h:port"], mirrors=["docker.io"]),
        InitSpec(endpoints=["ftp://h"], mirrors=["docker.io"]),
        InitSpec(endpoints=["http://h"], mirrors=["https://docker.io"]),
        InitSpec(endpoints=["http://h"], mirrors=["docker.io"], key_file="/k"),
        InitSpec(endpoints=["http://h"], mirrors=["docker.io"], rewrites={"^a(?!b)": "c"}),
        InitSpec(endpoints=["docker.io"], mirrors=["docker.io"]),
    ],
)
def test_requests_that_cannot_work_are_refused(spec: InitSpec) -> None:
    """Bad endpoints, URL-shaped mirror names, half a client pair, bad rewrites: a usage error."""
    with pytest.raises(UsageError):
        generate(spec)


def test_same_endpoint_spelled_twice_is_written_once() -> None:
    """`https://h` and `https://h/v2` are one endpoint to K3s: written once, in first position."""
    text = generate(InitSpec(endpoints=["https://h.example.com", "http://x.example.com",
                                        "https://h.example.com/v2"], mirrors=["quay.io"]))
    assert load_registries(text).mirrors["quay.io"].endpoint == ["https://h.example.com", "http://x.example.com"]


def test_relative_certificate_paths_are_refused() -> None:
    """Certificate paths are paths on the node and must be absolute."""
    with pytest.raises(UsageError, match="absolute"):
        generate(InitSpec(endpoints=["https://h"], mirrors=["docker.io"], ca_file="ca.pem"))


def test_a_chosen_scheme_is_said_and_commented() -> None:
    """An endpoint without a scheme gets K3s's choice, and both the file and the notes say which and why."""
    spec = InitSpec(endpoints=["10.0.0.5:30500", "127.0.0.1:5000", "http://10.0.0.6:5000"], mirrors=["docker.io"])
    text = generate(spec)
    assert load_registries(text).mirrors["docker.io"].endpoint == [
        "https://10.0.0.5:30500", "http://127.0.0.1:5000", "http://10.0.0.6:5000"]
    assert '"https://10.0.0.5:30500"  # no scheme given: https, as K3s assumes for a host that is not loopback\n' \
        in text
    notes = scheme_notes(spec)
    assert len(notes) == 2 and notes[0].startswith("--endpoint 10.0.0.5:30500: wrote https://10.0.0.5:30500 (")
    assert "--scheme http" in notes[0] and "loopback" in notes[1]
    assert validate_text(text) == []


def test_scheme_option_applies_to_endpoints_without_one() -> None:
    """--scheme http writes http:// for bare endpoints and keeps the schemes the user wrote."""
    spec = InitSpec(endpoints=["10.0.0.5:30500", "https://mirror.example.com"], mirrors=["docker.io"],
                    scheme="http", scheme_reason="config.yml: no http.tls")
    assert load_registries(generate(spec)).mirrors["docker.io"].endpoint == [
        "http://10.0.0.5:30500", "https://mirror.example.com"]
    assert scheme_notes(spec) == ["--endpoint 10.0.0.5:30500: wrote http://10.0.0.5:30500 (no scheme given: "
                                  "http, from config.yml: no http.tls)"]
    with pytest.raises(UsageError, match="--scheme"):
        generate(InitSpec(endpoints=["h:1"], mirrors=["docker.io"], scheme="ftp"))
