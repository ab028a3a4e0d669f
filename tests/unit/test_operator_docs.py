"""The operations docs list what the code has: every setting, every metric, every alert, every permission."""

from __future__ import annotations

import re
from dataclasses import fields

from deploy_manifests import CONFIG, ROOT, documents, metric_catalog
from zen_flow.config import Settings
from zen_flow_dev.testing.prometheus import alert_rules
from zen_flow_dev.testing.rbac import required_permissions

DOCS = ROOT / "docs"
START, END = "<!-- settings-table", "<!-- end settings-table -->"


def _settings_rows() -> dict[str, list[str]]:
    text = (DOCS / "OPERATOR_GUIDE.md").read_text()
    table = text[text.index(START) : text.index(END)]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = [c.strip("`") for c in cells]
    return rows


def test_operator_guide_settings_table_is_settings() -> None:
    rows = _settings_rows()
    expected = {"--" + f.name.replace("_", "-"): f for f in fields(Settings)}
    assert set(rows) == set(expected), "regenerate the table: .venv/bin/python tools/settings-table.py"
    for flag, f in expected.items():
        _, env, default, meaning = rows[flag]
        assert env == "ZEN_FLOW_" + f.name.upper()
        assert default == repr(f.default), flag
        assert meaning == f.metadata["help"], flag


def test_metrics_doc_names_every_metric_and_alert() -> None:
    text = (DOCS / "METRICS.md").read_text()
    families = {re.sub(r"_(bucket|sum|count|created)$", "", name) for name in metric_catalog()}
    for name in sorted(families):
        if name.endswith("_created"):
            continue
        assert f"`{name}" in text, f"{name} is not documented"
    rules = documents(CONFIG / "prometheus" / "prometheusrule.yaml")[0]
    for rule in alert_rules(rules):
        assert f"`{rule['alert']}`" in text, f"{rule['alert']} is not documented"


def test_rbac_doc_explains_every_permission() -> None:
    text = (DOCS / "RBAC.md").read_text()
    for perm in required_permissions():
        assert f"`{perm.resource}`" in text, perm


def test_no_created_series_double_the_count() -> None:
    """prometheus-client would add a `*_created` series per counter and histogram; nothing reads them."""
    from prometheus_client import generate_latest

    from zen_flow.controller.metrics import Metrics

    metrics = Metrics()
    metrics.reconciles.labels("ok").inc()
    metrics.reconcile_duration.observe(0.01)
    text = generate_latest(metrics.registry).decode()
    assert "zen_flow_reconcile_total" in text
    assert "_created" not in text


def test_the_archive_prefix_says_where_both_the_records_and_the_step_logs_go() -> None:
    meaning = _settings_rows()["--archive-s3-prefix"][3]
    assert "<prefix><namespace>/<name>/<uid>/<finished>" in meaning
    assert "<prefix>~logs/<namespace>/<name>/<uid>/<step>/<attempt>/<pod>/<container>.log" in meaning
