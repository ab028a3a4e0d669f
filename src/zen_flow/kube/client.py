"""One connection to the apiserver for the whole process: limits, timeouts, retries.

Every request goes through `KubeClient.request` or `KubeClient.stream`, which

- wait for a token from a client-side token bucket (QPS/burst, like client-go's `rest.Config`);
- send `User-Agent: zen-flow/<version>` (the benchmark tells controller traffic apart by it);
- always carry a client-side timeout, so a half-open TCP connection cannot hang a call forever
  (craft.md §2.2);
- use one aiohttp session directly, with `trust_env=False`: the proxy is decided once when the config is
  loaded (`zen_flow.kube.config`), where aiohttp would re-read the proxy environment and ~/.netrc in a
  thread for every request (31 % of the controller's CPU, docs/BENCHMARKS.md). Bodies are raw JSON with
  explicit content types (the JSON-patch trap, craft.md §2.3), status codes are mapped to
  `zen_flow.kube.errors`;
- retry single idempotent calls on transient failures with tenacity: few attempts, short, jittered,
  honouring Retry-After (craft.md §7). Long retries belong to the workqueue. A 401 with rotating
  credentials (token file, exec plugin) re-fetches them and is sent again once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import tenacity

from zen_flow import __version__
from zen_flow.clock import Clock, SystemClock
from zen_flow.kube.config import KubeConfig, load_config
from zen_flow.kube.errors import ApiError, Expired, TransportError, from_response, from_status
from zen_flow.ratelimit import TokenBucket

__all__ = ["KubeClient", "KubeConfig", "load_config"]

USER_AGENT = f"zen-flow/{__version__}"

Query = Sequence[tuple[str, str]]

ResponseHook = Callable[[str, str, int], None]
"""`hook(verb, resource, code)`, called once per HTTP request sent (every retry attempt, every watch
opened) with the apiserver's verb name (see `request_labels`) and the status code, 0 when no answer came.
It runs on the event loop for every request: keep it cheap and never let it raise."""

# aiohttp's readline() refuses lines over 128 KB (twice its read buffer), and a watch line is a whole
# object: a 300-step JobFlow is larger. Refusing it would end the watch, and every rewatch would replay
# the same event: the flow would never be seen again. etcd stores at most 1.5 MiB per object.
MAX_WATCH_LINE = 16 * 1024 * 1024

# Errors that mean "no HTTP answer": aiohttp's own, OS-level socket errors, and client timeouts.
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class ClientOptions:
    qps: float = 50.0
    burst: int = 100
    timeout: float = 30.0  # total seconds for one ordinary request, body included
    connect_timeout: float = 10.0
    user_agent: str = USER_AGENT
    retry_attempts: int = 3
    retry_deadline: float = 5.0  # give up retrying after this many seconds
    retry_max_wait: float = 2.0  # cap on one wait, also applied to Retry-After
    # Ordinary requests in flight at once (watches are not counted: each holds a connection of its own
    # for minutes). HTTP/1.1 means one connection per request in flight, and asyncio gives every TLS
    # connection a 256 KiB read buffer: at 64 the pool held 17 MB of buffers (docs/BENCHMARKS.md).
    # 16 carry ~1,000 requests/s against a local apiserver, far above the QPS limit.
    max_concurrent_requests: int = 16


class Limiter(Protocol):
    async def acquire(self) -> None: ...


@dataclass(frozen=True)
class DecodedPage:
    items: list[Any]
    resource_version: str
    continue_token: str


class Decoder(Protocol):
    """How listed and watched objects become what a caller keeps, for callers that keep models.

    `page` and `event` decode straight from the bytes the apiserver sent (None: they cannot, and the
    client falls back to `json.loads` and `item` on each object). A raw dict of a Job is ~20 KB of
    Python objects (managedFields, the pod template) for ~2 KB kept; never building it saves the
    decoding and, above all, the allocator fragmentation it leaves behind the cache.
    """

    def item(self, raw: dict[str, Any]) -> Any | None:
        """One object as decoded JSON -> what is kept (None: nothing)."""
        ...

    def page(self, raw: bytes) -> DecodedPage | None: ...

    def event(self, raw: bytes) -> WatchEvent | None:
        """A watch line; None for ERROR events (the client raises them) and whatever it cannot read."""
        ...


@dataclass(frozen=True)
class ListResult:
    """A complete (all pages) LIST: its items (raw dicts, or what a `Decoder` made of them) and the list's
    resourceVersion to watch from."""

    items: tuple[Any, ...]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK (ERROR is raised as an exception)
    object: Any  # the raw dict, or what a `Decoder` made of it (None: it kept nothing)
    version: str | None = None  # the object's resourceVersion, when `object` is not a raw dict

    @property
    def resource_version(self) -> str:
        if self.version is not None:
            return self.version
        meta = self.object.get("metadata") if isinstance(self.object, dict) else None
        return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


class KubeClient:
    """The process's one aiohttp session (one connection pool). Close it on shutdown.

    Create it inside the event loop that will use it (aiohttp binds the session to the running loop).
    """

    def __init__(
        self,
        config: KubeConfig,
        options: ClientOptions | None = None,
        *,
        clock: Clock | None = None,
        limiter: Limiter | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self._on_response = on_response
        self.host = config.host
        self._config = config
        self._requests = asyncio.Semaphore(self.options.max_concurrent_requests)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0,  # watches are never queued behind requests; `_requests` bounds the rest
                ssl=config.ssl_context if config.ssl_context is not None else True,
            ),
            headers={"User-Agent": self.options.user_agent, "Accept": "application/json"},
            trust_env=False,
        )
        self._clock = clock or SystemClock()
        self._limiter: Limiter = limiter or TokenBucket(
            self.options.qps, self.options.burst, clock=self._clock
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        retry: bool = True,
        request_timeout: float | None = None,
        limiter: Limiter | None = None,
    ) -> dict[str, Any]:
        """One API call; returns the decoded JSON body. Raises `ApiError` subclasses or `TransportError`.

        `limiter` replaces the client's token bucket for this call (the event recorder's own budget).
        """
        raw = await self.request_raw(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            retry=retry,
            request_timeout=request_timeout,
            limiter=limiter,
        )
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError as err:
            raise TransportError(f"{method} {path}: undecodable response {raw[:200]!r}") from err
        return decoded if isinstance(decoded, dict) else {}

    async def request_raw(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        retry: bool = True,
        request_timeout: float | None = None,
        limiter: Limiter | None = None,
    ) -> bytes:
        """`request`, returning the body undecoded: for a caller that needs one field of a big answer."""
        limiter = limiter or self._limiter
        if not retry:
            return await self._request_once(method, path, query, body, content_type, request_timeout, limiter)
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.options.retry_attempts)
            | tenacity.stop_after_delay(self.options.retry_deadline),
            wait=self._retry_wait,
            retry=tenacity.retry_if_exception(_transient),
            sleep=self._clock.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(
                    method, path, query, body, content_type, request_timeout, limiter
                )
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def list_all(
        self, path: str, query: Query = (), *, page_size: int | None = 500, decoder: Decoder | None = None
    ) -> ListResult:
        """LIST every page (`page_size=None`: one request). If a continue token expires mid-way (the
        snapshot was compacted), start over with one unpaginated LIST, as client-go's pager does.

        With a `decoder`, each page is decoded as it arrives, so no page's raw objects outlive it.
        """
        items: list[Any] = []
        resource_version = ""
        token = ""
        while True:
            page_query = [*query, ("limit", str(page_size))] if page_size else [*query]
            if token:
                page_query.append(("continue", token))
            try:
                raw = await self.request_raw("GET", path, query=page_query)
            except Expired:
                if not token:
                    raise
                raw = await self.request_raw("GET", path, query=query)
                items, resource_version = [], ""
            page = decode_page(raw, decoder, path)
            del raw
            resource_version = resource_version or page.resource_version
            items.extend(page.items)
            token = page.continue_token
            if not token:
                return ListResult(items=tuple(items), resource_version=resource_version)

    @asynccontextmanager
    async def stream(
        self, path: str, query: Query, *, timeout_seconds: int, decoder: Decoder | None = None
    ) -> AsyncIterator[WatchStream]:
        """Open a WATCH; the server ends it after `timeout_seconds`, the client gives it 30 s more.

        The response is closed (not returned to the pool half-read) when the block exits, however it
        exits. No retries here: the informer owns reconnect policy.
        """
        await self._limiter.acquire()
        client_timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + 30, sock_connect=self.options.connect_timeout
        )
        full_query = [*query, ("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        try:
            response: aiohttp.ClientResponse = await self._call(path, "GET", full_query, None, client_timeout)
        except _TRANSPORT_ERRORS as err:
            self._observe("GET", path, 0, watch=True)
            raise TransportError(f"GET {path} (watch): {err!r}") from err
        self._observe("GET", path, response.status, watch=True)
        try:
            if response.status != 200:
                raise from_response(
                    response.status, await _read(response), response.headers.get("Retry-After")
                )
            yield WatchStream(response, decoder)
        finally:
            response.close()

    # --- internals ---------------------------------------------------------------------------------

    async def _request_once(
        self,
        method: str,
        path: str,
        query: Query,
        body: dict[str, Any] | None,
        content_type: str,
        request_timeout: float | None,
        limiter: Limiter,
    ) -> bytes:
        await limiter.acquire()
        client_timeout = aiohttp.ClientTimeout(
            total=request_timeout or self.options.timeout, sock_connect=self.options.connect_timeout
        )
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        for refreshed in (False, True):
            try:
                async with self._requests:
                    response: aiohttp.ClientResponse = await self._call(
                        path, method, query, data, client_timeout, headers
                    )
                    try:
                        raw = await response.read()
                    finally:
                        response.release()
            except _TRANSPORT_ERRORS as err:
                self._observe(method, path, 0)
                raise TransportError(f"{method} {path}: {err!r}") from err
            self._observe(method, path, response.status)
            if response.status != 401 or refreshed or not self._config.credentials.invalidate():
                break
        if not 200 <= response.status < 300:
            raise from_response(response.status, raw, response.headers.get("Retry-After"))
        return raw

    async def _call(
        self,
        path: str,
        method: str,
        query: Query,
        data: bytes | None,
        client_timeout: aiohttp.ClientTimeout,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        all_headers = dict(headers or {})
        if authorization := await self._config.credentials.authorization():
            all_headers["Authorization"] = authorization
        return await self._session.request(
            method,
            self.host + path,
            params=list(query),
            data=data,
            headers=all_headers,
            timeout=client_timeout,
            proxy=self._config.proxy,
            server_hostname=self._config.tls_server_name,
        )

    def _observe(self, method: str, path: str, code: int, *, watch: bool = False) -> None:
        if self._on_response is not None:
            verb, resource = request_labels(method, path, watch=watch)
            self._on_response(verb, resource, code)

    def _retry_wait(self, state: tenacity.RetryCallState) -> float:
        cap = self.options.retry_max_wait
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after is not None:
            return min(error.retry_after, cap)
        # 0.1 s, 0.2 s, 0.4 s ... each plus up to 100 % jitter, so a fleet of clients does not retry in step.
        base = 0.1 * 2.0 ** (state.attempt_number - 1)
        return min(base * (1 + random.random()), cap)


class WatchStream:
    """Decoded watch events, one JSON object per line. ERROR events raise (410 → `Expired`).

    A plain iterator class rather than an async generator: an abandoned generator would be finalized
    at some later garbage collection, outside the `stream()` block that owns the response.
    """

    def __init__(self, response: aiohttp.ClientResponse, decoder: Decoder | None = None) -> None:
        self._content = response.content
        self._decoder = decoder

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            try:
                line = await self._content.readuntil(b"\n", max_size=MAX_WATCH_LINE)
            except (*_TRANSPORT_ERRORS, ValueError) as err:
                raise TransportError(f"watch stream: {err!r}") from err
            if not line:
                raise StopAsyncIteration  # the server closed the watch (timeoutSeconds elapsed)
            if line.strip():
                return decode_event(line, self._decoder)


def decode_page(raw: bytes, decoder: Decoder | None, path: str = "") -> DecodedPage:
    """One LIST page: through `decoder` if it can, else `json.loads` (and `decoder.item` per object)."""
    if decoder is not None and (decoded := decoder.page(raw)) is not None:
        return decoded
    try:
        page = json.loads(raw) if raw else {}
    except ValueError as err:
        raise TransportError(f"LIST {path}: undecodable response {raw[:200]!r}") from err
    if not isinstance(page, dict):
        raise TransportError(f"LIST {path}: not a list: {raw[:200]!r}")
    meta = page.get("metadata") or {}
    raw_items = page.pop("items", None) or []
    if decoder is not None:
        raw_items = [obj for item in raw_items if (obj := decoder.item(item)) is not None]
    return DecodedPage(raw_items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or ""))


def decode_event(line: bytes, decoder: Decoder | None = None) -> WatchEvent:
    """One watch line: through `decoder` if it can, else `json.loads` (ERROR events raise)."""
    if decoder is not None and (event := decoder.event(line)) is not None:
        return event
    try:
        decoded = json.loads(line)
    except ValueError as err:
        raise TransportError(f"undecodable watch line: {line[:200]!r}") from err
    if not isinstance(decoded, dict) or not isinstance(decoded.get("object"), dict):
        raise TransportError(f"malformed watch event: {line[:200]!r}")
    event_type = str(decoded.get("type", ""))
    obj: dict[str, Any] = decoded["object"]
    if event_type == "ERROR":
        raise from_status(500, obj)
    if decoder is None:
        return WatchEvent(type=event_type, object=obj)
    version = WatchEvent(event_type, obj).resource_version
    return WatchEvent(type=event_type, object=decoder.item(obj), version=version)


def request_labels(method: str, path: str, *, watch: bool = False) -> tuple[str, str]:
    """(verb, resource) of a request as the apiserver's audit log names them, from the method and path.

    `GET /apis/batch/v1/namespaces/ns/jobs` -> ("list", "jobs"); `PATCH .../jobflows/x/status` ->
    ("patch", "jobflows/status"); a watch is ("watch", plural). String splitting only: it runs per request.
    """
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]  # drop /api/<v> or /apis/<group>/<v>
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # namespaced: drop namespaces/<ns>; `/api/v1/namespaces/<ns>` is a Namespace
    resource = rest[0] if rest else ""
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "watch" if watch else "get" if named else "list"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return verb, resource


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _transient(error: BaseException) -> bool:
    return isinstance(error, TransportError) or (isinstance(error, ApiError) and error.transient)


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except _TRANSPORT_ERRORS:
        return b""
