"""`zen-flow graph`: the DAG as Mermaid and DOT, steps coloured by phase; from a file without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_cli_render import release

from zen_flow.cli import main
from zen_flow.cli.graph import COLOURS, dot, mermaid
from zen_flow_dev.testing.flows import flow_manifest, job_step, make_flow, manual_step


def test_mermaid_draws_every_step_and_edge_coloured_by_phase() -> None:
    text = mermaid(release().flow).splitlines()
    assert text[0] == "flowchart TD"
    assert '  s0["build<br/>Succeeded"]:::succeeded' in text
    assert '  s2{{"gate<br/>PendingApproval"}}:::pendingapproval' in text  # a Manual step is a hexagon
    assert sorted(line for line in text if "-->" in line) == sorted(
        ["  s0 --> s2", "  s1 --> s2", "  s2 --> s3"]
    )
    fill, stroke = COLOURS["PendingApproval"]
    assert f"  classDef pendingapproval fill:{fill},stroke:{stroke}" in text


def test_dot_draws_the_same_graph() -> None:
    text = dot(release().flow)
    assert text.startswith('digraph "release" {\n')
    assert (
        '"gate" [label="gate\\nPendingApproval", fillcolor="#fff9c4", color="#f9a825", shape=hexagon];'
        in text
    )
    assert '"build" -> "gate";' in text
    assert '"gate" -> "ship";' in text
    assert text.count("->") == 3


def test_a_file_needs_no_cluster_and_svg_says_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(yaml.safe_dump(flow_manifest("f", "ns", [job_step("a"), manual_step("ok", "a")])))
    assert main(["graph", str(file), "--format", "dot", "--kubeconfig", str(tmp_path / "none")]) == 0
    assert '"a" -> "ok";' in capsys.readouterr().out
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz here
    assert main(["graph", str(file), "--format", "svg"]) == 2
    assert "--format svg needs Graphviz's `dot` on PATH" in capsys.readouterr().err


def test_a_finally_step_says_so_and_has_a_dashed_border() -> None:
    # No edge places it after the others: the drawing says it runs last.
    flow = make_flow([job_step("build"), job_step("cleanup", **{"finally": True})])
    text = mermaid(flow).splitlines()
    assert '  s1["cleanup<br/>Pending<br/>finally"]:::pending' in text
    assert "  style s1 stroke-dasharray: 5 5" in text
    assert '  s0["build<br/>Pending"]:::pending' in text
    assert (
        '"cleanup" [label="cleanup\\nPending\\nfinally", fillcolor="#ffffff", color="#757575", '
        'style="rounded,filled,dashed"];' in dot(flow)
    )


def test_a_files_matrix_argument_left_empty_is_given_with_p(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file leaves the argument "" for -p, as `validate -p` and `submit -p` take it.
    doc = flow_manifest(
        "f",
        "ns",
        [job_step("build", matrix={"parameters": [{"name": "r", "valueFrom": {"argument": "regions"}}]})],
    )
    doc["spec"]["arguments"] = {"parameters": [{"name": "regions", "value": ""}]}
    file = tmp_path / "flow.yaml"
    file.write_text(yaml.safe_dump(doc))
    none = str(tmp_path / "none")
    assert main(["graph", str(file), "--kubeconfig", none]) == 2
    assert "regions" in capsys.readouterr().err
    assert main(["graph", str(file), "-p", 'regions=["eu","us"]', "--kubeconfig", none]) == 0
    out = capsys.readouterr().out
    assert "build-0" in out
    assert "build-1" in out
    assert main(["graph", "on-the-cluster", "-p", "regions=[]", "--kubeconfig", none]) == 2
    assert "-p sets the arguments of a FILE" in capsys.readouterr().err
