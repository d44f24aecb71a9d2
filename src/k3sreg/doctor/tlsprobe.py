"""Speaking to an endpoint below HTTP: the TLS handshake as containerd makes it, a plain-HTTP probe, and the
words for why a certificate is refused.

containerd trusts the system CAs plus the `ca` files of the host's hosts.toml, checks the name against the
certificate's SANs only (Go ignores the common name), and `skip_verify` turns the check off. On failure we
take the certificate anyway (a second handshake without verification) and say which of these it is:
expired, not yet valid, issued for other names, or issued by a CA the node does not trust.

"server gave HTTP response to HTTPS client" and its reverse are told apart by asking both ways: a TLS handshake
that fails on a server that answers a plain `GET` with `HTTP/...` is a plain-HTTP registry; a plain `GET`
answered with Go's "Client sent an HTTP request to an HTTPS server" (or cut) on a server that completes a TLS
handshake is an HTTPS registry.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from k3sreg.auth.certinfo import covers_host, expires_within, sans
from k3sreg.doctor.vantage import Vantage

GO_HTTPS_ANSWER = b"Client sent an HTTP request to an HTTPS server"


@dataclass(frozen=True)
class Handshake:
    """The outcome of one TLS handshake: `kind` ok, verify (certificate refused), tls (the protocol failed),
    closed (the server hung up) or timeout; `cert` the server's certificate when one was received."""

    kind: str
    detail: str = ""
    cert: x509.Certificate | None = None


@functools.lru_cache(maxsize=64)
def context(ca_pem: bytes | None, verify: bool, client: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A client TLS context as containerd builds one: system CAs plus `ca_pem`, SAN-only name checks; no
    verification at all with `verify` False. Contexts are shared: loading the system CAs takes tens of
    milliseconds, and blocks."""
    if verify:
        ctx = ssl.create_default_context()
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        ctx.hostname_checks_common_name = False
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client is not None:
        ctx.load_cert_chain(client[0], client[1] or None)
    return ctx


async def handshake(vantage: Vantage, hostname: str, port: int, ctx: ssl.SSLContext, timeout: float) -> Handshake:
    """One TLS handshake with hostname:port from the vantage point, the name checked as `hostname`."""
    address = await vantage.route(hostname, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(*address, ssl=ctx, server_hostname=hostname,
                                                      ssl_handshake_timeout=timeout)
    except ssl.SSLCertVerificationError as e:
        return Handshake("verify", e.verify_message or e.reason or str(e))
    except ssl.SSLError as e:
        return Handshake("tls", e.reason or str(e))
    except TimeoutError:
        return Handshake("timeout", f"no TLS answer within {timeout:g} s")
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
        return Handshake("closed", str(e) or type(e).__name__)
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    writer.close()
    return Handshake("ok", cert=x509.load_der_x509_certificate(der) if der else None)


async def plain_answer(vantage: Vantage, hostname: str, port: int, host_header: str, path: str,
                       timeout: float) -> bytes | None:
    """The first bytes a server sends back to a plain `GET path` (b"" when it hangs up without a word);
    None when no connection could be made."""
    address = await vantage.route(hostname, port)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(*address)
    except (TimeoutError, OSError):
        return None
    data = b""
    try:
        async with asyncio.timeout(timeout):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: k3sreg-doctor\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            while len(data) < 4096 and (chunk := await reader.read(4096 - len(data))):
                data += chunk
    except (TimeoutError, ConnectionError, OSError):
        pass  # what arrived before the server went quiet or hung up is the answer
    finally:
        writer.close()
    return data


def speaks_http(answer: bytes | None) -> bool:
    """Whether `answer` is an HTTP response that is not Go's refusal of plain HTTP on an HTTPS port."""
    return answer is not None and answer.startswith(b"HTTP/") and GO_HTTPS_ANSWER not in answer


def describe_cert(cert: x509.Certificate) -> str:
    """`for <names>, issued by <issuer>, valid until <date>`."""
    dns, ips = sans(cert)
    return (f"for {', '.join(dns + ips) or '(no SAN)'}, issued by {cert.issuer.rfc4514_string()}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d}")


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def refusal(cert: x509.Certificate, hostname: str, host: str, cas: list[x509.Certificate], ca_files: tuple[str, ...],
            said: str, now: datetime.datetime | None = None) -> tuple[str, str]:
    """(what is wrong, the fix) for a server certificate the node refused; `said` is the TLS library's reason,
    used when none of the known causes applies."""
    moment = now or datetime.datetime.now(datetime.UTC)
    issuer = cert.issuer.rfc4514_string()
    if cert.not_valid_after_utc <= moment:
        return (f"the certificate of {host} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                f"issue a new one (`k3sreg certs issue -H {hostname}`), install it in the registry and restart it")
    if cert.not_valid_before_utc > moment:
        return (f"the certificate of {host} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                "set the node's clock right (NTP), or reissue the certificate")
    if not covers_host(cert, hostname):
        dns, ips = sans(cert)
        return (f"the certificate of {host} is for {', '.join(dns + ips) or 'no name (no SAN)'}, not {hostname}",
                f"issue one that also names {hostname} (`k3sreg certs issue -H {hostname}`), or use a name it has")
    where = ", ".join(ca_files)
    if cas and not any(_issued_by(cert, ca) for ca in cas):
        same_name = any(ca.subject == cert.issuer for ca in cas)
        why = " (a CA of the same name, but another key: made by another `certs init`)" if same_name else ""
        return (f"the certificate of {host} was issued by {issuer}, not by the CA in {where}{why}",
                f"put the CA that issued it into {where} (the ca.crt of `k3sreg certs init`)")
    if cert.issuer == cert.subject and not cas:
        return (f"the certificate of {host} is self-signed and no ca_file is set for it",
                f"set configs.\"{host}\".tls.ca_file to that certificate (or the CA that should issue it)")
    if not cas:
        return (f"the certificate of {host} was issued by {issuer}, which the node's system CAs do not trust",
                f"set configs.\"{host}\".tls.ca_file to that CA's certificate in registries.yaml")
    return (f"the certificate of {host} is refused: {said}", f"check the chain the registry sends and {where}")


def expiring(cert: x509.Certificate, days: float = 30) -> bool:
    """Whether the certificate runs out within `days`."""
    return expires_within(cert, days)
