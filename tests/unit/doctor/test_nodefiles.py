"""The checks of a node's files: registries.yaml, what K3s generated from it, credentials, release, Spegel."""

from __future__ import annotations

from k3sreg.doctor import nodefiles
from k3sreg.doctor.gather import Facts, FileFact
from k3sreg.doctor.model import Finding
from k3sreg.doctor.setup import Setup, decide
from k3sreg.doctor.versions import Runtime, Version
from k3sreg.k3s import containerd_auth_toml, load_registries
from k3sreg.k3s.render import RenderOptions, render_hosts
from tests.unit.doctor.facts import CERTS, CONFIG_TOML, K3S_VERSION, REGISTRIES, facts

MIRROR = 'mirrors:\n  docker.io:\n    endpoint: ["https://10.0.0.5:30500"]\n'
WITH_AUTH = MIRROR + 'configs:\n  "10.0.0.5:30500":\n    auth: {username: robot, password: s3cret}\n'


def agent(f: Facts, **changes: object) -> Setup:
    """The setup of a k3s agent node with `f`."""
    setup = decide(f, None)
    setup.role, setup.service = "agent", "k3s-agent"
    for key, value in changes.items():
        setattr(setup, key, value)
    return setup


def started(text: str, **options: bool) -> dict[str, str | bytes]:
    """The files of a node whose K3s started with registries.yaml `text`."""
    registries = load_registries(text)
    files: dict[str, str | bytes] = {REGISTRIES: text}
    for rel, content in render_hosts(registries, RenderOptions(**options)).items():
        files[f"{CERTS}/{rel}"] = content
    files[CONFIG_TOML] = containerd_auth_toml(registries)
    return files


def run(check: str, f: Facts, setup: Setup | None = None) -> list[Finding]:
    """The findings of one file check (`hosts`, `credentials`, `version`, `embedded`) on facts `f`."""
    setup = setup or agent(f)
    _, loaded = nodefiles.check_registries(setup, f)
    return list(getattr(nodefiles, f"check_{check}")(setup, f, loaded) if check in ("hosts", "credentials")
                else getattr(nodefiles, f"check_{check}")(setup, loaded))


def statuses(found: list[Finding]) -> list[tuple[str, str]]:
    """(check, status) of each finding."""
    return [(f.check, f.status) for f in found]


def test_missing_registries_yaml_fails_with_the_rollout_fix() -> None:
    """No file: registries.file fails and says how to write and roll it out."""
    found, loaded = nodefiles.check_registries(agent(facts()), facts())
    assert statuses(found) == [("registries.file", "fail")] and loaded.registries is None
    assert "k3sreg nodes apply" in found[0].fix


def test_credentials_readable_by_others_warn() -> None:
    """A registries.yaml with credentials and mode 0644 warns with the chmod fix."""
    f = facts({REGISTRIES: WITH_AUTH}, modes={REGISTRIES: 0o644})
    found, _ = nodefiles.check_registries(agent(f), f)
    assert found[0].status == "warn" and "chmod 600" in found[0].fix


def test_validator_findings_become_doctor_findings() -> None:
    """The guide's `insecureskipverify` is a failing registries.valid finding with its line and fix."""
    text = 'configs:\n  "127.0.0.1:30500":\n    tls:\n      insecureskipverify: true\n'
    f = facts({REGISTRIES: text})
    found, _ = nodefiles.check_registries(agent(f), f)
    valid = [x for x in found if x.check == "registries.valid"]
    assert [x.status for x in valid] == ["fail"]
    assert valid[0].subject.startswith(f"{REGISTRIES}:4:7: ") and "insecure_skip_verify" in valid[0].fix


def test_hosts_as_k3s_writes_them_pass() -> None:
    """Files K3s generated from this registries.yaml (TOML compared, not bytes) pass."""
    files = started(MIRROR)
    rel = f"{CERTS}/docker.io/hosts.toml"
    files[rel] = str(files[rel]).replace("\n[", "\n\n\n[")  # an older release's blank lines
    assert statuses(run("hosts", facts(files, dirs=(CERTS,)))) == [("hosts.current", "pass")]


def test_registries_yaml_changed_since_the_start_fails_naming_the_service() -> None:
    """A mirror added after the start: hosts.current fails, listing what is missing and the restart."""
    files = started(MIRROR)
    files[REGISTRIES] = MIRROR + '  quay.io:\n    endpoint: ["https://10.0.0.5:30500"]\n'
    found = run("hosts", facts(files, dirs=(CERTS,), mtimes={REGISTRIES: 2000}))
    assert statuses(found) == [("hosts.current", "fail")]
    assert "not been restarted" in found[0].seen and "missing quay.io" in found[0].seen
    assert found[0].fix == "restart K3s: systemctl restart k3s-agent"


def test_left_over_and_different_directories_are_named() -> None:
    """A generated directory the file no longer has and one with other content are both stale."""
    files = started(MIRROR + '  ghcr.io:\n    endpoint: ["https://10.0.0.5:30500"]\n')
    files[REGISTRIES] = MIRROR.replace("30500", "30501")
    found = run("hosts", facts(files, dirs=(CERTS,)))
    assert "different docker.io" in found[0].seen and "left over ghcr.io" in found[0].seen


