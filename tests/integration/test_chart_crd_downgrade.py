"""The chart never applies a CRD older than the installed one (charts/zen-flow/templates/crd.yaml): it reads
the installed CRD's schema revision (annotation workflow.kube-zen.io/crd-revision) with `lookup`, which
needs a cluster, so this renders the chart against the tier's real kube-apiserver (`helm template
--dry-run=server`, as `helm upgrade` renders). An older CRD would prune the fields only the newer one has
from every stored flow at its next write, for good. Not covered: `helm rollback`, which renders nothing
(it applies the stored manifest): docs/OPERATOR_GUIDE.md says so."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.api.constants import CRD_NAME
from zen_flow_dev.testing.crd import JOBFLOW_CRD_PATH
from zen_flow_dev.testing.kubectl import Kubectl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ANNOTATION = "workflow.kube-zen.io/crd-revision"
SHIPPED = int(yaml.safe_load(JOBFLOW_CRD_PATH.read_text())["metadata"]["annotations"][ANNOTATION])


@pytest.fixture(scope="module")
def helm() -> str:
    if override := os.environ.get("ZENFLOW_HELM"):
        return override
    built = subprocess.run(
        [str(ROOT / "tools" / "build-gotool.sh"), "helm"], capture_output=True, text=True, timeout=1200
    )
    if built.returncode != 0:
        pytest.skip(f"helm could not be built: {built.stderr.strip()[-300:]}")
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture
def installed_revision(kubectl: Kubectl, jobflow_crd: Any) -> Iterator[Any]:
    """Sets the installed JobFlow CRD's revision for the test; the shipped one again afterwards."""

    def set_revision(revision: int) -> None:
        kubectl("annotate", "--overwrite", "crd", CRD_NAME, f"{ANNOTATION}={revision}")

    try:
        yield set_revision
    finally:
        set_revision(SHIPPED)


def render(helm: str, kubeconfig: Path, *values: str) -> subprocess.CompletedProcess[str]:
    sets = [arg for value in values for arg in ("--set", value)]
    return subprocess.run(
        [helm, "template", "zen-flow", str(ROOT / "charts" / "zen-flow"), "--namespace", "zen-flow-system",
         "--dry-run=server", "--kubeconfig", str(kubeconfig), *sets],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_older_crd_is_refused_unless_allowed_and_an_equal_or_older_installed_one_is_replaced(
    helm: str, kubeconfig: Path, installed_revision: Any
) -> None:
    installed_revision(SHIPPED + 1)  # a newer release's CRD is installed
    refused = render(helm, kubeconfig)
    assert refused.returncode != 0
    assert f"the installed CRD {CRD_NAME} is newer (schema revision {SHIPPED + 1})" in refused.stderr
    assert "crds.install=false" in refused.stderr  # the way to roll back the controller only
    assert render(helm, kubeconfig, "crds.install=false").returncode == 0
    allowed = render(helm, kubeconfig, "crds.allowDowngrade=true")
    assert allowed.returncode == 0, allowed.stderr
    assert f"name: {CRD_NAME}" in allowed.stdout
    for revision in (SHIPPED, SHIPPED - 1):  # the same release's, or an older one's: upgraded as ever
        installed_revision(revision)
        upgraded = render(helm, kubeconfig)
        assert upgraded.returncode == 0, upgraded.stderr
