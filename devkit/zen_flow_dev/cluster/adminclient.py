"""A minimal synchronous HTTPS client for the local apiserver, authenticated by the admin client cert.

The dev cluster must not depend on zen-flow's kube layer: it is what that layer
is tested against. Start-up needs only a handful of calls (health, create a Node, run a smoke Job).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def tls_context(
    ca_cert: Path, client_cert: Path | None = None, client_key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_cert))
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


class AdminClient:
    """`request()` returns any status; `get/create/delete` raise ApiError on unexpected ones."""

    def __init__(self, server: str, context: ssl.SSLContext, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or parsed.hostname is None:
            raise ValueError(f"expected an https:// server URL, got {server!r}")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._context = context
        self._timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Response:
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=self._timeout
        )
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Response(status=response.status, body=response.read().decode("utf-8", errors="replace"))
        finally:
            connection.close()

    def get(self, path: str) -> Any:
        return self._expect("GET", path, None, (200,))

    def create(self, path: str, body: Any) -> Any:
        return self._expect("POST", path, body, (200, 201, 202))

    def delete(self, path: str, body: Any = None) -> None:
        self._expect("DELETE", path, body, (200, 202, 404))

    def _expect(self, method: str, path: str, body: Any, ok: tuple[int, ...]) -> Any:
        response = self.request(method, path, body)
        if response.status not in ok:
            raise ApiError(method, path, response.status, response.body)
        return response.json()


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """True if GET `url` answers 200 within `timeout`; connection errors count as 'not yet'."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port
    connection: http.client.HTTPConnection
    if parsed.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    if response.status != 200:
        return False
    # etcd's /health answers 200 with {"health":"false"} while it has no leader.
    return b'"health":"false"' not in body


class WaitTimeout(TimeoutError):
    pass


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Poll `check` until it returns something other than None/False, or fail after `timeout` seconds.

    `abort` is polled too: a non-None message (e.g. "etcd exited with status 1") fails at once instead of
    waiting out the deadline for something that can no longer happen.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if abort is not None:
            reason = abort()
            if reason is not None:
                raise WaitTimeout(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        # Polling a local socket: a short fixed interval keeps start-up latency low at negligible cost.
        time.sleep(interval)
