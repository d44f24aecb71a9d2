"""`k3sreg serve --check`: what serve would refuse at start, or what it would serve; the pod's config passes."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from k3sreg.cli.serve_check import describe, summary
from k3sreg.config import parse_settings

K3SREG = str(Path(sys.executable).with_name("k3sreg"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "K3SREG_", "HTTP", "NO_PROXY"))}
UPSTREAMS_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  secret: s3cr3t-http
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    username: me
    password: hub-pass
  - name: ghcr.io
    url: https://ghcr.io
    offline: true
"""


def check(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, K3SREG, "serve", "--check", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=60, check=False)


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def minimal(tmp_path: Path, http: str = "  addr: 127.0.0.1:0\n") -> str:
    return f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\nhttp:\n{http}"


def pod_files(tmp_path: Path, *render_args: str) -> tuple[Path, dict[str, str]]:
    """`deploy render`: the ConfigMap's config.yml (written to a file) and the pod's Secret-fed variables."""
    done = subprocess.run([K3SREG, "deploy", "render", *render_args], capture_output=True, text=True, env=ENV,
                          timeout=60, check=True)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}
    config = write(tmp_path, docs[("ConfigMap", "k3sreg-config")]["data"]["config.yml"], "pod-config.yml")
    container = docs[("Deployment", "k3sreg")]["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for var in container.get("env", []):
        ref = var["valueFrom"]["secretKeyRef"]
        env[var["name"]] = base64.b64decode(docs[("Secret", ref["name"])]["data"][ref["key"]]).decode()
    return config, env


def test_the_rendered_config_map_passes(tmp_path: Path) -> None:
    """The default ConfigMap of `deploy render` passes the check: :5000, the PVC path, the storage check."""
    config, env = pod_files(tmp_path)
    result = check("--json", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads(result.stdout)
    assert facts["ok"] is True and facts["listen"]["addr"] == ":5000"
    assert facts["storage"]["rootdirectory"] == "/var/lib/registry"
    assert [c["check"] for c in facts["health"]] == ["storagedriver (writes and removes a probe)"]


def test_a_rendered_config_with_secrets_passes_with_the_secret_variables(tmp_path: Path) -> None:
    """A config whose passwords `deploy render` moved into a Secret passes with the variables the pod gets."""
    config, env = pod_files(tmp_path, "--config", str(write(tmp_path, UPSTREAMS_CONFIG)))
    assert set(env) == {"REGISTRY_HTTP_SECRET", "REGISTRY_UPSTREAMS_0_PASSWORD"}
    assert "hub-pass" not in config.read_text()
    result = check("--json", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads(result.stdout)
    assert [(u["name"], u["network"]) for u in facts["upstreams"]] == [("docker.io", "direct"),
                                                                       ("ghcr.io", "offline")]
    assert facts["upstreams"][0]["routes"][:2] == ["ns=docker.io", "/v2/docker.io/..."]
    assert "hub-pass" not in result.stdout


def test_text_summary_says_what_would_be_served(tmp_path: Path) -> None:
    """Without --json: one line per fact (listen, tls, storage, upstream, auth, workers, drain, log), exit 0."""
    result = check(str(write(tmp_path, minimal(tmp_path, "  addr: :5000\n  draintimeout: 20s\n"))),
                   "--workers", "3")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": OK, `k3sreg serve` would start with it")
    facts = dict(line.split(None, 1) for line in lines[1:])
    assert facts["listen"].startswith("http://127.0.0.1:5000, and every ") and "port 5000" in facts["listen"]
    assert facts["storage"] == f"filesystem {tmp_path}/data"
    assert facts["auth"].startswith("none") and facts["workers"] == "3" and facts["drain"].startswith("20s ")
    assert facts["log"] == "text on stdout, level info, access log on" and facts["tls"] == "off"


def test_background_jobs_are_listed(tmp_path: Path) -> None:
    """storage.gc and storage.scrub show on the storage line and in --json; read-only mode turns them off."""
    jobs = ("  gc:\n    interval: 6h\n    deleteuntagged: true\n  scrub:\n    rate: 1MiB\n"
            "    quarantine: true\n")
    text = minimal(tmp_path).replace("http:\n", jobs + "http:\n")
    result = check(str(write(tmp_path, text)))
    facts = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert facts["storage"] == (f"filesystem {tmp_path}/data (garbage collection every 21600s, keeping 3600s, "
                                "untagged manifests too, scrub every 604800s at 1048576 bytes/s, quarantining)")
    readonly = text.replace("http:\n", "  maintenance:\n    readonly:\n      enabled: true\nhttp:\n")
    doc = json.loads(check(str(write(tmp_path, readonly)), "--json").stdout)
    assert doc["storage"]["gc"] is None and doc["storage"]["scrub"] is None


def test_every_problem_at_once_exit_2(tmp_path: Path) -> None:
    """Problems from each stage (unsupported driver, an address not of this machine) each get a line; exit 2."""
    bad = write(tmp_path, "version: 0.1\nstorage:\n  s3:\n    region: r\n    bucket: b\n"
                          "http:\n  addr: 192.0.2.1:5000\n")
    result = check(str(bad))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "storage.s3" in lines[0] and "192.0.2.1 is not an address of this machine" in lines[1]
    result = check("--json", str(bad))
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["config"] == str(bad) and len(doc["problems"]) == 2


def test_config_errors_and_tls_files_are_checked(tmp_path: Path) -> None:
    """Invalid keys and TLS files that are not there fail the check, as they fail serve (check_files)."""
    result = check(str(write(tmp_path, minimal(tmp_path, "  adr: :5000\n"))))
    assert result.returncode == 2 and "http.adr" in result.stderr
    tls = minimal(tmp_path, f"  addr: 127.0.0.1:0\n  tls:\n    certificate: {tmp_path}/no.crt\n"
                            f"    key: {tmp_path}/no.key\n")
    result = check(str(write(tmp_path, tls)))
    assert result.returncode == 2 and "http.tls.certificate" in result.stderr


def test_the_port_held_by_a_running_instance_does_not_fail_the_check(tmp_path: Path) -> None:
    """Like `nginx -t`, the check does not take the port: a registry listening on it does not fail the check."""
    with socket.socket() as running:
        running.bind(("127.0.0.1", 0))
        running.listen()
        port = running.getsockname()[1]
        result = check("--json", str(write(tmp_path, minimal(tmp_path, f"  addr: 127.0.0.1:{port}\n"))))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["listen"]["url"] == f"http://127.0.0.1:{port}"


def test_a_low_port_without_the_capability_fails_as_serve_would(tmp_path: Path) -> None:
    """Without CAP_NET_BIND_SERVICE, port 81 fails the check, and serve indeed cannot bind it."""
    config = str(write(tmp_path, minimal(tmp_path, "  addr: 127.0.0.1:81\n")))
    no_cap = ("setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service")
    result = check(config, prefix=no_cap)
    assert result.returncode == 2 and "CAP_NET_BIND_SERVICE" in result.stderr, result.stderr
    served = subprocess.run([*no_cap, K3SREG, "serve", config], capture_output=True, text=True, env=ENV,
                            timeout=60, check=False)
    assert served.returncode == 2 and "Permission denied" in served.stderr


def test_json_without_check_is_a_usage_error() -> None:
    """`serve --json` alone is refused with the fix (the server's own log is JSON through log.formatter)."""
    result = subprocess.run([K3SREG, "serve", "--json"], capture_output=True, text=True, env=ENV, timeout=60,
                            check=False)
    assert result.returncode == 2 and "--check" in result.stderr


@pytest.mark.parametrize(
    ("auth", "shown"),
    [
        ({"htpasswd": {"realm": "k3sreg", "path": "/etc/k3sreg-auth/htpasswd"}},
         "htpasswd (realm k3sreg, path /etc/k3sreg-auth/htpasswd)"),
        ({"token": {"realm": "https://auth.example/token", "service": "registry", "issuer": "auth",
                    "rootcertbundle": "/certs/bundle.pem"}},
         "token (realm https://auth.example/token, service registry, issuer auth)"),
    ],
)
def test_summary_names_the_auth_mode(auth: dict[str, Any], shown: str) -> None:
    """The auth line names the access controller and where its users come from."""
    settings = parse_settings({"version": "0.1", "storage": {"inmemory": {}}, "http": {"addr": "127.0.0.1:0"},
                               "auth": auth}, env={})
    lines = dict(describe(summary(settings, 1)))
    assert lines["auth"] == shown
