"""The OCI registry client: manifests, blobs and tags of a remote registry, and pushes to it.

`RegistryClient` is the face; `transport` carries every request (auth, retries, redirects, proxies, rate
limits, errors), `session.new_session` is the default HTTP session. Knows nothing of storage or the server.
"""

from k3sreg.client.registry import BlobStream, FetchedManifest, ManifestHead, RegistryClient
from k3sreg.client.retry import RetryPolicy
from k3sreg.client.session import new_session

__all__ = ["BlobStream", "FetchedManifest", "ManifestHead", "RegistryClient", "RetryPolicy", "new_session"]
