"""A fake S3 on loopback for the flow archive's client tests: it checks each request's SigV4 signature
against the Host header it received (as real stores do), answers in pieces with no Content-Length
(chunked, as a store or a proxy may), pages ListObjectsV2 answers, checks a PUT's Content-MD5 (400
BadDigest), and can play a missing bucket, a web server that is not S3 at all, or a gateway answering a
PUT 200 without an ETag."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote
from xml.sax.saxutils import escape

from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow.core.sigv4 import Credentials, signed_headers

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "secret/key+x"
MISSING_BUCKET = "no-such-bucket"
NOT_S3_BUCKET = "not-s3"  # answered 200 with an HTML page, as a web server at the wrong port does


@dataclass
class FakeS3:
    bucket: str = "flows"
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # key -> (body, LastModified)
    page_size: int = 1000
    secret_key: str = SECRET_KEY  # the secret the store accepts now (a rotation changes it)
    session_token: str = ""  # the token it requires, if any
    hosts: list[str] = field(default_factory=list)  # the Host header of every request
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    refused: int = 0  # requests refused for their signature or token
    etag: bool = True  # False: a PUT is answered 200 without an ETag (a gateway that is not S3)
    digests: list[str] = field(default_factory=list)  # the Content-MD5 of every PUT, as received

    def put(self, key: str, body: bytes, last_modified: str = "2026-03-01T12:00:00.000Z") -> None:
        self.objects[key] = (body, last_modified)

    def _signed(self, req: web.Request, body: bytes) -> bool:
        auth = req.headers.get("Authorization", "")
        found = re.search(r"SignedHeaders=([^,]+), Signature=(\w+)", auth)
        if found is None or req.headers.get("x-amz-security-token", "") != self.session_token:
            return False
        auto = ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token")
        extra = {n: req.headers[n] for n in found[1].split(";") if n not in auto}
        raw_path, _, raw_query = req.raw_path.partition("?")
        params = [
            (unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in raw_query.split("&") if p)
        ]
        want = signed_headers(
            method=req.method,
            host=req.headers["Host"],
            path=unquote(raw_path),
            params=params,
            payload=body,
            credentials=Credentials(ACCESS_KEY, self.secret_key, self.session_token),
            region="us-east-1",
            now=datetime.strptime(req.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
            extra=extra,
        )
        return want["authorization"] == auth

    async def handle(self, req: web.Request) -> web.StreamResponse:
        body = await req.read()
        self.hosts.append(req.headers.get("Host", ""))
        self.requests.append((req.method, req.path))
        if not self._signed(req, body):
            self.refused += 1
            return _error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
        bucket, _, key = unquote(req.raw_path.partition("?")[0]).lstrip("/").partition("/")
        if bucket == NOT_S3_BUCKET:
            return web.Response(text="<html><body>Welcome to nginx!</html>", content_type="text/html")
        if bucket != self.bucket:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        if req.method == "PUT":
            digest = req.headers.get("Content-MD5")
            self.digests.append(digest or "")
            if digest is not None and digest != base64.b64encode(hashlib.md5(body).digest()).decode():
                return _error(
                    400, "BadDigest", "The Content-MD5 you specified did not match what we received."
                )
            self.put(key, body)
            return web.Response(headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'} if self.etag else {})
        if key:
            if key not in self.objects:
                return _error(404, "NoSuchKey", "The specified key does not exist.")
            return await _chunked(req, self.objects[key][0])
        return await _chunked(
            req, self._listing(req.query.get("prefix", ""), req.query.get("continuation-token"))
        )

    def _listing(self, prefix: str, token: str | None) -> bytes:
        keys = sorted(k for k in self.objects if k.startswith(prefix))
        start = int(token) if token else 0
        page, more = keys[start : start + self.page_size], start + self.page_size < len(keys)
        xml = ['<?xml version="1.0" encoding="UTF-8"?>'
               '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
               f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]  # fmt: skip
        if more:
            xml.append(f"<NextContinuationToken>{start + self.page_size}</NextContinuationToken>")
        for key in page:
            data, modified = self.objects[key]
            xml.append(
                f"<Contents><Key>{escape(key)}</Key><Size>{len(data)}</Size><LastModified>{modified}"
                '</LastModified><ETag>"0"</ETag><StorageClass>STANDARD</StorageClass></Contents>'
            )
        xml.append("</ListBucketResult>")
        return "".join(xml).encode()


def _error(status: int, code: str, message: str) -> web.Response:
    text = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return web.Response(status=status, text=text, content_type="application/xml")


async def _chunked(req: web.Request, data: bytes) -> web.StreamResponse:
    """The body in 64 KB pieces, chunked (no Content-Length), yielding between them as a network does."""
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(req)
    for i in range(0, len(data), 65536):
        await resp.write(data[i : i + 65536])
        await asyncio.sleep(0)
    await resp.write_eof()
    return resp


@asynccontextmanager
async def fake_s3(store: FakeS3 | None = None) -> AsyncIterator[tuple[FakeS3, str]]:
    """The fake store and its endpoint (http://127.0.0.1:PORT)."""
    store = store or FakeS3()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", store.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield store, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()
