"""`k3sreg deploy render` from the command line: one-line errors, files written, secrets kept off terminals."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k3sreg.errors import UsageError
from k3sreg.kube.render import render
from k3sreg.kube.spec import DeploySpec, check

K3SREG = str(Path(sys.executable).with_name("k3sreg"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "K3SREG_"))}


def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([K3SREG, "deploy", "render", *args], capture_output=True, text=True, env=ENV,
                          timeout=60, check=False, **kw)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--node-port", "80"], "30000-32767"),
        (["--storage-size", "20GB"], "such as 20Gi"),
        (["--namespace", "Registry"], "DNS-1123 label"),
        (["--host", "https://registry.local"], "e.g. registry.local"),
        (["--image", "Bad Image"], "--image"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], says: str) -> None:
    """A flag Kubernetes would refuse exits 1 with one line on stderr naming the fix, and prints nothing."""
    result = _run(*args)
    assert result.returncode == 2  # usage error (README exit-status scheme)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (DeploySpec(node_port=32768), "--node-port 32768"),
        (DeploySpec(storage_size="0Gi"), "--storage-size"),
        (DeploySpec(storage_class="Local_Path"), "--storage-class"),
        (DeploySpec(tls_secret="TLS"), "--tls-secret"),
        (DeploySpec(node_endpoint="10.0.0.5:30500"), "--node-endpoint"),
        (DeploySpec(node_ca_file="/etc/ca.crt"), "needs an https://"),
        (DeploySpec(node_username="u"), "K3SREG_NODE_PASSWORD"),
    ],
)
def test_spec_checks(spec: DeploySpec, says: str) -> None:
    """Each check names the flag and the fix."""
    with pytest.raises(UsageError, match=says.replace("+", r"\+")):
        check(spec)
    check(DeploySpec(node_port=30000, storage_size="1.5Ti", node_endpoint="https://registry.local",
                     node_ca_file="/etc/k3sreg-ca.crt"))


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"version": "0.1", "storage": {"inmemory": {}}, "http": {"addr": "127.0.0.1:5000"}}, "only on 127.0.0.1"),
        ({"version": "0.1", "storage": {"inmemory": {}}, "auth": {"htpasswd": {"realm": "r", "path": "/x"}}},
         "--htpasswd FILE"),
        ({"version": "0.1", "storage": {"inmemory": {}}, "http": {"tls": {"certificate": "/c", "key": "/k"}}},
         "--tls-secret"),
        ({"version": "0.1", "storage": {"filesystem": {"rootdirectory": "./data"}}}, "absolute path"),
    ],
)
def test_configs_that_cannot_run_in_a_pod(config: dict[str, object], says: str) -> None:
    """A config bound to loopback, with local files, its own TLS or a relative storage path is refused."""
    with pytest.raises(UsageError, match=says):
        render(DeploySpec(), config)


def test_config_problems_are_reported_like_serve(tmp_path: Path) -> None:
    """--config is validated as `k3sreg serve` would: every problem, one line each, exit 2."""
    bad = tmp_path / "config.yml"
    bad.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\nhttp:\n  adr: ':5000'\n")
    result = _run("--config", str(bad))
    assert result.returncode == 2 and "http.adr" in result.stderr and "Traceback" not in result.stderr


def test_out_dir_writes_files_kustomization_and_registries(tmp_path: Path) -> None:
    """--out DIR: one file per object, kustomization.yaml, nodes/registries.yaml; Secrets are 0600."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("ci:$2y$05$abcdefghijklmnopqrstuu5Zbq1M5cNm6yB3g8Y6m2B6hH2kS0Hn2\n")
    out = tmp_path / "k8s"
    (out).mkdir()
    (out / "09-secret-old.yaml").write_text("# Rendered by `k3sreg deploy render` (k3sreg 0.0.1).\nkind: Secret\n")
    (out / "mine.yaml").write_text("kind: ConfigMap\n")
    result = _run("--out", str(out), "--htpasswd", str(htpasswd))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.glob("*.yaml"))
    assert "kustomization.yaml" in names and "mine.yaml" in names and "09-secret-old.yaml" not in names
    resources = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert sorted(resources) == sorted(set(names) - {"kustomization.yaml", "mine.yaml"})
    secret = next(out.glob("*-secret-k3sreg-htpasswd.yaml"))
    assert secret.stat().st_mode & 0o777 == 0o600
    assert next(out.glob("*-deployment-k3sreg.yaml")).stat().st_mode & 0o777 == 0o644
    registries = yaml.safe_load((out / "nodes" / "registries.yaml").read_text())
    assert registries["mirrors"]["docker.io"]["endpoint"] == ["http://127.0.0.1:30500"]


def test_k3s_manifests_file_and_registries(tmp_path: Path) -> None:
    """--k3s-manifests FILE gets the whole stream (nothing on stdout); --registries FILE the nodes' file."""
    manifests, registries = tmp_path / "k3sreg.yaml", tmp_path / "registries.yaml"
    result = _run("--k3s-manifests", str(manifests), "--registries", str(registries), "--node-port", "30600")
    assert result.returncode == 0 and result.stdout == ""
    kinds = [d["kind"] for d in yaml.safe_load_all(manifests.read_text()) if d]
    assert kinds[0] == "Namespace" and "HelmChartConfig" in kinds
    assert "http://127.0.0.1:30600" in registries.read_text()


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run with stdout on a pseudo-terminal (as a user typing the command sees it)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([K3SREG, "deploy", "render", *args], stdout=follower, stderr=subprocess.PIPE,
                            env=ENV, text=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, shown.decode(), err


def test_secret_values_never_reach_a_terminal(tmp_path: Path) -> None:
    """With secrets, a terminal on stdout is refused unless --show-secrets; without secrets it prints."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("ci:$2y$05$abcdefghijklmnopqrstuu5Zbq1M5cNm6yB3g8Y6m2B6hH2kS0Hn2\n")
    code, shown, err = _on_a_terminal("--htpasswd", str(htpasswd))
    assert code == 2 and "kind: Secret" not in shown and "stdout is a terminal" in err
    code, shown, _ = _on_a_terminal("--htpasswd", str(htpasswd), "--show-secrets")
    assert code == 0 and "kind: Secret" in shown
    code, shown, _ = _on_a_terminal()
    assert code == 0 and "kind: Deployment" in shown
    piped = _run("--htpasswd", str(htpasswd))
    assert piped.returncode == 0 and "kind: Secret" in piped.stdout
