"""AWS Signature Version 4 for S3 requests (header-signed, path-style), as a pure function.

The flow archive (`--archive-s3-*`) is written by the controller, which must not import `minio` or
`urllib3` (the "controller never moves artifacts" contract; minio's import alone costs more than this
whole module and its client: docs/BENCHMARKS.md, "The archive's S3 client"). PUT, GET and a
ListObjectsV2 are all it needs, so it signs them itself and sends them on aiohttp (`zen_flow.s3`).

Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    # Never shown: not in repr, so a log line or a traceback holding the settings cannot leak it.
    secret_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding of UTF-8 bytes, as SigV4 wants it (unreserved characters kept; "/" kept
    in a path only)."""
    out: list[str] = []
    for byte in text.encode():
        char = chr(byte)
        if char in _UNRESERVED or (keep_slash and char == "/"):
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(params))


def signed_headers(
    *,
    method: str,
    host: str,
    path: str,
    params: Sequence[tuple[str, str]],
    payload: bytes,
    credentials: Credentials,
    region: str,
    now: datetime,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign one request: `host` as sent (host[:port]), `path` not yet encoded
    ("/bucket/key"), `params` the query. Returns every header to send (extra ones included)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {k.lower(): v.strip() for k, v in (extra or {}).items()}
    headers["host"] = host
    headers["x-amz-date"] = stamp
    headers["x-amz-content-sha256"] = hashlib.sha256(payload).hexdigest() if payload else EMPTY_SHA256
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    names = sorted(headers)
    canonical = "\n".join(
        (
            method,
            uri_encode(path, keep_slash=True),
            canonical_query(params),
            "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names),
            headers["x-amz-content-sha256"],
        )
    )
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join((ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), day)
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
