"""The Helm chart without helm: its metadata, values and copies of config/ files.

The chart rendered and linted by the real helm is tested in the tools tier (tests/tools/test_helm_render.py,
test_helm_values.py, test_helm_flags.py).
"""

from __future__ import annotations

import json
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


def _schema_paths(schema: dict[str, object], prefix: str = "") -> set[str]:
    """The dotted paths of the values the schema lists, down to its open (free-form) objects."""
    paths: set[str] = set()
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            path = f"{prefix}{key}"
            paths.add(path)
            if isinstance(sub, dict):
                paths |= _schema_paths(sub, f"{path}.")
    return paths


def _value_paths(values: dict[str, object], schema: dict[str, object], prefix: str = "") -> set[str]:
    """The dotted paths of values.yaml, descending only where the schema closes the object (a Kubernetes
    object passed through, as resources, is one value)."""
    paths: set[str] = set()
    properties = schema.get("properties")
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        sub = properties.get(key) if isinstance(properties, dict) else None
        if isinstance(value, dict) and isinstance(sub, dict) and sub.get("additionalProperties") is False:
            paths |= _value_paths(value, sub, f"{path}.")
    return paths


def test_the_values_schema_lists_every_value_and_refuses_the_others() -> None:
    # helm checks values against values.schema.json: a value missing there would fail every install,
    # and one listed there but not in values.yaml is an undocumented setting (but a parent chart's
    # `global`, and the fields of issuerRef, `{}` by default, that its comment names).
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = documents(CHART / "values.yaml")[0]
    assert schema["additionalProperties"] is False
    issuer = {f"webhook.certManager.issuerRef.{field}" for field in ("name", "kind", "group")}
    assert _schema_paths(schema) - _value_paths(values, schema) == {"global"} | issuer
