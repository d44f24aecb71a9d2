"""The pull-through cache: upstream registries behind the same repository interface as local storage.

Routing (`routing`) picks the upstream of a request; `cache` answers it from storage or through the registry
client (`k3sreg.client`); `fill` fetches each blob once for every waiting client; `evict` keeps the cache in bounds.
"""
