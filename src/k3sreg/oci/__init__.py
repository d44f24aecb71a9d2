"""Pure OCI logic: digests, names, media types, manifest parsing. Standard library only."""
