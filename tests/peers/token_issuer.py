"""A small token service for docker-registry's `auth: token`, so the Bearer flow runs against a real registry.

API:
  ``TokenIssuer(workdir, users={"alice": "s3cret"}, anonymous=False, grant_anonymous=False, lifetime=300,
  field="token", host="127.0.0.1")``, a context manager (or ``start()``/``stop()``) serving
  ``GET /token?service=S&scope=T...`` on <host>:<free port> (``host`` an address of this machine, such as the
  bridge of the namespace nodes):
    * Basic credentials must match ``users``; without any, the request is refused (401) unless ``anonymous``,
      in which case the token grants nothing (as Docker Hub does for private repositories), or what it asked
      when ``grant_anonymous`` is also set (public repositories); ``grant_anonymous`` alone implies ``anonymous``;
    * the answer is ``{field: JWT, "expires_in": lifetime, "issued_at": ...}``; ``field`` may be ``token``,
      ``access_token`` or ``both``; ``lifetime=None`` leaves ``expires_in`` out;
    * the JWT is ES256, signed by a self-signed P-256 certificate sent in the ``x5c`` header, with
      ``iss`` = ``issuer``, ``aud`` = the requested service, and ``access`` granting what each scope asked.
  ``registry_auth()`` is the ``auth:`` section for ``tests.peers.registry.DockerRegistry(config=...)``;
  ``realm`` (the token URL), ``service``, ``issuer``, ``bundle`` (the certificate file docker-registry trusts);
  ``requests`` lists ``(user or None, [scopes])`` of every token request; ``refuse_all`` turns every request down.
  The options are attributes too, so a test may change them while the issuer runs.

Distribution 2.8.2 (registry/auth/token) checks: issuer, audience (a single string), exp/nbf with 60 s leeway, and
the signature with the x5c leaf, which must chain to a certificate of ``rootcertbundle``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.peers.registry import write_self_signed


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS: ES256 over `header.claims`, the signature as raw r||s (32 bytes each)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def parse_scope(scope: str) -> dict[str, Any] | None:
    """`repository:name:pull,push` as a token `access` entry; None when it is not of that form."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    # Repository names never hold ':', but a registry host with a port inside the name would; keep the middle.
    return {"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")}


class TokenIssuer:
    """A token service on `host` (127.0.0.1) that docker-registry 2.8.2 trusts (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        anonymous: bool = False,
        grant_anonymous: bool = False,
        lifetime: int | None = 300,
        field: str = "token",
        issuer: str = "k3sreg-test-issuer",
        service: str = "k3sreg-test-registry",
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.users = dict(users or {})
        self.anonymous = anonymous
        self.lifetime = lifetime
        self.field = field
        self.issuer = issuer
        self.service = service
        self.refuse_all = False
        self.grant_anonymous = grant_anonymous
        self.requests: list[tuple[str | None, list[str]]] = []
        self._lock = threading.Lock()
        self.bundle, key_path = write_self_signed(workdir / "token-issuer")
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._key = key
        cert = x509.load_pem_x509_certificate(self.bundle.read_bytes())
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        """The token URL to put in docker-registry's `auth.token.realm`."""
        assert self._server is not None, "start() the issuer first"
        return f"http://{self.host}:{self._server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, Any]:
        """The `auth:` section of a docker-registry config that trusts this issuer."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.bundle),
            }
        }

    def token(self, subject: str, service: str, scopes: list[str], grant: bool = True) -> str:
        """A signed token for `subject`; `grant=False` gives one with an empty `access` list."""
        now = int(time.time())
        access = [entry for s in scopes if (entry := parse_scope(s))] if grant else []
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + (self.lifetime or 60),
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return sign_es256(self._key, {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}, claims)

    def answer(self, authorization: str | None, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one token request; records it."""
        user = None
        if authorization and authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self._record(name, query)
                return 401, {"details": "incorrect username or password"}
            user = name
        self._record(user, query)
        if self.refuse_all or (user is None and not (self.anonymous or self.grant_anonymous)):
            return 401, {"details": "authentication required"}
        service = query.get("service", [""])[0]
        grant = user is not None or self.grant_anonymous
        token = self.token(user or "anonymous", service, query.get("scope", []), grant=grant)
        body: dict[str, Any] = {"issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.lifetime is not None:
            body["expires_in"] = self.lifetime
        for name in ("token", "access_token") if self.field == "both" else (self.field,):
            body[name] = token
        return 200, body

    def _record(self, user: str | None, query: dict[str, list[str]]) -> None:
        with self._lock:
            self.requests.append((user, list(query.get("scope", []))))

    def start(self) -> Self:
        """Serve in a background thread on a free port."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/token":
                    status, body = 404, {"details": "not found"}
                else:
                    status, body = issuer.answer(self.headers.get("Authorization"), parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
