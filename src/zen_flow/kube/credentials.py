"""How a request proves who we are: the `Authorization` header, and for exec plugins a client certificate.

Every kind answers `authorization()` (None: no header) and `invalidate()` after a 401 (True when fetching
again may help, so the client retries once). Rotating credentials are re-read, not cached forever:
client-go re-reads a token file every minute and re-runs an exec plugin when its credential expires or
the apiserver refuses it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from zen_flow.api.meta import parse_time
from zen_flow.kube.errors import KubeError
from zen_flow.machinery.clock import Clock

TOKEN_FILE_REFRESH = 60.0  # seconds, client-go's cached token file source
EXEC_TIMEOUT = 60.0  # a plugin may prompt a browser login; longer means something is stuck
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class Credentials:
    """No credentials (client certificates are part of the TLS context, not of a request)."""

    async def prepare(self) -> None:
        """Fetch whatever must exist before the first connection (an exec plugin's client certificate)."""

    async def authorization(self) -> str | None:
        return None

    def invalidate(self) -> bool:
        return False


class NoCredentials(Credentials):
    pass


class StaticToken(Credentials):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def authorization(self) -> str | None:
        return self._header


class BasicAuth(Credentials):
    def __init__(self, username: str, password: str) -> None:
        self._header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    async def authorization(self) -> str | None:
        return self._header


class TokenFile(Credentials):
    """A bearer token re-read from its file every minute (projected service-account tokens rotate)."""

    def __init__(self, path: Path, *, clock: Clock, refresh: float = TOKEN_FILE_REFRESH) -> None:
        self._path = path
        self._clock = clock
        self._refresh = refresh
        self._header: str | None = None
        self._read_at = 0.0

    async def authorization(self) -> str | None:
        now = self._clock.monotonic()
        if self._header is None or now - self._read_at >= self._refresh:
            try:
                token = self._path.read_text().strip()
            except OSError as err:
                if self._header is None:
                    raise KubeError(f"token file {self._path}: {err}") from err
                return self._header  # keep the last good token; the next call tries again
            self._header, self._read_at = f"Bearer {token}", now
        return self._header

    def invalidate(self) -> bool:
        self._header = None
        return True


class ExecPlugin(Credentials):
    """A client-go exec credential plugin: runs `command`, reads an ExecCredential from its stdout."""

    def __init__(
        self,
        command: str,
        args: tuple[str, ...],
        env: Mapping[str, str],
        api_version: str,
        *,
        clock: Clock,
        ssl_context: ssl.SSLContext | None,
        cluster: Mapping[str, Any] | None = None,
    ) -> None:
        self._command = command
        self._args = args
        self._env = dict(env)
        self._api_version = api_version
        self._clock = clock
        self._ssl_context = ssl_context
        self._cluster = cluster
        self._header: str | None = None
        self._fetched = False
        self._expires: datetime | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_kubeconfig(
        cls,
        spec: Mapping[str, Any],
        base: Path,
        *,
        clock: Clock,
        ssl_context: ssl.SSLContext | None,
        cluster_info: Mapping[str, Any],
    ) -> ExecPlugin:
        api_version = str(spec.get("apiVersion") or "")
        if api_version not in EXEC_API_VERSIONS:
            raise ValueError(
                f"exec plugin apiVersion {api_version!r} is not one of {', '.join(EXEC_API_VERSIONS)}"
            )
        command = str(spec.get("command") or "")
        if not command:
            raise ValueError("exec plugin: command is empty")
        # A command given as a relative path ("./bin/x") is relative to the kubeconfig, as in client-go.
        if os.sep in command and not os.path.isabs(command):
            command = str(base.parent / command)
        env = {str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or () if "name" in e}
        cluster = dict(cluster_info) if spec.get("provideClusterInfo") else None
        return cls(
            command,
            tuple(str(a) for a in spec.get("args") or ()),
            env,
            api_version,
            clock=clock,
            ssl_context=ssl_context,
            cluster=cluster,
        )

    async def prepare(self) -> None:
        await self.authorization()

    async def authorization(self) -> str | None:
        if self._valid():
            return self._header
        async with self._lock:  # one plugin run for all the requests that found the credential stale
            if not self._valid():
                await self._run()
        return self._header

    def invalidate(self) -> bool:
        self._fetched = False
        return True

    def _valid(self) -> bool:
        return self._fetched and (self._expires is None or self._clock.now() < self._expires)

    async def _run(self) -> None:
        request: dict[str, Any] = {"apiVersion": self._api_version, "kind": "ExecCredential", "spec": {}}
        if self._cluster is not None:
            request["spec"]["cluster"] = self._cluster
        request["spec"]["interactive"] = False
        env = {**os.environ, **self._env, "KUBERNETES_EXEC_INFO": json.dumps(request)}
        try:
            process = await asyncio.create_subprocess_exec(
                self._command,
                *self._args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(EXEC_TIMEOUT):
                stdout, stderr = await process.communicate()
        except (OSError, TimeoutError) as err:
            raise KubeError(f"exec plugin {self._command}: {err!r}") from err
        if process.returncode != 0:
            detail = stderr.decode(errors="replace")[-500:].strip()
            raise KubeError(f"exec plugin {self._command} exited with {process.returncode}: {detail}")
        self._apply(_parse_credential(stdout, self._command))

    def _apply(self, status: Mapping[str, Any]) -> None:
        token = status.get("token")
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if not token and not (cert and key):
            raise KubeError(
                f"exec plugin {self._command}: the credential has neither a token nor a certificate"
            )
        if cert and key:
            if self._ssl_context is None:
                raise KubeError(f"exec plugin {self._command}: a client certificate needs an https server")
            load_cert_chain(self._ssl_context, str(cert).encode(), str(key).encode())
        self._header = f"Bearer {token}" if token else None
        expiry = status.get("expirationTimestamp")
        self._expires = parse_time(str(expiry)) if expiry else None  # RFC 3339; always aware
        self._fetched = True


def load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """`SSLContext.load_cert_chain` reads files only: hand it the PEM through a private temporary file,
    removed at once. Later connections use the new certificate; open ones keep theirs."""
    with tempfile.TemporaryDirectory(prefix="zen-flow-cert-") as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_file.write_bytes(cert)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        context.load_cert_chain(str(cert_file), str(key_file))


def _parse_credential(stdout: bytes, command: str) -> Mapping[str, Any]:
    try:
        credential = json.loads(stdout)
    except ValueError as err:
        raise KubeError(f"exec plugin {command}: stdout is not an ExecCredential: {stdout[:200]!r}") from err
    status = credential.get("status") if isinstance(credential, dict) else None
    if not isinstance(status, dict):
        raise KubeError(f"exec plugin {command}: the ExecCredential has no status")
    return status
