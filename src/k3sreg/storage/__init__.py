"""The content store: drivers below, the registry's repositories above. Knows nothing of HTTP."""
