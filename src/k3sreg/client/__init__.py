"""The OCI registry client: manifests, blobs and tags of a remote registry, with its auth, retries and proxies."""

from k3sreg.client.registry import BlobStream, FetchedManifest, ManifestHead, UpstreamClient

__all__ = ["BlobStream", "FetchedManifest", "ManifestHead", "UpstreamClient"]
