"""No password, token or private key in a log line, exception message, denial, answer or process argument."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from k3sreg.auth.certs import Issued, key_pem
from k3sreg.auth.controller import AccessController, HtpasswdAuthenticator, RequestInfo, TokenAuthenticator
from k3sreg.auth.header import basic_authorization, parse_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.keys import Trust
from k3sreg.auth.rules import AccessRules, Rule
from k3sreg.auth.scopes import Route, required_access
from k3sreg.auth.service import TokenService
from k3sreg.auth.signing import KeyRing, StaticSigner
from k3sreg.auth.tokens import TokenVerifier
from k3sreg.errors import K3sregError
from tests.peers.registry import K3SREG_BIN
from tests.unit.auth.conftest import PASSWORD, SECRETS
from tests.unit.auth.tokenkit import ISSUER, SERVICE, claims, der_b64, mint


def texts(*objects: Any) -> str:
    """Every way an object could end up in a log line: str, repr and, for denials, their log phrase."""
    out = []
    for obj in objects:
        out += [str(obj), repr(obj)]
        describe = getattr(obj, "describe", None)
        if callable(describe):
            out.append(describe())
        for attr in ("denial", "body", "headers"):
            if hasattr(obj, attr):
                out.append(texts(getattr(obj, attr)))
    return "\n".join(out)


def test_attack_battery_leaks_nothing(tmp_path: Path, htpasswd_path: Path, ca: Issued, signer: Issued,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """Run every refusal path with known secrets; none of them shows in what comes back or is logged."""
    caplog.set_level(logging.DEBUG)
    users = HtpasswdFile(htpasswd_path)
    rules = AccessRules([Rule.of(users=["alice"], repositories=["a"], actions=["pull"])])
    ring = KeyRing(tmp_path / "keys.json", lifetime=300)
    SECRETS.add(key_pem(ring.signing_key().key).decode())  # type: ignore[arg-type]
    service = TokenService(ISSUER, SERVICE, users, rules, ring)
    verifier = TokenVerifier(ISSUER, SERVICE, Trust([ca.cert]), own=ring)
    token = mint(signer.key, claims(), x5c=[der_b64(signer.cert)])
    expired = mint(signer.key, claims(exp=int(time.time()) - 3600), x5c=[der_b64(signer.cert)])
    wrong = "wrong-" + PASSWORD
    SECRETS.add(wrong)
    seen: list[str] = []
    for header in ([basic_authorization("alice", wrong)], [basic_authorization("mallory", PASSWORD)],
                   [basic_authorization("alice", PASSWORD)] * 2, [f"Bearer {token}", f"Bearer {token}"],
                   [f"Bearer {expired}"], ["Basic " + "x" * 9000 + PASSWORD], [f"Digest {PASSWORD}"]):
        seen.append(texts(parse_authorization(header)))
        for controller in (AccessController("htpasswd", HtpasswdAuthenticator(users), "r", rules=rules),
                           AccessController("token", TokenAuthenticator(verifier), "r", SERVICE)):
            need = required_access("PUT", Route.MANIFEST, "b")
            seen.append(texts(controller.decide(RequestInfo(header, need, "10.0.0.1"))))
        seen.append(texts(service.answer_get(header, {"scope": ["repository:a:push"]}, "10.0.0.2")))
    seen.append(texts(service.answer_post({"grant_type": ["password"], "username": ["alice"],
                                           "password": [wrong]}, "c")))
    seen.append(texts(verifier.verify(expired), verifier.verify(token[:-4] + "AAAA"), ring.signing_key()))
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(key_pem(signer.key)[:-40])  # damaged key: the error must not quote it
    try:
        StaticSigner(key_file)
    except K3sregError as exc:
        seen.append(texts(exc))
    joined = "\n".join(seen) + caplog.text
    leaked = [s for s in SECRETS if s and s in joined]
    assert not leaked, f"{len(leaked)} secret(s) leaked (lengths {[len(s) for s in leaked]})"
    assert "PRIVATE KEY" not in joined


def test_htpasswd_command_keeps_the_password_out_of_argv(tmp_path: Path) -> None:
    """The real `k3sreg htpasswd set` process is started with the password on stdin; its argv never holds it."""
    secret = "argv-check-" + PASSWORD
    SECRETS.add(secret)
    argv = [str(K3SREG_BIN), "htpasswd", "set", str(tmp_path / "h"), "ci", "--password-stdin", "--cost", "4"]
    done = subprocess.run(argv, input=secret + "\n", capture_output=True, text=True, check=True)
    assert secret not in " ".join(argv) and secret not in done.stdout + done.stderr
    assert (tmp_path / "h").read_text().startswith("ci:$2y$04$")
