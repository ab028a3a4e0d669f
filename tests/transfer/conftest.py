"""The artifact commands as processes, against a real S3-compatible server and a real HTTP server, both
on loopback (no cluster needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from zen_flow_dev.testing.storage import MISSING, FileServer, S3Server, versitygw_binary


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    binary = versitygw_binary()
    if binary is None or not binary.exists():
        pytest.skip(MISSING)
    server = S3Server(binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def web() -> Iterator[FileServer]:
    yield from _serving()


@pytest.fixture
def other_web() -> Iterator[FileServer]:
    """A second server: another origin (its own port) for redirects."""
    yield from _serving()


def _serving() -> Iterator[FileServer]:
    server = FileServer.on_loopback()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
