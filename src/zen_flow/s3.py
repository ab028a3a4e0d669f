"""A small S3 client on aiohttp: PUT, GET and list of objects in one bucket, path-style, SigV4-signed
(`core/sigv4.py`). The flow archive's store, shared by the controller (writes) and `zen-flow archive`
(reads).

Why not `minio` (which `zen-flow artifact` uses in steps' pods): the controller must not import it (the
"controller never moves artifacts" contract), it is synchronous (a thread per request), and importing
it with urllib3 costs the controller more than this module does (docs/BENCHMARKS.md, "The archive's S3
client"). Every request has a timeout; nothing is retried here (the controller's work queue retries,
with backoff, and never on this task's time).
"""

from __future__ import annotations

import contextlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from zen_flow.core.sigv4 import Credentials, canonical_query, signed_headers, uri_encode

# An S3 error answer's body is read only up to this size (its code and message are all we show).
_MAX_ERROR_BODY = 16 * 1024
# An object read back (`get`) may be at most this big: a record is a flow and its status (the apiserver
# keeps those under ~1.5 MB), so anything much larger is not one of ours.
MAX_OBJECT_BYTES = 16 * 1024 * 1024
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class StoreError(Exception):
    """A request failed. `cause` is short and stable (no request id, no time), so the controller says
    it once per cause: "connection refused", "HTTP 403 AccessDenied", "timed out after 10s"."""

    def __init__(self, cause: str, *, status: int = 0) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status


class ObjectMissing(StoreError):
    """GET answered 404: no such object (or bucket)."""


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str  # http(s)://host[:port], no path
    bucket: str
    credentials: Credentials
    region: str = "us-east-1"
    ca_file: str = ""
    timeout: float = 10.0

    @property
    def where(self) -> str:
        """The store as messages show it: s3://bucket at the endpoint's host (never a key)."""
        return f"s3://{self.bucket} at {self.endpoint}"


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    last_modified: str


class S3Store:
    """One bucket. `connections` bounds the requests in flight (the controller's archive writers)."""

    def __init__(self, config: StoreConfig, *, connections: int = 4) -> None:
        self.config = config
        url = urlsplit(config.endpoint)
        self._host = url.netloc
        self._base = f"{url.scheme}://{url.netloc}"
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=config.ca_file) if config.ca_file else True
        )
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> S3Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        await self._request("PUT", key, (), body, {"content-type": content_type})

    async def get(self, key: str) -> bytes:
        return await self._request("GET", key, (), b"", {})

    async def list(self, prefix: str, limit: int = 100_000) -> list[Listed]:
        """Every object under `prefix` (ListObjectsV2, page by page), at most `limit`."""
        found: list[Listed] = []
        token = ""
        while len(found) < limit:
            params = [("list-type", "2"), ("prefix", prefix)]
            if token:
                params.append(("continuation-token", token))
            root = ET.fromstring(await self._request("GET", "", params, b"", {}))
            for item in root.iter(f"{_NS}Contents"):
                found.append(
                    Listed(
                        item.findtext(f"{_NS}Key", ""),
                        int(item.findtext(f"{_NS}Size", "0") or 0),
                        item.findtext(f"{_NS}LastModified", ""),
                    )
                )
            token = root.findtext(f"{_NS}NextContinuationToken", "")
            if root.findtext(f"{_NS}IsTruncated", "false") != "true" or not token:
                break
        return found[:limit]

    async def _request(
        self, method: str, key: str, params: Sequence[tuple[str, str]], body: bytes, extra: dict[str, str]
    ) -> bytes:
        path = f"/{self.config.bucket}/{key}" if key else f"/{self.config.bucket}"
        headers = signed_headers(
            method=method,
            host=self._host,
            path=path,
            params=params,
            payload=body,
            credentials=self.config.credentials,
            region=self.config.region,
            now=datetime.now(UTC),
            extra=extra,
        )
        del headers["host"]  # aiohttp sends it, from the URL: the same value
        query = f"?{canonical_query(params)}" if params else ""
        # Encoded exactly as signed: yarl must not re-quote it.
        url = URL(self._base + uri_encode(path, keep_slash=True) + query, encoded=True)
        session = self._session_now()
        try:
            async with session.request(
                method,
                url,
                data=body or None,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                if resp.status >= 300:
                    detail = (await resp.content.read(_MAX_ERROR_BODY)).decode(errors="replace")
                    raise _answer_error(resp.status, detail)
                data = await resp.content.read(MAX_OBJECT_BYTES + 1)
                if len(data) > MAX_OBJECT_BYTES:
                    raise StoreError(f"object larger than {MAX_OBJECT_BYTES} bytes")
                return data
        except TimeoutError:
            raise StoreError(f"timed out after {self.config.timeout:g}s") from None
        except aiohttp.ClientConnectorError as err:
            raise StoreError(f"cannot connect: {err.os_error.strerror or err.os_error}") from None
        except (aiohttp.ClientError, OSError) as err:
            raise StoreError(f"connection failed: {type(err).__name__}") from None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session


def _answer_error(status: int, body: str) -> StoreError:
    code = ""
    with contextlib.suppress(ET.ParseError):  # a proxy's HTML page, say: the status says enough
        code = ET.fromstring(body).findtext("Code", "") if body.strip() else ""
    cause = f"HTTP {status}{f' {code}' if code else ''}"
    if status == 404:
        return ObjectMissing(cause, status=status)
    return StoreError(cause, status=status)
