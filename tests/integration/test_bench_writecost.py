"""`python -m zen_flow_dev.bench.writecost` (docs/BENCHMARKS.md) runs as documented; correctness only, no
timing is asserted."""

from __future__ import annotations

import pytest

from zen_flow_dev.bench import writecost

pytestmark = pytest.mark.integration


def test_writecost_measures_flow_and_configmap_writes_on_its_own_apiserver(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert writecost.main(["--steps", "3", "--writes", "10", "--rounds", "2", "--watchers", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    header, *table = rows
    assert header[0].strip() == "writes of"
    assert {row[0].strip() for row in table} == {"jobflows.workflow.kube-zen.io.yaml", "ConfigMap"}
    for row in table:
        assert row[1].strip() == "3"
        assert int(row[2].strip().replace(",", "")) > 1000  # the flow's bytes, the ConfigMap sized alike
    assert out.count("round ") == 2  # one line per round and CRD
