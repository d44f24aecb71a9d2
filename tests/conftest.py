"""Session-wide fixtures shared by every test directory.

``oci_layout``: the standard deterministic OCI image layout of ``tests.peers.images.build_layout`` (single image
tag ``1``, two-platform index ``1-multi``, referrer artifact ``1-sig``, 2 layers of 2 KiB each), built once.
"""

from __future__ import annotations

import os

import pytest

from tests.peers.images import TestLayout, build_layout

# Tests talk only to loopback and to namespaces they made: a proxy set up on this machine (for apt, say) must
# not carry their requests, and the programs they start inherit this environment.
for _variable in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_variable, None)


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    """The standard test image layout, written once per session."""
    return build_layout(tmp_path_factory.mktemp("oci-layout"))
