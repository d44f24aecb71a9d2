"""Whether each upstream can be reached now: one `GET /v2/` with its credentials, bounded in time, no retries.

An upstream that answers at all is reachable, whatever it answers: 200, or a refusal of the credentials
(reported in `detail`, since pulls then fail too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from yarl import URL

from k3sreg.client.registry import RegistryClient
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import Denied, NameUnknown, RegistryError, Unauthorized

PROBE_SECONDS = 5.0


async def probe(settings: UpstreamSettings, client: RegistryClient) -> dict[str, Any]:
    """`{name, offline, reachable, detail, seconds}` for one upstream (`reachable` None when offline)."""
    entry: dict[str, Any] = {"name": settings.name, "offline": settings.offline, "reachable": None, "detail": "",
                             "seconds": 0.0}
    if settings.offline:
        entry["detail"] = "offline: never contacted"
        return entry
    started = time.monotonic()
    transport = client.transport
    try:
        async with asyncio.timeout(min(PROBE_SECONDS, settings.timeout)):
            response = await transport.request("GET", transport.base.join(URL("v2/")), scope="",
                                               where=f"upstream {settings.name}", missing=NameUnknown)
            response.release()
        entry["reachable"], entry["detail"] = True, f"{transport.display} answers GET /v2/"
    except (Unauthorized, Denied) as e:
        entry["reachable"], entry["detail"] = True, f"{transport.display} answers, but refuses the credentials: {e}"
    except RegistryError as e:
        entry["reachable"], entry["detail"] = False, str(e)
    except TimeoutError:
        entry["reachable"] = False
        entry["detail"] = f"upstream {settings.name} ({transport.display}): no answer within {PROBE_SECONDS:g} s"
    entry["seconds"] = round(time.monotonic() - started, 3)
    return entry


async def probe_all(upstreams: Sequence[UpstreamSettings], clients: Mapping[str, RegistryClient]
                    ) -> list[dict[str, Any]]:
    """`probe` of every upstream, at the same time, in configuration order."""
    return list(await asyncio.gather(*(probe(u, clients[u.name]) for u in upstreams)))
