"""`make bench`: k3sreg against docker-registry 2.8.2 and nginx (sendfile), side by side, on the same content.

Run from the repository root as `.venv/bin/python -m bench [--quick] [--json] [--runs N] [--servers ...]`.
See docs/benchmarks.md for what each figure means.
"""
