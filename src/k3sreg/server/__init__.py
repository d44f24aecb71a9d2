"""The HTTP server: the only importer of aiohttp.web."""
