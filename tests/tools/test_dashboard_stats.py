"""The dashboard's "Leader" stat colours what a deployment's Leases look like, evaluated by promtool.

The panel's query is evaluated by Prometheus' own engine on the series a deployment exports, and its value
is coloured by the panel's own thresholds (one alerting rule per threshold step, labelled with the step's
colour, fires where the value falls in that step). A healthy deployment is green whether it runs one
Lease or, with --shards N, N shard Leases; a Lease nobody holds is red, one two replicas hold orange.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_manifests import CONFIG, load_dashboard
from zen_flow_dev.testing.prometheus import FETCH_HINT, prometheus_tool, substitute

DASHBOARD = load_dashboard(CONFIG / "grafana" / "dashboard.json")
JOB = "zen-flow-controller-metrics"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = prometheus_tool("promtool")
    if found is None:
        pytest.skip(f"promtool is not fetched: {FETCH_HINT}")
    return str(found)


def _panel(title: str) -> dict[str, Any]:
    panels = [p for p in DASHBOARD["panels"] if p.get("title") == title]
    assert len(panels) == 1, f"one panel {title!r}"
    return panels[0]


def _colour_rules(panel: dict[str, Any]) -> list[dict[str, Any]]:
    """An alert "Colour" per threshold step, firing with the step's colour where the value lies in it."""
    expr = substitute(panel["targets"][0]["expr"], {"$job": JOB})
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    rules = []
    for i, step in enumerate(steps):
        low = "" if step["value"] is None else f" >= {step['value']}"
        high = f" < {steps[i + 1]['value']}" if i + 1 < len(steps) else ""
        rules.append({"alert": "Colour", "expr": f"({expr}){low}{high}", "labels": {"colour": step["color"]}})
    return rules


def _leader(instance: str, lease: str, value: int) -> dict[str, str]:
    labels = f'job="{JOB}", instance="{instance}", namespace="zen-flow", name="{lease}"'
    return {"series": f"leader_election_master_status{{{labels}}}", "values": f"{value}x10"}


def _sharded(
    holders: dict[int, list[str]], replicas: tuple[str, ...] = ("a", "b", "c")
) -> list[dict[str, str]]:
    """Every replica exports every shard Lease's series: 1 where it holds that shard."""
    return [
        _leader(r, f"zen-flow-controller-shard-{shard}", int(r in held))
        for shard, held in holders.items()
        for r in replicas
    ]


CASES = {
    "one Lease, a leader and a standby": (
        [_leader("a", "zen-flow-controller", 1), _leader("b", "zen-flow-controller", 0)],
        "green",
    ),
    "--shards 4 over three replicas, each shard held once": (
        _sharded({0: ["a"], 1: ["a"], 2: ["b"], 3: ["c"]}),
        "green",
    ),
    "--shards 4, a shard nobody holds": (_sharded({0: ["a"], 1: ["a"], 2: ["b"], 3: []}), "red"),
    "one Lease two replicas believe they hold": (
        [_leader("a", "zen-flow-controller", 1), _leader("b", "zen-flow-controller", 1)],
        "orange",
    ),
    "--shards 4, a shard two replicas hold": (
        _sharded({0: ["a"], 1: ["a"], 2: ["b"], 3: ["b", "c"]}),
        "orange",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_leader_stat_colours_the_leases(promtool: str, tmp_path: Path, case: str) -> None:
    series, colour = CASES[case]
    rules = {"groups": [{"name": "stat", "rules": _colour_rules(_panel("Leader"))}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    scenario = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "Colour",
                        "exp_alerts": [{"exp_labels": {"colour": colour}}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