def test_newer_registries_yaml_generating_the_same_files_passes_with_a_note() -> None:
    """Touched but unchanged in effect: pass, saying so."""
    found = run("hosts", facts(started(MIRROR), dirs=(CERTS,), mtimes={REGISTRIES: 5000}))
    assert statuses(found) == [("hosts.current", "pass")] and "newer" in found[0].seen


def test_no_certs_d_means_no_mirror_in_effect() -> None:
    """Without K3s's certs.d no mirror works; the fix restarts K3s."""
    found = run("hosts", facts({REGISTRIES: MIRROR}))
    assert statuses(found) == [("hosts.current", "fail")] and "no mirror is in effect" in found[0].seen


def test_an_old_release_writes_config_toml_and_is_not_compared() -> None:
    """Before January 2024 K3s wrote no hosts.toml: nothing to compare."""
    f = facts({REGISTRIES: MIRROR})
    setup = agent(f, runtime=Runtime("k3s", Version(1, 27, 9), None))
    found = run("hosts", f, setup)
    assert statuses(found) == [("hosts.current", "pass")] and "not compared" in found[0].seen


def test_credentials_in_config_toml() -> None:
    """Credentials pass when config.toml carries them; missing or changed ones fail with the restart."""
    assert statuses(run("credentials", facts(started(WITH_AUTH)))) == [("credentials.loaded", "pass")]
    stale = started(WITH_AUTH)
    stale[CONFIG_TOML] = containerd_auth_toml(load_registries(MIRROR))
    found = run("credentials", facts(stale))
    assert statuses(found) == [("credentials.loaded", "fail")] and "no credentials for it" in found[0].seen
    changed = started(WITH_AUTH)
    changed[REGISTRIES] = str(changed[REGISTRIES]).replace("s3cret", "other")
    found = run("credentials", facts(changed))
    assert "differ from registries.yaml" in found[0].seen and "s3cret" not in found[0].seen + found[0].fix
    v3 = started(WITH_AUTH)
    v3[CONFIG_TOML] = containerd_auth_toml(load_registries(WITH_AUTH), version=3)
    assert statuses(run("credentials", facts(v3))) == [("credentials.loaded", "pass")]
    gone = started(WITH_AUTH)
    del gone[CONFIG_TOML]
    assert "no /var/lib" in run("credentials", facts(gone))[0].seen


def test_release_rules_and_what_a_release_cannot_do() -> None:
    """The release passes with its rules; a wildcard, the no-default option or Spegel on a release without
    them fail; an IPv6 endpoint on containerd 1.7 fails."""
    f = facts({REGISTRIES: MIRROR}, commands=K3S_VERSION)
    found = run("version", f, agent(f))
    assert statuses(found) == [("k3s.version", "pass")] and "k3s v1.31.4+k3s1, containerd v1.7.23-k3s2" in \
        found[0].seen
    old = Runtime("k3s", Version(1, 26, 10), None)
    wild = facts({REGISTRIES: 'mirrors:\n  "*":\n    endpoint: ["https://10.0.0.5:30500"]\n'})
    assert "uses \"*\"" in run("version", wild, agent(wild, runtime=old))[0].seen
    f2 = facts({REGISTRIES: MIRROR})
    found = run("version", f2, agent(f2, runtime=old, no_default=True, no_default_from="config.yaml",
                                     embedded=True, embedded_from="config.yaml"))
    assert statuses(found) == [("k3s.version", "fail")] * 2
    v6 = facts({REGISTRIES: 'mirrors:\n  docker.io:\n    endpoint: ["https://[fd00::5]:30500"]\n'})
    found = run("version", v6, agent(v6, runtime=Runtime("k3s", Version(1, 30, 2), Version(1, 7, 17))))
    assert "IPv6" in found[0].seen and found[0].status == "fail"
    nothing = facts({REGISTRIES: MIRROR})
    assert statuses(run("version", nothing, agent(nothing))) == [("k3s.version", "warn")]


def test_embedded_registry() -> None:
    """Off passes; on an agent's own config fails; on without mirrors warns; experimental releases warn."""
    f = facts({REGISTRIES: MIRROR})
    assert run("embedded", f, agent(f))[0].seen == "embedded registry (Spegel) off"
    own = agent(f, embedded=True, embedded_from="/etc/rancher/k3s/config.yaml")
    assert statuses(run("embedded", f, own)) == [("k3s.embedded", "fail")]
    empty = facts({REGISTRIES: "configs: {}\n"})
    server = agent(empty, role="server", embedded=True, embedded_from="x")
    assert statuses(run("embedded", empty, server)) == [("k3s.embedded", "warn")]
    early = agent(f, role="server", embedded=True, embedded_from="x", runtime=Runtime("k3s", Version(1, 29, 5), None))
    assert "experimental" in run("embedded", f, early)[0].seen


def test_unreadable_certs_d_and_config_toml_warn_instead_of_guessing() -> None:
    """Run as a user who cannot read K3s's files, doctor says so rather than reporting them stale or missing."""
    f = facts({REGISTRIES: WITH_AUTH})
    f.dirs[CERTS] = "unreadable"
    f.files[CONFIG_TOML] = FileFact(CONFIG_TOML, "unreadable", 0, 0o600, 1)
    assert statuses(run("hosts", f)) == [("hosts.current", "warn")]
    found = run("credentials", f)
    assert statuses(found) == [("credentials.loaded", "warn")] and "run doctor as root" in found[0].fix
