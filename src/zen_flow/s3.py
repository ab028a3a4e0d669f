"""A small S3 client on aiohttp: PUT, GET and list of objects in one bucket, path-style, SigV4-signed
(`core/sigv4.py`). The flow archive's store, shared by the controller (writes) and `zen-flow archive`
(reads).

Why not `minio` (which `zen-flow artifact` uses in steps' pods): the controller must not import it (the
"controller never moves artifacts" contract), it is synchronous (a thread per request), and importing
it with urllib3 costs the controller more than this module does (docs/BENCHMARKS.md, "The archive's S3
client"). Every request has a timeout; nothing is retried here (the controller's work queue retries,
with backoff, and never on this task's time).

- Bodies are read to their end, within a cap (aiohttp's `content.read(n)` returns what is buffered so
  far, not n bytes: a 2 MB record came back cut at 96 KB).
- The Host header is sent as signed, without a default port (`http://minio:80` signs and sends `minio`):
  a store checks the signature against the Host it received.
- An answer that is not S3's (a proxy's HTML page) is a StoreError naming the endpoint, a 2xx one to a PUT
  too: a write counts only when the store acknowledged it with an ETag (a proxy's 200 page has none), and
  the store checks the body against the Content-MD5 sent with it; S3's errors say
  their <Code> and <Message> and the host. Never a key: the keys come from a KeySource, read per request,
  so keys rotated in a mounted Secret are used without a restart (`zen_flow.archive_keys`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from zen_flow.core.sigv4 import Credentials, canonical_query, signed_headers, uri_encode

# An S3 error answer's body is read only up to this size (its code and message are all we show).
_MAX_ERROR_BODY = 16 * 1024
# An object read back (`get`) may be at most this big: a record is a flow and its status (the apiserver
# keeps those under ~1.5 MB), so anything much larger is not one of ours.
MAX_OBJECT_BYTES = 16 * 1024 * 1024
# A ListObjectsV2 page: 1,000 keys of up to 1 KB each, and their metadata.
_MAX_LIST_PAGE = 4 * 1024 * 1024
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class StoreError(Exception):
    """A request failed. `cause` is short and stable (no request id, no time), so the controller says
    it once per cause: "cannot connect: Connection refused (minio:9000)", "HTTP 403 AccessDenied: Access
    Denied (from minio:9000)", "timed out after 10s (minio:9000)". `code`: S3's error code, if any."""

    def __init__(self, cause: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.code = code


class ObjectMissing(StoreError):
    """GET answered 404 NoSuchKey: no such object (a missing bucket is a StoreError: NoSuchBucket)."""


class KeySource(Protocol):
    """The store's keys, asked for at every request (they may be rotated meanwhile)."""

    def current(self) -> Credentials: ...

    def refused(self) -> None:
        """The store answered 403: the keys may have been rotated; read them again before the next one."""


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str  # http(s)://host[:port], no path
    bucket: str
    credentials: KeySource
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
    last_modified: str  # as S3 says it: 2026-03-01T12:00:00.000Z (sorts as time)


def host_header(endpoint: str) -> str:
    """The Host of requests to `endpoint`, as a client sends it: the host, lower-case, and the port
    unless it is the scheme's default."""
    url = urlsplit(endpoint)
    host = (url.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = url.port
    return host if port is None or port == _DEFAULT_PORTS.get(url.scheme) else f"{host}:{port}"


class S3Store:
    """One bucket. `connections` bounds the requests in flight (the controller's archive writers)."""

    def __init__(self, config: StoreConfig, *, connections: int = 4) -> None:
        self.config = config
        url = urlsplit(config.endpoint)
        self._host = host_header(config.endpoint)
        self._base = f"{url.scheme}://{self._host}"
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
        """Write one object; a StoreError unless the store acknowledged it as S3 does: a 2xx with an
        ETag. `Content-MD5` is sent, so the store itself checks the body it received (a mismatch is its
        400 BadDigest; buckets with Object Lock require the header). The ETag is not compared with that
        MD5: under SSE-KMS or SSE-C encryption S3's ETag is not the body's MD5."""
        digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        extra = {"content-type": content_type, "content-md5": digest}
        await self._request("PUT", key, (), body, extra, _MAX_ERROR_BODY, acknowledged=_etag_said)

    async def get(self, key: str) -> bytes:
        return await self._request("GET", key, (), b"", {}, MAX_OBJECT_BYTES)

    async def pages(self, prefix: str) -> AsyncIterator[list[Listed]]:
        """The objects under `prefix`, one ListObjectsV2 page (up to 1,000) at a time, in key order."""
        token = ""
        while True:
            params = [("list-type", "2"), ("prefix", prefix)]
            if token:
                params.append(("continuation-token", token))
            root = self._xml(await self._request("GET", "", params, b"", {}, _MAX_LIST_PAGE))
            if root.tag != f"{_NS}ListBucketResult":
                raise StoreError(f"not an S3 answer from {self._host}: <{root.tag}> to a list of objects")
            yield [
                Listed(
                    item.findtext(f"{_NS}Key", ""),
                    int(item.findtext(f"{_NS}Size", "0") or 0),
                    item.findtext(f"{_NS}LastModified", ""),
                )
                for item in root.iter(f"{_NS}Contents")
            ]
            token = root.findtext(f"{_NS}NextContinuationToken", "")
            if root.findtext(f"{_NS}IsTruncated", "false") != "true" or not token:
                return

    def _xml(self, body: bytes) -> ET.Element:
        try:
            return ET.fromstring(body)
        except ET.ParseError as err:  # a proxy's HTML page, a web server at the wrong port
            raise StoreError(f"not an S3 answer from {self._host}: {err}") from None

    async def _request(
        self,
        method: str,
        key: str,
        params: Sequence[tuple[str, str]],
        body: bytes,
        extra: dict[str, str],
        cap: int,
        *,
        acknowledged: Callable[[aiohttp.ClientResponse], bool] | None = None,
    ) -> bytes:
        """The answer's body (at most `cap` bytes). `acknowledged`: whether a 2xx answer is the store's
        (a PUT's: its ETag); a 2xx that is not, a proxy's page say, is a StoreError naming what came."""
        path = f"/{self.config.bucket}/{key}" if key else f"/{self.config.bucket}"
        keys = self.config.credentials
        headers = signed_headers(
            method=method,
            host=self._host,
            path=path,
            params=params,
            payload=body,
            credentials=keys.current(),
            region=self.config.region,
            now=datetime.now(UTC),
            extra=extra,
        )
        query = f"?{canonical_query(params)}" if params else ""
        # Encoded exactly as signed: yarl must not re-quote it. The Host header goes as signed too (it is
        # in `headers`): aiohttp would derive its own from the URL.
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
                    if resp.status == 403:
                        keys.refused()
                    detail = await _read(resp, _MAX_ERROR_BODY, cut=True)
                    raise _answer_error(resp.status, detail, self._host)
                if acknowledged is not None and not acknowledged(resp):
                    # S3 answers a PUT with no body; a few bytes of another answer say what it was.
                    came = await _read(resp, _MAX_ERROR_BODY, cut=True)
                    raise StoreError(
                        f"not an S3 answer from {self._host}: HTTP {resp.status} to a {method} without an "
                        f"ETag header, so the object is not known to be written ({_glimpse(resp, came)})",
                        status=resp.status,
                    )
                data = await _read(resp, cap, cut=acknowledged is not None)
                return data
        except TimeoutError:
            raise StoreError(f"timed out after {self.config.timeout:g}s ({self._host})") from None
        except aiohttp.ClientConnectorError as err:
            why = err.os_error.strerror or err.os_error
            raise StoreError(f"cannot connect: {why} ({self._host})") from None
        except (aiohttp.ClientError, OSError) as err:
            raise StoreError(f"connection failed: {type(err).__name__} ({self._host})") from None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session


async def _read(resp: aiohttp.ClientResponse, cap: int, *, cut: bool) -> bytes:
    """The body to its end, at most `cap` bytes: cut there (`cut`), else a StoreError past it."""
    if not cut and resp.content_length is not None and resp.content_length > cap:
        raise StoreError(f"object larger than {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        chunks.append(chunk)
        if size > cap:
            if cut:
                return b"".join(chunks)[:cap]
            raise StoreError(f"object larger than {cap} bytes")
    return b"".join(chunks)


def _etag_said(resp: aiohttp.ClientResponse) -> bool:
    return bool(resp.headers.get("ETag", "").strip())


def _glimpse(resp: aiohttp.ClientResponse, body: bytes) -> str:
    """What an answer that is not S3's was: its content type and its first words."""
    kind = resp.headers.get("Content-Type", "no content type")
    text = " ".join(body.decode("utf-8", "replace").split())
    return f"{kind}: {text[:120]}{'...' if len(text) > 120 else ''}" if text else f"{kind}, no body"


def _answer_error(status: int, body: bytes, host: str) -> StoreError:
    code = message = ""
    with contextlib.suppress(ET.ParseError):  # a proxy's HTML page, say: the status says enough
        root = ET.fromstring(body) if body.strip() else None
        if root is not None and root.tag == "Error":
            code, message = root.findtext("Code", ""), root.findtext("Message", "")
    said = f" {code}" if code else ""
    said += f": {' '.join(message.split())[:200]}" if message else ""
    if not code and body.strip():
        said += " (not an S3 answer)"
    cause = f"HTTP {status}{said} (from {host})"
    # A missing bucket is the store's set-up, not a missing record: only NoSuchKey (or a bodiless 404)
    # says "no such object".
    if status == 404 and (code == "NoSuchKey" or not body.strip()):
        return ObjectMissing(cause, status=status, code=code)
    return StoreError(cause, status=status, code=code)
