"""A key the JobFlow schema does not have (`dependecies:` for `dependencies:`) is named by `zen-flow validate`
and `zen-flow submit` before anything is sent: the apiserver would prune it, and the flow would run without
it (its step no longer waiting, a Job step become a Manual gate). `submit` also asks the apiserver for
strict field validation, as kubectl does."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_flows_rig import FakeCluster, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture
from validation_samples import base_flow, step

from zen_flow import __version__
from zen_flow.cli.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]


def typo_flow() -> dict[str, Any]:
    flow = base_flow()
    step(flow, "b")["dependecies"] = step(flow, "b").pop("dependencies")
    flow["spec"]["executionPolicy"] = {"concurency": 2}
    return flow


def validated(path: Path) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = validate_paths([str(path)], out, err)
    return code, out.getvalue().splitlines(), err.getvalue()


def test_validate_names_every_key_the_schema_does_not_have(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(typo_flow()))
    code, lines, err = validated(path)
    assert code == 2
    b = [s["name"] for s in base_flow()["spec"]["steps"]].index("b")
    assert sorted(line.split(": ")[1] for line in lines) == [
        "spec.executionPolicy.concurency",
        f"spec.steps[{b}].dependecies",
    ]
    assert all(line.startswith(f"{path}: ") and "unknown field" in line for line in lines)
    # An older CLI cannot tell a typo from a newer release's field: it says which release it checked by.
    assert all(f"zen-flow {__version__}'s schema" in line and "newer zen-flow" in line for line in lines)
    assert "1 invalid" in err


def test_validate_names_an_unknown_key_in_a_cronjobflows_template(tmp_path: Path) -> None:
    cron = yaml.safe_load((REPO / "examples/scheduled/nightly-report.yaml").read_text())
    template = cron["spec"]["jobFlowTemplate"]["spec"]
    later = next(i for i, s in enumerate(template["steps"]) if s.get("dependencies"))
    template["steps"][later]["dependecies"] = template["steps"][later].pop("dependencies")
    cron["spec"]["schedul"] = cron["spec"]["schedule"]
    path = tmp_path / "cron.yaml"
    path.write_text(yaml.safe_dump(cron))
    code, lines, _ = validated(path)
    assert code == 2
    assert sorted(line.split(": ")[1] for line in lines) == [
        f"spec.jobFlowTemplate.spec.steps[{later}].dependecies",
        "spec.schedul",
    ]


def test_a_snake_case_key_is_named_with_the_key_meant(tmp_path: Path) -> None:
    """The CLI's models take a field's Python name too (`execution_policy`): the apiserver does not, and
    drops it with the user's setting."""
    flow = base_flow()
    flow["spec"]["execution_policy"] = {"backoffLimit": 1}
    step(flow, "b")["allow_failure"] = True
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow))
    code, lines, _ = validated(path)
    assert code == 2
    b = [s["name"] for s in base_flow()["spec"]["steps"]].index("b")
    assert sorted(lines) == [
        f"{path}: spec.execution_policy: Forbidden: unknown field: did you mean executionPolicy? (keys are "
        "camelCase: the apiserver would drop this one)",
        f"{path}: spec.steps[{b}].allow_failure: Forbidden: unknown field: did you mean allowFailure? (keys "
        "are camelCase: the apiserver would drop this one)",
    ]


def test_a_misspelt_key_is_named_with_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(typo_flow()))
    _, lines, _ = validated(path)
    said = {line.split(": ")[1]: line for line in lines}
    b = [s["name"] for s in base_flow()["spec"]["steps"]].index("b")
    assert "did you mean dependencies?" in said[f"spec.steps[{b}].dependecies"]
    assert "did you mean" not in said["spec.executionPolicy.concurency"]  # nothing close enough


@pytest.mark.parametrize(
    "example", ["examples/templates/build-and-test.yaml", "examples/cluster-templates/1-image-scan.yaml"]
)
def test_validate_names_an_unknown_key_in_a_template(tmp_path: Path, example: str) -> None:
    template = yaml.safe_load((REPO / example).read_text())
    template["spec"]["steps"][0]["templat"] = template["spec"]["steps"][0].pop("template")
    template["spec"]["executionPolicy"]["backoff_limit"] = 3
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(template))
    code, lines, _ = validated(path)
    assert code == 2
    unknown = sorted(line.split(": ")[1] for line in lines if "unknown field" in line)
    assert unknown == ["spec.executionPolicy.backoff_limit", "spec.steps[0].templat"]


def test_submit_names_a_snake_case_key_before_creating_anything(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    flow = base_flow()
    flow["spec"]["execution_policy"] = {"backoffLimit": 1}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow))
    code, out, err = zen_flow(capsys, "submit", str(path))
    assert (code, out, cluster.writes) == (2, "", [])
    assert "spec.execution_policy: Forbidden: unknown field: did you mean executionPolicy?" in err


def test_the_projects_examples_have_no_unknown_key() -> None:
    code, lines, _ = validated(REPO / "examples")
    assert (code, lines) == (0, [])


def test_submit_refuses_an_unknown_key_before_creating_anything(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(typo_flow()))
    code, out, err = zen_flow(capsys, "submit", str(path))
    assert (code, out, cluster.writes) == (2, "", [])
    assert "invalid, nothing was created" in err
    b = [s["name"] for s in base_flow()["spec"]["steps"]].index("b")
    assert f"spec.steps[{b}].dependecies: Forbidden: unknown field" in err


def test_submit_asks_the_apiserver_for_strict_field_validation(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries: list[Any] = []
    request = cluster.request

    async def recorded(method: str, path: str, body: Any = None, query: Any = (), **kw: Any) -> Any:
        if method == "POST":
            queries.append(list(query))
        return await request(method, path, body=body, query=query, **kw)

    monkeypatch.setattr(cluster, "request", recorded)
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(base_flow()))
    code, _, _ = zen_flow(capsys, "submit", str(path))
    assert code == 0
    assert queries == [[("fieldValidation", "Strict")]]


@pytest.mark.parametrize(
    "example", ["examples/templates/build-and-test.yaml", "examples/cluster-templates/1-image-scan.yaml"]
)
def test_validate_names_a_flows_own_key_in_a_template(tmp_path: Path, example: str) -> None:
    # A template's CRD has no `suspend` or `templateRef` (a JobFlow's own): the apiserver would prune them.
    template = yaml.safe_load((REPO / example).read_text())
    template["spec"]["suspend"] = True
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(template))
    code, lines, _ = validated(path)
    assert code == 2
    assert [line.split(": ")[1] for line in lines if "unknown field" in line] == ["spec.suspend"]
