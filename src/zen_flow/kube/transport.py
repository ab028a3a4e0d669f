"""How the client's requests travel and are recorded: its options, the TLS read chunks of its
connections, and one `RequestRecord` per request sent, labelled as the apiserver's audit log labels it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from zen_flow import __version__

USER_AGENT = f"zen-flow/{__version__}"
"""Sent with every request (the benchmark tells controller traffic apart by it)."""

# `Accept` for a write whose answer is read for its metadata alone: the object as PartialObjectMetadata,
# so the apiserver encodes no spec or status (a status write of a flow: ~1 ms less apiserver CPU at 10
# steps, ~4 ms at 100). `application/json` after the comma: an apiserver that cannot transform answers
# the whole object, which callers must still read.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP request sent (every retry attempt, every watch opened), for metrics."""

    verb: str  # the apiserver's name for it (see `request_labels`)
    resource: str
    code: int  # the HTTP status, 0 when no answer came
    sent: int  # bytes of the request body
    seconds: float  # from sending it to having read the answer (a watch or a log stream: its headers)
    # Before sending: a client-side token (QPS/burst) and a free request slot. With `seconds`, this says
    # whether a slow reconcile waits on the apiserver or on the client's own limits.
    waited: float


ResponseHook = Callable[[RequestRecord], None]
"""`hook(record)`, called once per HTTP request sent. It runs on the event loop (the lease keeper's:
its own thread) for every request: keep it cheap and never let it raise."""


class Limiter(Protocol):
    """What a request waits on before it is sent (`zen_flow.machinery.ratelimit.TokenBucket`)."""

    async def acquire(self) -> None: ...


@dataclass(frozen=True)
class ClientOptions:
    qps: float = 50.0
    burst: int = 100
    timeout: float | None = 30.0  # total seconds for one ordinary request, body included; None: none
    connect_timeout: float = 10.0
    user_agent: str = USER_AGENT
    retry_attempts: int = 3
    retry_deadline: float = 5.0  # give up retrying after this many seconds
    retry_max_wait: float = 2.0  # cap on one wait, also applied to Retry-After
    # A request that got no answer within `timeout` is sent again (the controller: a hung connection is
    # worth another try). The CLI's is final, as kubectl's: its --request-timeout bounds the request.
    retry_timed_out: bool = True
    # Ordinary requests in flight at once (watches are not counted: each holds a connection of its own
    # for minutes). HTTP/1.1 means one connection per request in flight, each with a TLS read buffer
    # (`TLS_READ_CHUNK`): at 64 and asyncio's 256 KiB the pool held 17 MB (docs/BENCHMARKS.md). 32 leave
    # room for a fan-out's 16 concurrent creates beside the other workers' requests. One namespace may
    # hold three quarters of them (kube/request_slots.py).
    max_concurrent_requests: int = 32


# What a watch may hold unread before the client stops reading its socket (aiohttp pauses at twice this).
# aiohttp's 64 KiB is one 20-step JobFlow event or two; with WatchStream giving the event loop back
# between events, a burst (1,000 flows created at once) is taken off the socket while it is decoded, so
# the apiserver does not close the watch as a slow reader's (docs/BENCHMARKS.md). Held only while the
# reader is behind.
WATCH_READ_BUFFER = 4 * 1024 * 1024

TLS_READ_CHUNK = 64 * 1024
"""asyncio reads a TLS socket once per event-loop pass, up to `SSLProtocol.max_size` (256 KiB), into a
buffer every connection keeps for its life: ~300 KB per pooled connection with OpenSSL's own, 9.7 MB for
32 (measured: 32 loopback TLS connections, client side). Requests read in 64 KiB chunks (3.5 MB for 32):
most answers are one Job or a status patch's few KB, and a 10 MB LIST page takes a few more passes."""

WATCH_TLS_READ_CHUNK = 256 * 1024
"""A watch keeps asyncio's 256 KiB: when reconciles keep the event loop busy, a pass comes every few tens
of milliseconds, and what one pass drains is what keeps the apiserver from closing the watch as a slow
reader's (1,000 flows created at once, docs/BENCHMARKS.md). Not shrunk without a measurement that it is
harmless: the closes counted in 1,000-flow bursts (0-3 per run at 256 KiB, 2 at 64 KiB) cannot tell."""


def set_tls_read_chunk(protocol: object, size: int) -> None:
    """asyncio's TLS read chunk, `max_size` (a class attribute of `asyncio.sslproto.SSLProtocol` in 3.11-3.13,
    read through the instance); a Python without it is left as it is."""
    if protocol is not None and isinstance(getattr(protocol, "max_size", None), int):
        protocol.max_size = size  # type: ignore[attr-defined]


def watch_read_chunk(response: aiohttp.ClientResponse) -> None:
    """Give the watch's connection (closed with the watch, never pooled again) the larger read chunk."""
    transport = response.connection.transport if response.connection is not None else None
    set_tls_read_chunk(getattr(transport, "_ssl_protocol", None), WATCH_TLS_READ_CHUNK)


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
