"""Writing an admin kubeconfig for the local cluster, and reading the essentials of any kubeconfig."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONTEXT_NAME = "zenflow-dev"


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client_cert: Path, client_key: Path) -> Path:
    """Write a kubeconfig that embeds the CA and the client cert/key.

    Embedded rather than referenced by path, so the file stays usable when copied elsewhere and no
    tool resolves relative paths against a different working directory.
    """
    user = f"{CONTEXT_NAME}-admin"
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert),
                    "client-key-data": _b64(client_key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user}}],
        "current-context": CONTEXT_NAME,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass(frozen=True)
class KubeconfigTarget:
    """What the current context of a kubeconfig points at."""

    server: str
    ca_pem: bytes | None
    """The CA bundle (PEM) the context trusts, or None when it relies on the system trust store."""


def read_current_target(path: Path) -> KubeconfigTarget:
    """The server URL and CA of the kubeconfig's current context."""
    document = yaml.safe_load(path.read_text()) or {}
    context_name = document.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in document.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster", {}) for c in document.get("clusters") or []}
    if not context_name or context_name not in contexts:
        raise ValueError(f"{path}: no usable current-context")
    cluster = clusters.get(contexts[context_name].get("cluster", ""))
    if cluster is None or "server" not in cluster:
        raise ValueError(f"{path}: context {context_name!r} names no cluster with a server")
    ca_pem: bytes | None = None
    if "certificate-authority-data" in cluster:
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        ca_path = Path(cluster["certificate-authority"])
        if not ca_path.is_absolute():
            ca_path = path.parent / ca_path
        ca_pem = ca_path.read_bytes()
    return KubeconfigTarget(server=str(cluster["server"]), ca_pem=ca_pem)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")
