"""The Helm chart without helm: its metadata, values and copies of config/ files.

The chart rendered and linted by the real helm is tested in the tools tier (tests/tools/test_helm_render.py,
test_helm_values.py, test_helm_flags.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy_manifests import (
    CHART,
    CONFIG,
    ROOT,
    documents,
)

SYNCED = {
    CONFIG / "crd" / "jobflows.workflow.kube-zen.io.yaml": CHART
    / "files/crds/jobflows.workflow.kube-zen.io.yaml",
    CONFIG / "crd" / "admission-policies.yaml": CHART / "files/crds/admission-policies.yaml",
    CONFIG / "prometheus" / "prometheusrule.yaml": CHART / "files/prometheusrule.yaml",
    CONFIG / "grafana" / "dashboard.json": CHART / "files/dashboard.json",
}
RELEASE, NAMESPACE = "zen-flow", "zen-flow-system"  # the names config/ uses


# --- without helm -----------------------------------------------------------------------------------


def test_chart_metadata_and_values_parse() -> None:
    chart = documents(CHART / "Chart.yaml")[0]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == "0.1.0"
    values = documents(CHART / "values.yaml")[0]
    assert values["replicaCount"] == 2
    assert values["leaderElection"]["enabled"] is True
    assert values["webhook"]["enabled"]
    assert values["webhook"]["certManager"]["enabled"]
    assert values["crds"]["install"] is True
    for key in ("workers", "qps", "burst"):
        assert key in values["controller"]
    assert "serviceMonitor" in values["metrics"]
    assert "prometheusRule" in values["metrics"]


def _chart_yaml_files() -> list[Path]:
    """Every YAML file of the chart that is not a template (templates are checked rendered)."""
    return sorted(p for p in CHART.rglob("*.yaml") if "templates" not in p.relative_to(CHART).parts)


@pytest.mark.parametrize("path", _chart_yaml_files(), ids=lambda p: str(p.relative_to(CHART)))
def test_every_non_template_chart_yaml_parses(path: Path) -> None:
    assert documents(path), f"{path} is empty"


@pytest.mark.parametrize("source", sorted(SYNCED), ids=lambda p: p.name)
def test_chart_copy_equals_its_source_in_config(source: Path) -> None:
    assert SYNCED[source].read_bytes() == source.read_bytes(), "run tools/sync-chart-files.sh"


def test_sync_script_check_mode_agrees() -> None:
    done = subprocess.run(
        [str(ROOT / "tools" / "sync-chart-files.sh"), "--check"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
