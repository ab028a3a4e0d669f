"""Where the apiserver is and how to authenticate: kubeconfig files and the in-cluster service account.

Our own loader rather than kubernetes_asyncio's: importing that package loads its ~700 generated model
modules, 36 MB of the controller's resident memory (docs/BENCHMARKS.md, "Memory"), for the sake of a
YAML file. What is supported, as kubectl resolves it:

- files: the explicit path, else every file of `$KUBECONFIG` (path-list, the first file to define a
  name wins, as kubectl merges), else `~/.kube/config`; relative paths in a file are relative to it;
- cluster: `server`, `certificate-authority[-data]`, `insecure-skip-tls-verify`, `tls-server-name`,
  `proxy-url`;
- user: `token`, `tokenFile` (re-read every minute: projected tokens rotate), `client-certificate[-data]`
  with `client-key[-data]`, `username`/`password`, and `exec` credential plugins
  (client.authentication.k8s.io v1 and v1beta1; the token is cached until its `expirationTimestamp` and
  refreshed after a 401). `auth-provider` (removed from client-go in 1.26) is refused with a clear error;
- in-cluster: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's CA and (rotating) token.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zen_flow.documents import DocumentError, load_one, read_bounded
from zen_flow.kube.credentials import (
    BasicAuth,
    Credentials,
    ExecPlugin,
    NoCredentials,
    StaticToken,
    TokenFile,
    load_cert_chain,
)
from zen_flow.kube.errors import KubeError
from zen_flow.kube.kubeconfig_schema import check_entry
from zen_flow.machinery.clock import Clock, SystemClock

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class KubeConfig:
    """An apiserver and the means to talk to it; an opaque handle for `KubeClient`."""

    host: str  # scheme://host[:port], no trailing slash
    source: str  # "in-cluster" or the kubeconfig path, for the startup log line
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)  # None: plain http
    credentials: Credentials = field(default_factory=NoCredentials, repr=False, compare=False)
    tls_server_name: str | None = None
    proxy: str | None = None
    namespace: str = ""  # the context's namespace (or the service account's): what kubectl defaults to


async def load_config(
    kubeconfig: str | None = None, context: str | None = None, *, clock: Clock | None = None
) -> KubeConfig:
    """Find the cluster like controller-runtime does: explicit path, then $KUBECONFIG, then in-cluster,
    then ~/.kube/config.

    An explicit choice ($KUBECONFIG) wins over the ambient service account, so `KUBECONFIG=... zen-flow`
    inside a pod talks to the cluster the user named. Nothing is ever written back.
    """
    clock = clock or SystemClock()
    paths = _kubeconfig_paths(kubeconfig)
    if not paths:
        return in_cluster_config(clock=clock)
    source = os.pathsep.join(str(p) for p in paths)
    try:
        return await _from_kubeconfig(paths, context, clock)
    except (OSError, ValueError, ssl.SSLError, binascii.Error) as err:
        raise KubeError(f"kubeconfig {source}: {err}") from err


def _kubeconfig_paths(explicit: str | None) -> list[Path]:
    """The kubeconfig files to merge, or none: use the in-cluster config."""
    env_paths = os.environ.get("KUBECONFIG", "")
    if explicit:
        return [Path(explicit).expanduser()]
    if env_paths:
        return [Path(p).expanduser() for p in env_paths.split(os.pathsep) if p]
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return []
    return [Path("~/.kube/config").expanduser()]


def in_cluster_config(*, clock: Clock | None = None, directory: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeError("in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    token, ca = directory / "token", directory / "ca.crt"
    if not token.is_file() or not ca.is_file():
        raise KubeError(f"in-cluster config: {token} or {ca} is missing (no service account mounted?)")
    server_host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return KubeConfig(
        host=f"https://{server_host}:{port}",
        source="in-cluster",
        ssl_context=ssl.create_default_context(cafile=str(ca)),
        credentials=TokenFile(token, clock=clock or SystemClock()),
        proxy=_env_proxy(host),
        namespace=_read_namespace(directory / "namespace"),
    )


def _read_namespace(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


# --- kubeconfig ---------------------------------------------------------------------------------------


@dataclass
class _Merged:
    """kubectl's merge of several files: per name, the first definition wins, with the file it came from."""

    clusters: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    users: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    current_context: str = ""

    def add(self, doc: Mapping[str, Any], path: Path) -> None:
        for section, target in (("clusters", self.clusters), ("users", self.users)):
            for index, entry in enumerate(_entries(doc, section)):
                name, body = check_entry(section, index, entry)
                target.setdefault(name, (body, path))
        for index, entry in enumerate(_entries(doc, "contexts")):
            name, body = check_entry("contexts", index, entry)
            self.contexts.setdefault(name, body)
        current = doc.get("current-context") or ""
        if not isinstance(current, str):
            raise ValueError("current-context must be a string")
        self.current_context = self.current_context or current


