"""`python -m zen_flow_dev.bench.writecost` (docs/BENCHMARKS.md) runs as documented; correctness only, no
timing is asserted."""

from __future__ import annotations

import pytest

from zen_flow_dev.bench import writecost

pytestmark = pytest.mark.integration


def test_writecost_measures_flow_and_configmap_writes_on_its_own_apiserver(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "--steps",
        "3",
        "--writes",
        "10",
        "--rounds",
        "2",
        "--watchers",
        "1",
        "--way",
        "patch",
        "--way",
        "put",
    ]
    assert writecost.main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    header, *table = rows
    assert header[0].strip() == "writes of"
    crd = "jobflows.workflow.kube-zen.io.yaml"
    assert {row[0].strip() for row in table} == {f"{crd} (patch)", f"{crd} (put)", "ConfigMap"}
    for row in table:
        assert row[1].strip() == "3"
        assert int(row[2].strip().replace(",", "")) > 1000  # the flow's bytes, the ConfigMap sized alike
    assert out.count("round ") == 4  # one line per round, CRD and way of writing
