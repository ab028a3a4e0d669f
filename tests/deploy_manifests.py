"""Reading the deployment manifests (config/, charts/) and the PromQL in them, for the manifest tests."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.metrics import MetricWrapperBase

from zen_flow import config
from zen_flow.api.constants import StepPhase
from zen_flow.cli import build_parser
from zen_flow.controller.metric_collectors import InformerStats
from zen_flow.controller.metrics import Metrics
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
CHART = ROOT / "charts" / "zen-flow"
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Labels Prometheus (Operator) puts on every scraped series; `le` comes with histogram buckets.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint", "container"})
# Series Prometheus makes itself.
PROMETHEUS_SERIES = frozenset({"up"})
# Grafana variables in dashboard queries, replaced by example values before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": "zen-flow-controller-metrics", "$namespace": ".*"}


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def config_yaml_files() -> list[Path]:
    """Every YAML file under config/ (kustomizations included)."""
    files = [p for p in CONFIG.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")]
    return sorted(files + list(CONFIG.rglob("Kustomization")))


def objects(*dirs: str) -> list[dict[str, Any]]:
    """The Kubernetes objects in config/<dir>/ (kustomization files excluded)."""
    out: list[dict[str, Any]] = []
    for name in dirs:
        for path in sorted((CONFIG / name).glob("*.yaml")):
            if path.name not in KUSTOMIZATION_NAMES:
                out.extend(documents(path))
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def find_all(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def container(deployment: dict[str, Any], name: str = "controller") -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def settings_of(deployment: dict[str, Any]) -> config.Settings:
    """The Settings the controller would start with: the container's args parsed by the real CLI
    parser (argparse exits on an unknown flag) and converted by `config.load` (which raises on a bad
    value), with the container's literal ZEN_FLOW_ environment."""
    c = container(deployment)
    args = build_parser().parse_args(c["args"])
    assert args.command == "run", c["args"]
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    return config.load(args, env=env)


# --- metrics ----------------------------------------------------------------------------------------


@cache
def metric_catalog() -> dict[str, frozenset[str]]:
    """Every series name zen-flow exports -> its label names (as in the /metrics text format)."""
    metrics = Metrics()
    flow = make_flow([job_step("a"), manual_step("b", "a")], namespace="team-a")
    flow = flow.model_copy(
        update={
            "status": flow.status.model_copy(
                update={
                    "phase": "Paused",
                    "steps": (
                        _step_status("a", StepPhase.SUCCEEDED),
                        _step_status("b", StepPhase.PENDING_APPROVAL),
                    ),
                }
            )
        }
    )
    metrics.watch_flows(lambda: [flow])
    metrics.watch_job_creates(lambda: [flow.key])
    metrics.watch_status_held(lambda: [flow.key])
    metrics.watch_informers(lambda: [InformerStats("jobs", {"ADDED": 1}, 1)])
    metrics.watch_events(lambda: {"queue_full": 0, "failed": 0})
    catalog: dict[str, frozenset[str]] = {}
    for wrapper in vars(metrics).values():
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        # `_labelnames` is private, but the only way to learn the labels of a metric with no sample yet.
        labels = frozenset(wrapper._labelnames)
        for family in wrapper.describe():
            catalog.update(_series_names(family.name, family.type, labels))
    for family in metrics.registry.collect():
        for sample in family.samples:
            catalog.setdefault(sample.name, frozenset(sample.labels))
    return catalog


def _step_status(name: str, phase: StepPhase) -> Any:
    from zen_flow.api.flow_status import StepStatus

    return StepStatus(name=name, phase=phase.value)


def _series_names(name: str, kind: str, labels: frozenset[str]) -> dict[str, frozenset[str]]:
    if kind == "counter":
        return {f"{name}_total": labels}
    if kind == "histogram":
        return {
            f"{name}_bucket": labels | {"le"},
            f"{name}_sum": labels,
            f"{name}_count": labels,
        }
    if kind == "gauge":
        return {name: labels}
    raise AssertionError(f"{name}: unexpected metric type {kind}")


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: dict[str, str]  # label -> value (for =, =~, != and !~ alike)


def parse_promql(expr: str) -> Any:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[Selector]:
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(Selector(node.name, {m.name: m.value for m in node.matchers.matchers}))

    promql_parser.walk(parse_promql(expr), pre_visit=visit)
    return found


def unaggregated_rates(expr: str) -> list[str]:
    """rate()/increase()/irate() calls not inside an aggregation (sum, max, ...)."""
    depth = 0
    bad: list[str] = []

    def pre(node: Any) -> None:
        nonlocal depth
        if isinstance(node, promql_parser.AggregateExpr):
            depth += 1
        elif (
            isinstance(node, promql_parser.Call)
            and node.func.name in ("rate", "increase", "irate")
            and depth == 0
        ):
            bad.append(str(node))

    def post(node: Any) -> None:
        nonlocal depth
        if isinstance(node, promql_parser.AggregateExpr):
            depth -= 1

    promql_parser.walk(parse_promql(expr), pre_visit=pre, post_visit=post)
    return bad


def dashboard_variable_metrics(dashboard: dict[str, Any]) -> list[str]:
    """Metric names in the template variables' label_values(...) queries."""
    out: list[str] = []
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        out += re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", text)
    return out


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
