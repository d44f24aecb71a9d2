"""Session-wide fixtures shared by every test directory.

``oci_layout``: the standard deterministic OCI image layout of ``tests.peers.images.build_layout`` (single image
tag ``1``, two-platform index ``1-multi``, referrer artifact ``1-sig``, 2 layers of 2 KiB each), built once.
"""

from __future__ import annotations

import pytest

from tests.peers.images import TestLayout, build_layout


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    """The standard test image layout, written once per session."""
    return build_layout(tmp_path_factory.mktemp("oci-layout"))
