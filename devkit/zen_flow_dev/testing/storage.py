"""A real S3-compatible server for the artifact tests: Versity's S3 gateway (versitygw, Apache-2.0),
built from its Go module by `tools/build-gotool.sh versitygw` and cached outside the repository.

One process, one port, AWS Signature V4 with static keys, objects as plain files under a directory the
test owns. It listens on loopback, or on the real node's address inside the node's network namespace
(`argv_prefix=in_node`), so pods can reach it; nothing else is ever dialled.
"""

from __future__ import annotations

import http.server
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zen_flow_dev.cluster.adminclient import wait_until

REPO = Path(__file__).resolve().parents[3]
MISSING = "versitygw is not built: run `tools/build-gotool.sh versitygw` once (about a minute, cached)"


def cached_tool(tool: str) -> Path | None:
    """The newest cached build of `tools/build-gotool.sh TOOL` (versions compared as numbers: v0.17.0
    is newer than v0.9.3), or None."""
    cache = Path(os.environ.get("ZENFLOW_CACHE") or Path.home() / ".cache" / "zen-flow")
    found = (cache / "tools").glob(f"{tool}-*/bin/{tool}")
    return max(
        found, key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.parent.name)], default=None
    )


def versitygw_binary() -> Path | None:
    """$ZENFLOW_VERSITYGW, else the cached build of tools/build-gotool.sh (None when neither exists)."""
    if override := os.environ.get("ZENFLOW_VERSITYGW"):
        return Path(override)
    return cached_tool("versitygw")


@dataclass
class S3Server:
    binary: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free loopback port
    argv_prefix: Callable[[Sequence[str]], list[str]] = list
    region: str = "us-east-1"
    access_key: str = field(default_factory=lambda: "zf" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    data: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zen-flow-s3-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        if not self.port:
            from zen_flow_dev.testing.controller import free_port

            self.port = free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        # Keys through the environment, not argv: `ps` shows argv to every user of the machine.
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": self.access_key, "ROOT_SECRET_ACCESS_KEY": self.secret_key}
        argv = [str(self.binary), "--port", f"{self.host}:{self.port}", "--region", self.region]
        argv += ["--health", "/health", "--quiet", "posix", str(self.data)]
        self.process = subprocess.Popen(
            self.argv_prefix(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_until(self._healthy, 20.0, f"the S3 server on {self.endpoint}", abort=self._exited)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _exited(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
        return f"versitygw exited with status {self.process.returncode}: {err[-2000:]}"

    def client(self) -> Any:
        from minio import Minio

        return Minio(
            f"{self.host}:{self.port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
        )

    def bucket(self, name: str) -> str:
        client = self.client()
        if not client.bucket_exists(name):
            client.make_bucket(name)
        return name

    def object_bytes(self, bucket: str, key: str) -> bytes:
        response = self.client().get_object(bucket, key)
        try:
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.data, ignore_errors=True)


class FileServer(http.server.ThreadingHTTPServer):
    """A plain HTTP server for http input artifacts: serves `files` (path -> bytes); paths under
    /private/ need `Authorization: Bearer let-me-in`; `redirects` (path -> URL) answer 302;
    `seen_headers` records each request's headers."""

    files: dict[str, bytes]
    redirects: dict[str, str]
    seen_headers: list[dict[str, str]]

    @classmethod
    def on_loopback(cls) -> FileServer:
        server = cls(("127.0.0.1", 0), _FileHandler)
        server.files, server.redirects, server.seen_headers = {}, {}, []
        return server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.seen_headers.append(dict(self.headers.items()))
        path = self.path.split("?", 1)[0]
        if (target := self.server.redirects.get(path)) is not None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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
