"""An already-running cluster named by ZENFLOW_TEST_KUBECONFIG, behind the same surface as LocalCluster."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zen_flow_dev.cluster.kubeconfig import read_current_target

EXISTING_CLUSTER_ENV = "ZENFLOW_TEST_KUBECONFIG"


@dataclass(frozen=True)
class ExternalCluster:
    """`kubeconfig`, `ca_cert` and `server` of a cluster we did not start; it has no component logs.

    `ca_cert` is None when the kubeconfig trusts the system store (no certificate-authority set).
    """

    kubeconfig: Path
    server: str
    ca_cert: Path | None
    profile: Literal["external"] = "external"
    log_dir: Path | None = field(default=None)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, scratch_dir: Path) -> ExternalCluster:
        """Read the current context; an embedded CA is written to `scratch_dir/ca.crt`."""
        target = read_current_target(kubeconfig)
        ca_cert: Path | None = None
        if target.ca_pem is not None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
            ca_cert = scratch_dir / "ca.crt"
            ca_cert.write_bytes(target.ca_pem)
        return cls(kubeconfig=kubeconfig.resolve(), server=target.server, ca_cert=ca_cert)

    def component_logs(self) -> dict[str, Path]:
        return {}

    def log_tails(self, lines: int = 60) -> dict[str, str]:
        return {}

    def start(self) -> ExternalCluster:
        return self

    def stop(self) -> None:
        """Nothing to do: the cluster belongs to whoever started it."""


def existing_kubeconfig(environ: Mapping[str, str] | None = None) -> Path | None:
    """The kubeconfig named by ZENFLOW_TEST_KUBECONFIG, or None when unset/empty."""
    value = (os.environ if environ is None else environ).get(EXISTING_CLUSTER_ENV, "")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{EXISTING_CLUSTER_ENV}={value}: no such file")
    return path
