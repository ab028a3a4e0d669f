"""The one kubectl runner of the tests: `kubectl(*args, input=None, check=True)` bound to a binary and a
kubeconfig, raising `KubectlError` (stdout and stderr in the message) when `check` and it fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

import yaml


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def kubectl_runner(
    binary: str | Path, kubeconfig: Path, *, cache_dir: Path | None = None, timeout: float = 120
) -> Kubectl:
    """`cache_dir`: kubectl's discovery cache (KUBECACHEDIR), kept per test session instead of ~/.kube."""
    env = {**os.environ, **({"KUBECACHEDIR": str(cache_dir)} if cache_dir is not None else {})}
    base = [str(binary), f"--kubeconfig={kubeconfig}"]

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*base, *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    return run


def kustomize_with_components(
    kubectl: str | Path, config: Path, components: list[str], workdir: Path
) -> list[dict[str, Any]]:
    """The objects of an overlay of `config`/default with `config`/components/`components`, as a user
    would write it (in `workdir`), built by `kubectl kustomize`."""
    overlay = workdir / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(config / "default", overlay)],
                "components": [os.path.relpath(config / "components" / c, overlay) for c in components],
            }
        )
    )
    built = subprocess.run(
        [str(kubectl), "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(built) if d]
