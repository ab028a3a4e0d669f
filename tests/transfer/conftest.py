"""The artifact commands as processes, against a real S3-compatible server and a real HTTP server, both
on loopback (no cluster needed)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from zen_flow_dev.testing.storage import MISSING, S3Server, versitygw_binary


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


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes); paths under /private/ need `Authorization: Bearer let-me-in`."""

    files: dict[str, bytes]
    seen_headers: list[dict[str, str]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.seen_headers.append(dict(self.headers.items()))
        path = self.path.split("?", 1)[0]
        if path.startswith("/private/") and self.headers.get("Authorization") != "Bearer let-me-in":
            self.send_error(401)
            return
        body = self.server.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[FileServer]:
    server = FileServer(("127.0.0.1", 0), _Handler)
    server.files, server.seen_headers = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
