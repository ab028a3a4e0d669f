"""One connection to the apiserver for the whole process: limits, timeouts, retries.

Every request goes through `KubeClient.request` or `KubeClient.stream`, which

- wait for a token from a client-side token bucket (QPS/burst, like client-go's `rest.Config`);
- always carry a client-side timeout, so a half-open TCP connection cannot hang a call (craft.md §2.2);
- use one aiohttp session directly, with `trust_env=False`: the proxy is decided once when the config is
  loaded (`zen_flow.kube.config`), where aiohttp would re-read the proxy environment and ~/.netrc in a
  thread for every request (31 % of the controller's CPU, docs/BENCHMARKS.md). Bodies are raw JSON with
  explicit content types (the JSON-patch trap, craft.md §2.3), status codes are mapped to
  `zen_flow.kube.errors`;
- retry single idempotent calls on transient failures (the policy in `zen_flow.kube.retries`). A 401
  with rotating credentials (token file, exec plugin) re-fetches them and is sent again once.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from pydantic import TypeAdapter, ValidationError

from zen_flow.core import nesting
from zen_flow.kube.config import KubeConfig
from zen_flow.kube.errors import Expired, RequestTimedOut, TransportError, describe, from_response
from zen_flow.kube.request_slots import RequestSlots
from zen_flow.kube.retries import retrying
from zen_flow.kube.streams import (
    TRANSPORT_ERRORS,
    Decoder,
    ListResult,
    WatchStream,
    decode_page,
)
from zen_flow.kube.transport import (
    TLS_READ_CHUNK,
    WATCH_READ_BUFFER,
    ClientOptions,
    Limiter,
    RequestRecord,
    ResponseHook,
    request_labels,
    set_tls_read_chunk,
    watch_read_chunk,
)
from zen_flow.machinery.clock import Clock, SystemClock
from zen_flow.machinery.ratelimit import TokenBucket

M = TypeVar("M")  # a pydantic model or a pydantic dataclass (a record, `zen_flow.api.job`)

Query = Sequence[tuple[str, str]]

Body = dict[str, Any] | list[Any]
"""A request body: an object, or a JSON patch's list of operations."""


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
        self._requests = RequestSlots(self.options.max_concurrent_requests)
        set_tls_read_chunk(getattr(asyncio.sslproto, "SSLProtocol", None), TLS_READ_CHUNK)
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
        body: Body | None = None,
        content_type: str = "application/json",
        retry: bool = True,
        request_timeout: float | None = None,
        limiter: Limiter | None = None,
        namespace_line: bool = True,
    ) -> dict[str, Any]:
        """One API call; returns the decoded JSON body. Raises `ApiError` subclasses or `TransportError`.

        `limiter` replaces the client's token bucket for this call (the event recorder's own budget).
        `namespace_line=False` skips the namespace's share of the request slots (kube/request_slots.py):
        for a sender shared by every namespace (the event recorder), which must not wait behind one
        namespace's slow requests.
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
            namespace_line=namespace_line,
        )
        try:
            decoded = nesting.loads(raw) if raw else {}
        except ValueError as err:
            raise TransportError(f"{method} {path}: undecodable response {raw[:200]!r}") from err
        return decoded if isinstance(decoded, dict) else {}

    async def request_model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """`request`, decoding only `model`'s fields straight from the answer's bytes: the apiserver
        answers a write with the whole object (managedFields, pod templates), most of it not needed."""
        raw = await self.request_raw(method, path, **kwargs)
        try:
            decoded: M = _adapter(model).validate_json(raw)
            return decoded
        except ValidationError as err:
            raise TransportError(f"{method} {path}: unexpected answer {raw[:200]!r}") from err

    async def request_raw(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Body | None = None,
        content_type: str = "application/json",
        retry: bool = True,
        request_timeout: float | None = None,
        limiter: Limiter | None = None,
        accept: str | None = None,
        namespace_line: bool = True,
    ) -> bytes:
        """`request`, returning the body undecoded: for a caller that needs one field of a big answer.
        `accept` replaces the session's `Accept: application/json` (e.g. `METADATA_ONLY`)."""
        limiter = limiter or self._limiter
        if not retry:
            return await self._request_once(
                method, path, query, body, content_type, request_timeout, limiter, accept, namespace_line
            )
        async for attempt in retrying(self.options, self._clock.sleep):
            with attempt:
                return await self._request_once(
                    method, path, query, body, content_type, request_timeout, limiter, accept, namespace_line
                )
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def list_all(
        self, path: str, query: Query = (), *, page_size: int = 500, decoder: Decoder | None = None
    ) -> ListResult:
        """LIST every page of `page_size` items. If a continue token expires mid-way (the
        snapshot was compacted), start over, in pages again the first time (one unpaginated answer
        holds the whole list in memory at once), then with one unpaginated LIST, as client-go's pager.

        With a `decoder`, each page is decoded as it arrives, so no page's raw objects outlive it.
        """
        items: list[Any] = []
        resource_version = ""
        token = ""
        restarts = 0
        # A continue token carries the list's resourceVersion; the apiserver refuses either beside it (422).
        paged = [(k, v) for k, v in query if k not in ("resourceVersion", "resourceVersionMatch")]
        while True:
            page_query = [*(paged if token else query), ("limit", str(page_size))]
            if token:
                page_query.append(("continue", token))
            try:
                raw = await self.request_raw("GET", path, query=page_query)
            except Expired:
                if not token:
                    raise
                items, resource_version, token = [], "", ""
                restarts += 1
                if restarts == 1:
                    continue
                raw = await self.request_raw("GET", path, query=query)
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
        queued = self._clock.monotonic()
        await self._limiter.acquire()
        client_timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + 30, sock_connect=self.options.connect_timeout
        )
        full_query = [*query, ("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        sending = self._clock.monotonic()
        try:
            response: aiohttp.ClientResponse = await self._call(
                path, "GET", full_query, None, client_timeout, read_bufsize=WATCH_READ_BUFFER
            )
        except TRANSPORT_ERRORS as err:
            self._observe("GET", path, 0, queued=queued, sending=sending, watch=True)
            raise TransportError(f"GET {path} (watch): {describe(err)}") from err
        self._observe("GET", path, response.status, queued=queued, sending=sending, watch=True)
        try:
            if response.status == 401:
                # As for requests: rotating credentials (a token file, an exec plugin) are fetched anew,
                # so the informer's next attempt (after its backoff) carries fresh ones.
                self._config.credentials.invalidate()
            if response.status != 200:
                raise from_response(
                    response.status, await _read(response), response.headers.get("Retry-After")
                )
            watch_read_chunk(response)
            yield WatchStream(response, decoder)
        finally:
            response.close()

    @asynccontextmanager
    async def stream_lines(self, path: str, query: Query) -> AsyncIterator[AsyncIterator[str]]:
        """A GET whose body arrives over time (pods/log with follow=true), as decoded lines; no timeout
        but the connect timeout: the server ends it (the container exits) or the caller leaves the block."""
        queued = self._clock.monotonic()
        await self._limiter.acquire()
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout)
        sending = self._clock.monotonic()
        try:
            response: aiohttp.ClientResponse = await self._call(
                path, "GET", list(query), None, client_timeout
            )
        except TRANSPORT_ERRORS as err:
            self._observe("GET", path, 0, queued=queued, sending=sending)
            raise TransportError(f"GET {path}: {describe(err)}") from err
        self._observe("GET", path, response.status, queued=queued, sending=sending)
        try:
            if response.status != 200:
                raise from_response(
                    response.status, await _read(response), response.headers.get("Retry-After")
                )

            async def lines() -> AsyncIterator[str]:
                async for raw in response.content:
                    yield raw.decode(errors="replace").rstrip("\n")

            yield lines()
        finally:
            response.close()

    # --- internals ---------------------------------------------------------------------------------

    async def _request_once(
        self,
        method: str,
        path: str,
        query: Query,
        body: Body | None,
        content_type: str,
        request_timeout: float | None,
        limiter: Limiter,
        accept: str | None = None,
        namespace_line: bool = True,
    ) -> bytes:
        queued = self._clock.monotonic()
        await limiter.acquire()
        total = request_timeout or self.options.timeout
        client_timeout = aiohttp.ClientTimeout(total=total, sock_connect=self.options.connect_timeout)
        headers = {"Content-Type": content_type} if body is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        # ASCII-escaped JSON (json.dumps' default; keep it, or an encoder that escapes as much): the
        # apiserver trims a quantity's raw text, so an escaped tab or no-break space is refused as
        # admission refuses it (validation/formats.py, _parse_quantity); tests/unit/test_kube_client_bodies.py
        data = json.dumps(body).encode() if body is not None else None
        sent = len(data or b"")
        for refreshed in (False, True):
            sending = queued
            try:
                slot = await self._requests.acquire(path if namespace_line else None)
                try:
                    sending = self._clock.monotonic()
                    response: aiohttp.ClientResponse = await self._call(
                        path, method, query, data, client_timeout, headers
                    )
                    try:
                        raw = await response.read()
                    finally:
                        response.release()
                finally:
                    self._requests.release(slot)
            except TRANSPORT_ERRORS as err:
                self._observe(method, path, 0, sent, queued=queued, sending=sending)
                # aiohttp's total timeout is a bare TimeoutError (its connect and read timeouts are
                # subclasses saying which): the apiserver took the request and did not answer in time.
                if type(err) is TimeoutError and total is not None:
                    raise RequestTimedOut(f"{method} {path}", self.host, total) from err
                raise TransportError(f"{method} {path}: {describe(err)}") from err
            self._observe(method, path, response.status, sent, queued=queued, sending=sending)
            queued = self._clock.monotonic()  # a second attempt (fresh credentials) waits only for a slot
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
        *,
        read_bufsize: int | None = None,
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
            read_bufsize=read_bufsize,
        )

    def _observe(
        self,
        method: str,
        path: str,
        code: int,
        sent: int = 0,
        *,
        queued: float,
        sending: float,
        watch: bool = False,
    ) -> None:
        """Called as the answer is in: `queued` (waiting in the client from) and `sending` (sent at) are
        on the client's clock."""
        if self._on_response is not None:
            verb, resource = request_labels(method, path, watch=watch)
            seconds = self._clock.monotonic() - sending
            self._on_response(RequestRecord(verb, resource, code, sent, seconds, sending - queued))


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except TRANSPORT_ERRORS:
        return b""


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(model: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter
