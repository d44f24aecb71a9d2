"""A pull as containerd makes it, from the node: the test resolve of an image, and the public fallback.

    resolve    HEAD <root>/<repository>/manifests/<tag>?ns=<registry> at each host in the order `mirrors
               explain` prints (the hosts.toml containerd uses), with each host's TLS and credentials, until one
               answers 200, as containerd moves on after an error or a 404
    fallback   for each mirrored registry: whether the last host of a pull is a public registry, and whether
               the node reaches it (in an air gap a pull that falls back there hangs)
"""

from __future__ import annotations

from collections.abc import Mapping

from yarl import URL

from k3sreg.client.answers import describe_failure
from k3sreg.client.auth import pull_scope
from k3sreg.client.registry import DEFAULT_ACCEPT
from k3sreg.client.retry import NETWORK_ERRORS
from k3sreg.doctor import tlsprobe
from k3sreg.doctor.hosts import table_for
from k3sreg.doctor.model import Finding, failed, passed, warned
from k3sreg.doctor.netchecks import NetContext, Reached, registry_client
from k3sreg.errors import ManifestUnknown, NameUnknown, RegistryError
from k3sreg.k3s.explain import Hop, explain
from k3sreg.k3s.model import RegistriesYaml
from k3sreg.oci.reference import parse_image

_NO_DEFAULT = ("set disable-default-registry-endpoint: true in K3s's config.yaml (v1.26.13, v1.27.10, v1.28.6, "
               "v1.29.1 or later) and restart K3s")


def _reached(ctx: NetContext, text: str | None, scheme: str, host: str) -> Reached | None:
    ep = table_for(text, scheme, host) if text else None
    if scheme != "https":
        return None
    pem = b""
    for path in ep.ca if ep else ():
        content = ctx.facts.file(path).content
        pem += (content or b"") + b"\n"
    client = ep.client[0] if ep is not None and ep.client and ctx.local else None
    skip = bool(ep and ep.skip_verify)
    return Reached(tlsprobe.context(pem.strip() or None, not skip, client), pem.strip() or None, client)


async def _ask(ctx: NetContext, hop: Hop, text: str | None) -> str:
    """The digest the host answers for the hop's manifest; RegistryError when it does not."""
    _, url = hop.url.split(" ", 1)
    scheme = url.split("://", 1)[0]
    client = registry_client(ctx, scheme, hop.host, _reached(ctx, text, scheme, hop.host),
                             ctx.credentials.get(hop.host))
    try:
        response = await client.transport.request(
            "HEAD", URL(url, encoded=True), scope=pull_scope(hop.repository), where=hop.host,
            missing=ManifestUnknown, headers={"Accept": ", ".join(DEFAULT_ACCEPT), "User-Agent": "k3sreg-doctor"})
        response.release()
        return response.headers.get("Docker-Content-Digest", "")
    finally:
        await client.close()


def _why(e: RegistryError) -> str:
    """What a host answered, without the request's details (the hop names the request)."""
    if e.__cause__ is not None and isinstance(e.__cause__, NETWORK_ERRORS):
        return describe_failure(e.__cause__, 0)
    return str(e).removeprefix("upstream ")


async def check_resolve(image: str, files: Mapping[str, str], registries: RegistriesYaml | None, ctx: NetContext,
                        skip_hosts: set[str], broken: Mapping[str, str]) -> Finding:
    """resolve: which host answers for `image`, after which failures; fail when none does. Hosts in `broken`
    (host -> the check that failed there) are not asked again."""
    plan = explain(image, files, registries, "k3s")
    text = files.get(plan.hosts_file) if plan.hosts_file else None
    trail: list[str] = []
    missing_at_mirror = False
    for index, hop in enumerate(plan.resolve):
        if hop.host in skip_hosts:
            trail.append(f"{hop.host} (the embedded mirror) not asked")
            continue
        if hop.host in broken:
            trail.append(f"{hop.host} failed its {broken[hop.host]} check")
            continue
        try:
            digest = await _ask(ctx, hop, text)
        except RegistryError as e:
            missing_at_mirror |= isinstance(e, (ManifestUnknown, NameUnknown)) and not hop.public
            reason = _why(e)
            trail.append(reason if reason.startswith(hop.host) else f"{hop.host}: {reason}")
            continue
        after = f", after: {'; '.join(trail)}" if trail else ""
        seen = f"{plan.image} resolves at {hop.url.split(' ', 1)[1]}{' -> ' + digest if digest else ''}{after}"
        if hop.public and index > 0:
            return warned("resolve", plan.image, f"the mirrors did not answer; {seen}",
                          "put the image into the registry (or give it an upstream for "
                          f"{plan.registry}), and fix what the mirrors answered")
        return passed("resolve", plan.image, seen)
    if not plan.resolve:
        return failed("resolve", plan.image, f"no host can resolve {plan.image} ({plan.hosts_file} allows none)",
                      "give the mirror the pull and resolve capabilities")
    if missing_at_mirror:
        ref = parse_image(image)
        fix = (f"push it into the registry (`skopeo copy ... docker://REGISTRY/{ref.repository}:{ref.tag or 'TAG'}`)"
               f", or give the registry an upstream named {ref.registry} to pull it through")
    elif broken:
        fix = "fix what the checks of those hosts found"
    else:
        fix = "make the first endpoint answer"
    return failed("resolve", plan.image, f"no host resolves {plan.image}: {'; '.join(trail)}", fix)


async def check_fallback(registries: RegistriesYaml, files: Mapping[str, str], ctx: NetContext) -> list[Finding]:
    """fallback: for each mirrored registry, the public host a pull ends on, and whether the node reaches it."""
    out = []
    asked: dict[str, str | None] = {}
    for key in sorted(registries.mirrors):
        if key == "*":
            continue
        plan = explain(f"{key}/k3sreg/doctor:probe", files, registries, "k3s")
        if plan.hosts_file is None:
            continue  # the mirror is not in effect (hosts.current says why) or has no endpoint (Spegel only)
        if not plan.resolve or not plan.resolve[-1].public:
            out.append(passed("fallback", key, f"pulls of {key} never go past the mirrors (no public registry "
                              "at the end)"))
            continue
        last = plan.resolve[-1]
        scheme = last.url.split(" ", 1)[1].split("://", 1)[0]
        name, _, port = last.host.rpartition(":") if last.host.count(":") == 1 else (last.host, "", "")
        target = (name, int(port) if port else (443 if scheme == "https" else 80))
        if last.host not in asked:
            asked[last.host] = await ctx.vantage.connect(*target, ctx.timeout)
        why = asked[last.host]
        if why is None:
            out.append(passed("fallback", key, f"when the mirrors fail, pulls of {key} go to {last.host}, which "
                              "the node reaches"))
        else:
            out.append(warned("fallback", key, f"when the mirrors fail, pulls of {key} go to {last.host}, which the "
                              f"node cannot reach ({why}): such a pull hangs until containerd gives up",
                              _NO_DEFAULT))
    return out
