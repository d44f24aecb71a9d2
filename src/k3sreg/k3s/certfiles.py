"""What `mirrors validate` can tell about the certificate files a registries.yaml names, when they are readable
where it runs (on a node, or next to the CA on an admin's machine): expired, expiring, or not for the host.

    ca_file    every certificate: expired -> error, expiring within 30 days -> warning; a file holding no CA
               (a server's own certificate used as the trust anchor) that does not cover the host -> error
    cert_file  the node's client certificate: expired -> error, expiring soon -> warning

`k3sreg.auth.certinfo` (and with it `cryptography`) is imported only when such a file exists, so that
validating a file without TLS settings stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class CertProblem:
    """One problem with a certificate file: severity, code, what goes wrong, the fix."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    fix: str


RENEW = "renew it with `k3sreg certs issue` (or `k3sreg certs init` for a CA) and roll it out with " \
        "`k3sreg nodes apply --certs DIR`"


def readable(path: str) -> bool:
    """True for an absolute path to a file this process can read."""
    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.R_OK)


def check_cert_file(path: str, host: str, kind: Literal["ca_file", "cert_file"]) -> list[CertProblem]:
    """The problems of certificate file `path` (readable here) named as `kind` for registry `host`."""
    from k3sreg.auth.certinfo import EXPIRY_WARNING_DAYS, covers_host, expires_within, is_ca, read_certificates
    from k3sreg.errors import UsageError

    try:
        certs = read_certificates(Path(path))
    except UsageError as exc:
        return [CertProblem("error", "tls-file-not-a-certificate", f"{exc}: containerd fails every request to "
                            f"{host}", "point it at a PEM certificate file")]
    problems = []
    for cert in certs:
        subject = cert.subject.rfc4514_string() or "(no subject)"
        when = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        if expires_within(cert, 0):
            problems.append(CertProblem("error", "tls-cert-expired", f"{path}: {subject} expired on {when}: "
                                        f"containerd refuses TLS to {host}", RENEW))
        elif expires_within(cert, EXPIRY_WARNING_DAYS):
            problems.append(CertProblem("warning", "tls-cert-expiring", f"{path}: {subject} expires on {when}, "
                                        f"within {EXPIRY_WARNING_DAYS} days", RENEW))
    if kind == "ca_file" and certs and not any(is_ca(c) for c in certs) and not any(covers_host(c, host)
                                                                                     for c in certs):
        problems.append(CertProblem("error", "tls-host-not-covered", f"{path} holds no CA, and its certificate "
                                    f"does not name {host}: containerd refuses the registry's certificate",
                                    f"issue one that names it (`k3sreg certs issue --host "
                                    f"{host.rsplit(':', 1)[0] if host.count(':') == 1 else host}`), or give the CA "
                                    "(ca.crt) instead"))
    return problems
