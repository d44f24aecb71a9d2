"""The pull-through cache: upstream registries behind the same repository interface as local storage.

`client.UpstreamClient` talks to one upstream (auth in `auth`), re-exported here with its result types.
"""

from k3sreg.upstream.answers import upstream_repository
from k3sreg.upstream.client import BlobStream, FetchedManifest, ManifestHead, UpstreamClient

__all__ = ["BlobStream", "FetchedManifest", "ManifestHead", "UpstreamClient", "upstream_repository"]
