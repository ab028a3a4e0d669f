"""How the Helm chart tests render the chart with the real helm (`helm template` with a set of values)
and read what it rendered; the `helm` fixture is in conftest.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy_manifests import CHART, find

RELEASE, NAMESPACE = "zen-flow", "zen-flow-system"  # the names config/ uses


def render(
    helm: str,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values or {}))
    done = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, "--values", str(values_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RenderError(done.stderr)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


class RenderError(Exception):
    pass


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")


def identity(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")) for d in docs}
