"""The alerts fire when they should, checked by Prometheus' own rule engine (promtool).

`promtool check rules` validates every expression and annotation template; `promtool test rules` runs the
scenarios of tests/tools/data/alert_tests.yaml: nothing scraped, a healthy pair whose standby exports a 0
leader series, a lost leader, a backed-up leader queue, keys that wait long in it, Job creates refused for
hours, 403s, stuck and failing flows, certificates.

promtool comes from Debian's prometheus package, unpacked into the tool cache by
`tools/fetch-prometheus.sh` (seconds; `make test` runs it first and passes ZENFLOW_PROMETHEUS_BIN). Run
alone, these tests use that cache (or ZENFLOW_PROMTOOL) and are skipped without it, saying how to get it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_manifests import CONFIG, documents
from zen_flow_dev.testing.prometheus import FETCH_HINT, prometheus_tool

RULES = documents(CONFIG / "prometheus" / "prometheusrule.yaml")[0]
SCENARIOS = Path(__file__).parent / "data" / "alert_tests.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = prometheus_tool("promtool")
    if found is None:
        pytest.skip(f"promtool is not fetched: {FETCH_HINT}")
    return str(found)


def _write_rules(path: Path, *, annotations: bool) -> None:
    groups: list[dict[str, Any]] = []
    for group in RULES["spec"]["groups"]:
        rules = [
            {k: v for k, v in rule.items() if annotations or k != "annotations"} for rule in group["rules"]
        ]
        groups.append({**group, "rules": rules})
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    _write_rules(rules, annotations=True)
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_in_the_scenarios(promtool: str, tmp_path: Path) -> None:
    _write_rules(tmp_path / "rules.yaml", annotations=False)
    shutil.copy(SCENARIOS, tmp_path / "alert_tests.yaml")
    done = subprocess.run(
        [promtool, "test", "rules", "alert_tests.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_scenario() -> None:
    scenarios = yaml.safe_load(SCENARIOS.read_text())
    tested = {t["alertname"] for case in scenarios["tests"] for t in case.get("alert_rule_test", [])}
    untested = {r["alert"] for g in RULES["spec"]["groups"] for r in g["rules"]} - tested
    # Plain thresholds on one series, without the traps the scenarios cover (absent targets, standbys,
    # namespaces, missing series); promtool check rules still validates them.
    assert untested <= {
        "ZenFlowAPIErrors",
        "ZenFlowSlowReconcile",
        "ZenFlowReconcileStuck",
        "ZenFlowSlowSteps",
    }, untested