def _entries(doc: Mapping[str, Any], section: str) -> list[Any]:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise ValueError(f"{section} must be a list")
    return entries


def _read(paths: list[Path]) -> _Merged:
    merged = _Merged()
    for path in paths:
        if not path.exists() and len(paths) > 1:
            continue  # kubectl skips missing entries of a path list
        try:
            doc = load_one(read_bounded(path, MAX_KUBECONFIG_BYTES)) or {}
        except DocumentError as err:
            raise ValueError(f"{path}: {err}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path} is not a kubeconfig mapping")
        merged.add(doc, path)
    return merged


async def _from_kubeconfig(paths: list[Path], context: str | None, clock: Clock) -> KubeConfig:
    merged = _read(paths)
    name = context or merged.current_context
    if not name:
        raise ValueError("no context given and no current-context set")
    ctx = merged.contexts.get(name)
    if ctx is None:
        raise ValueError(f"context {name!r} not found")
    cluster_entry = merged.clusters.get(str(ctx.get("cluster", "")))
    if cluster_entry is None:
        raise ValueError(f"context {name!r}: cluster {ctx.get('cluster')!r} not found")
    cluster, cluster_file = cluster_entry
    user_name = str(ctx.get("user") or "")
    # A context without a user is anonymous; one naming a user nobody defined is a mistake (kubectl
    # refuses it too), not a reason to send requests without the credentials the user meant.
    user_entry = merged.users.get(user_name) if user_name else ({}, paths[0])
    if user_entry is None:
        raise ValueError(f"context {name!r}: user {user_name!r} not found")
    user, user_file = user_entry
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise ValueError(f"cluster {ctx.get('cluster')!r}: server {server!r} is not an http(s) URL")

    cluster_name = f"cluster {ctx.get('cluster')!r}"
    ssl_context = _ssl_context(cluster, cluster_file, cluster_name) if server.startswith("https://") else None
    credentials = _credentials(user, user_file, ssl_context, clock, _exec_cluster_info(cluster, cluster_file))
    if ssl_context is not None:
        _load_client_cert(ssl_context, user, user_file, f"user {user_name!r}")
        await credentials.prepare()  # an exec plugin may hand out the client certificate
    host = urllib.parse.urlsplit(server).hostname or ""
    return KubeConfig(
        host=server,
        source=os.pathsep.join(str(p) for p in paths),
        ssl_context=ssl_context,
        credentials=credentials,
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy=cluster.get("proxy-url") or _env_proxy(host),
        namespace=str(ctx.get("namespace") or ""),
    )


def _ssl_context(cluster: Mapping[str, Any], base: Path, owner: str) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if data := cluster.get("certificate-authority-data"):
        what = "certificate-authority-data"
        pem = _b64(data, owner, what)
    elif path := cluster.get("certificate-authority"):
        what = f"certificate-authority {path}"
        pem = _resolve(path, base).read_bytes()
    else:
        return ssl.create_default_context()  # the system trust store
    try:
        return ssl.create_default_context(cadata=_pem_text(pem))
    except (ValueError, ssl.SSLError) as err:  # ssl's words name neither the field nor its owner
        raise ValueError(f"{owner}: {what} holds no PEM certificate ({_ssl_words(err)})") from None


def _load_client_cert(context: ssl.SSLContext, user: Mapping[str, Any], base: Path, owner: str) -> None:
    cert = _pem(user, "client-certificate", base, owner)
    key = _pem(user, "client-key", base, owner)
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise ValueError("client-certificate and client-key must be given together")
    (cert_pem, cert_field), (key_pem, key_field) = cert, key
    try:  # the certificate alone first: ssl's one error for the pair names neither
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=_pem_text(cert_pem))
    except (ValueError, ssl.SSLError) as err:
        raise ValueError(f"{owner}: {cert_field} holds no PEM certificate ({_ssl_words(err)})") from None
    try:
        load_cert_chain(context, cert_pem, key_pem)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{owner}: {key_field} is not the key of {cert_field}") from None
        raise ValueError(f"{owner}: {key_field} holds no PEM private key ({_ssl_words(err)})") from None


def _pem_text(pem: bytes) -> str:
    """`pem` as ssl's `cadata` takes it (ASCII text only), without the lines holding other bytes: outside
    a PEM block such a line is a comment that a file given as `cafile` was read with (a system CA bundle's
    UTF-8 label, `# ... Főtanúsítvány`; `openssl pkcs12`'s friendlyName), inside one its block is left
    broken and ssl refuses it."""
    text = "".join(line.decode("ascii") for line in pem.splitlines(keepends=True) if line.isascii())
    if not text.strip():  # ssl takes an empty `cadata` as no certificates, without a word
        raise ValueError("no PEM text")
    return text


def _ssl_words(err: Exception) -> str:
    """ssl's (or the decoder's) reason, without the C source line (`... (_ssl.c:4020)`)."""
    return str(err).split(" (_ssl.c:")[0]


def _pem(user: Mapping[str, Any], name: str, base: Path, owner: str) -> tuple[bytes, str] | None:
    """The PEM of `name` (its `-data` or its file), and how to name where it came from."""
    if data := user.get(f"{name}-data"):
        return _b64(data, owner, f"{name}-data"), f"{name}-data"
    if path := user.get(name):
        return _resolve(path, base).read_bytes(), f"{name} {path}"
    return None


def _b64(data: object, owner: str, field_name: str) -> bytes:
    """A `*-data` field decoded as Go's base64 decodes it: line breaks ignored, anything else outside the
    alphabet refused (Python's lenient default would drop it and hand TLS a garbled certificate)."""
    text = "".join(str(data).split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{owner}: {field_name} is not base64") from None


def _credentials(
    user: Mapping[str, Any],
    base: Path,
    context: ssl.SSLContext | None,
    clock: Clock,
    cluster_info: Mapping[str, Any],
) -> Credentials:
    if "auth-provider" in user:
        provider = (user.get("auth-provider") or {}).get("name", "?")
        raise ValueError(
            f"user auth-provider {provider!r} is not supported (client-go removed auth providers in 1.26); "
            "use an exec credential plugin"
        )
    if token := user.get("token"):
        return StaticToken(str(token))
    if path := user.get("tokenFile"):
        return TokenFile(_resolve(path, base), clock=clock)
    if isinstance(exec_spec := user.get("exec"), dict):
        return ExecPlugin.from_kubeconfig(
            exec_spec, base, clock=clock, ssl_context=context, cluster_info=cluster_info
        )
    if user.get("username") is not None and user.get("password") is not None:
        return BasicAuth(str(user["username"]), str(user["password"]))
    return NoCredentials()


def _exec_cluster_info(cluster: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """The ExecCredential `spec.cluster` client-go hands a plugin that asks for it (`provideClusterInfo`):
    the cluster's connection fields, the CA inlined as data."""
    info: dict[str, Any] = {"server": str(cluster.get("server") or "")}
    for name in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "certificate-authority-data"):
        if cluster.get(name):
            info[name] = cluster[name]
    if "certificate-authority-data" not in info and (path := cluster.get("certificate-authority")):
        info["certificate-authority-data"] = base64.b64encode(_resolve(path, base).read_bytes()).decode()
    return info


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base.parent / candidate


def _env_proxy(host: str) -> str | None:
    """The HTTPS proxy from the environment, read once at start-up (NO_PROXY honoured).

    aiohttp's `trust_env=True` re-reads the proxy variables and ~/.netrc in a thread for every request:
    31 % of the controller's CPU in the benchmark. We decide once instead.
    """
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy
