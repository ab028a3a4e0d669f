"""`zen-flow validate PATH...`: files, multi-document files, directories, exit codes, output lines."""

from __future__ import annotations

import copy
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from validation_samples import EXAMPLES, base_flow, step

from zen_flow.cli.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]


def run(*paths: Path | str) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = validate_paths([str(p) for p in paths], out, err)
    return code, out.getvalue().splitlines(), err.getvalue()


def bad_flow() -> dict[str, Any]:
    flow = base_flow()
    step(flow, "b")["dependencies"] = ["a", "zzz"]
    return flow


def write(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_valid_files_exit_0_and_print_no_error_lines(tmp_path: Path) -> None:
    code, lines, err = run(*EXAMPLES)
    assert code == 0
    assert lines == []
    assert f"{len(EXAMPLES)} JobFlow(s) checked, 0 invalid" in err


def test_an_invalid_file_exits_2_with_one_line_per_error_naming_file_and_field(tmp_path: Path) -> None:
    flow = bad_flow()
    step(flow, "c")["timeoutSeconds"] = 0
    path = write(tmp_path / "bad.yaml", flow)
    code, lines, _ = run(path)
    assert code == 2
    assert lines == [
        f'{path}: spec.steps[1].dependencies[1]: Not found: "zzz"',
        f"{path}: spec.steps[3].timeoutSeconds: Invalid value: 0: must be greater than 0",
    ]


def test_approval_annotations_are_checked(tmp_path: Path) -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/b": "true"}
    path = write(tmp_path / "approved.yaml", flow)
    code, lines, _ = run(path)
    assert code == 2
    assert lines == [
        f'{path}: metadata.annotations[approve.workflow.kube-zen.io/b]: Invalid value: "b": '
        "only Manual steps are approved or rejected"
    ]


def test_multi_document_files_name_the_document_and_skip_other_kinds(tmp_path: Path) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    path = write(tmp_path / "all.yaml", config_map, base_flow(), None, bad_flow())
    code, lines, err = run(path)
    assert code == 2
    assert lines == [f'{path}#4: spec.steps[1].dependencies[1]: Not found: "zzz"']
    assert "2 JobFlow(s) checked, 1 invalid" in err


def test_a_jobflow_of_another_group_is_not_ours(tmp_path: Path) -> None:
    other = {**bad_flow(), "apiVersion": "example.com/v1"}
    code, lines, err = run(write(tmp_path / "other.yaml", other))
    assert (code, lines) == (0, [])
    assert "no JobFlow documents found" in err


def test_directories_are_searched_recursively_for_yaml_and_yml(tmp_path: Path) -> None:
    write(tmp_path / "flows" / "good.yaml", base_flow())
    bad = write(tmp_path / "flows" / "nested" / "bad.yml", bad_flow())
    (tmp_path / "flows" / "notes.txt").write_text("not: [yaml")
    (tmp_path / "flows" / "README.md").write_text("# flows")
    code, lines, err = run(tmp_path / "flows")
    assert code == 2
    assert lines == [f'{bad}: spec.steps[1].dependencies[1]: Not found: "zzz"']
    assert "2 JobFlow(s) checked, 1 invalid" in err


def test_a_directory_of_examples_is_valid(tmp_path: Path) -> None:
    for example in EXAMPLES:
        shutil.copy(example, tmp_path / example.name)
    assert run(tmp_path)[0] == 0


def test_unparsable_yaml_exits_2_and_other_files_are_still_checked(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    bad = write(tmp_path / "bad.yaml", bad_flow())
    code, lines, err = run(broken, bad)
    assert code == 2
    assert f"{broken}: not valid YAML" in err
    assert "\n" not in err.split(f"{broken}: not valid YAML")[1].split("zen-flow validate")[0].rstrip("\n")
    assert lines == [f'{bad}: spec.steps[1].dependencies[1]: Not found: "zzz"']


def test_missing_and_unreadable_paths_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run(tmp_path / "nope.yaml", binary)
    assert code == 2
    assert f"{tmp_path / 'nope.yaml'}: no such file or directory" in err
    assert f"{binary}: not UTF-8 text (byte 0)" in err


def test_yaml_specific_values_do_not_crash_the_validator(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(
        "apiVersion: workflow.kube-zen.io/v1alpha1\nkind: JobFlow\nmetadata: {name: odd}\n"
        "spec:\n  steps:\n  - name: a\n    timeoutSeconds: 2024-01-01\n    template: {spec: 1.5e3}\n"
    )
    code, lines, _ = run(path)
    assert code == 2
    assert any("timeoutSeconds: Invalid value" in line for line in lines)


def test_the_cli_entry_point_is_wired(tmp_path: Path, capsys: Any) -> None:
    from zen_flow.cli import main

    code = main(["validate", str(write(tmp_path / "bad.yaml", bad_flow()))])
    assert code == 2
    assert 'Not found: "zzz"' in capsys.readouterr().out


# --- -p NAME=VALUE: arguments overridden before validating ------------------------------------------------


def with_arguments() -> dict[str, Any]:
    flow = base_flow()
    flow["spec"]["arguments"] = {
        "parameters": [{"name": "env", "value": "staging", "enum": ["staging", "production"]}]
    }
    return flow


@pytest.mark.parametrize(
    ("parameters", "code", "line"),
    [
        (["env=production"], 0, None),
        (["env=dev"], 2, 'spec.arguments.parameters[0].value: Unsupported value: "dev"'),
        (["envv=production"], 2, 'spec.arguments.parameters: Not found: "envv": the flow declares no such'),
    ],
)
def test_overridden_arguments_are_validated_like_the_webhook_would(
    tmp_path: Path, capsys: Any, parameters: list[str], code: int, line: str | None
) -> None:
    from zen_flow.cli import main

    path = write(tmp_path / "args.yaml", with_arguments())
    assert main(["validate", *(f"-p{p}" for p in parameters), str(path)]) == code
    out = capsys.readouterr().out
    assert (line in out) if line else out == ""


def test_validate_help_says_what_it_prints_and_has_an_example(capsys: Any) -> None:
    from zen_flow.cli import main

    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    text = capsys.readouterr().out
    assert "then how many flows were checked on stderr" in text
    assert "2 a flow is invalid" in text
    assert "example: zen-flow validate flows/ -p env=prod" in text


def test_a_malformed_override_exits_2_before_reading_files(tmp_path: Path, capsys: Any) -> None:
    from zen_flow.cli import main

    assert main(["validate", "-p", "env", str(tmp_path / "missing.yaml")]) == 2
    assert "-p 'env': expected NAME=VALUE" in capsys.readouterr().err


def test_the_override_value_may_hold_equals_signs_and_the_file_is_not_changed(tmp_path: Path) -> None:
    from zen_flow.cli.overrides import override_arguments, parse_overrides

    flow = with_arguments()
    overrides = parse_overrides(["env=a=b", "env=production"])
    assert overrides == {"env": "production"}
    changed, errors = override_arguments(flow, parse_overrides(["env=a=b"]))
    assert errors == []
    assert changed["spec"]["arguments"]["parameters"][0]["value"] == "a=b"
    assert flow["spec"]["arguments"]["parameters"][0]["value"] == "staging"


# --- hostile input: bounded, one line, exit 2, never a traceback ---------------------------------------

BOMB = "\n".join(
    ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    + [f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(BOMB, "expands to more than 1,000,000 YAML nodes (aliases included)", id="alias-bomb"),
        pytest.param("kind: JobFlow\nspec: &s {steps: [*s]}\n", "recursive alias", id="recursive-alias"),
        pytest.param("[" * 3000 + "]" * 3000, "nested more than 100 levels deep", id="deep-nesting"),
        pytest.param(b"\x7fELF\x02\x01\x01\x00\xff\xfe", "not UTF-8 text (byte 8)", id="binary"),
        pytest.param("kind: JobFlow\nspec: [unclosed\n", "not valid YAML", id="broken"),
    ],
)
def test_hostile_files_are_refused_in_one_line_with_exit_2(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, lines, err = run(path)
    assert code == 2
    assert lines == []
    (line,) = [x for x in err.splitlines() if not x.startswith("zen-flow validate:")]
    assert line.startswith(f"{path}: ")
    assert message in line
    assert "Traceback" not in err


def test_the_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 1000  # 9^9 = 387 million strings if expanded
    code, _, err = run(path)
    assert code == 2
    assert "aliases included" in err


def test_oversized_and_special_files_are_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (8 * 1024 * 1024) + b"\n")
    code, _, err = run(big, "/dev/zero")
    assert code == 2
    assert f"{big}: larger than 8 MiB" in err
    assert "/dev/zero: not a regular file" in err


def test_a_missing_file_is_said_to_be_missing(tmp_path: Path) -> None:
    # What `zen-flow submit typo.yaml` and a kubeconfig path with a typo print (not "not a regular file").
    from zen_flow.documents import DocumentError, read_bounded

    with pytest.raises(DocumentError, match=r"^no such file$"):
        read_bounded(tmp_path / "typo.yaml")


def test_anchors_that_share_a_template_are_fine(tmp_path: Path) -> None:
    flow = """\
apiVersion: workflow.kube-zen.io/v1alpha1
kind: JobFlow
metadata: {name: shared}
spec:
  steps:
    - name: a
      template: &job
        apiVersion: batch/v1
        kind: Job
        spec: {template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}
    - name: b
      dependencies: [a]
      template: *job
"""
    path = tmp_path / "anchors.yaml"
    path.write_text(flow)
    assert run(path)[0] == 0


@pytest.mark.parametrize("command", ["validate", "completion", "version"])
def test_a_reader_that_goes_away_ends_the_command_quietly(command: str, tmp_path: Path) -> None:
    # `zen-flow ... | head -1`: the pipe's reader is gone before the command writes. Python printed
    # "Exception ignored ... BrokenPipeError" (or `validate` an "internal error", exit 2).
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    write(tmp_path / "bad.yaml", bad_flow())
    args = {"validate": ["validate", str(tmp_path)], "completion": ["completion", "bash"]}.get(
        command, [command]
    )
    reader, writer = os.pipe()
    os.close(reader)  # no reader at all: the first write fails, however fast the command is
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "zen_flow", *args],
            stdout=writer,
            stderr=subprocess.PIPE,
            cwd=root,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    said = done.stderr.decode()
    assert done.returncode == 141, said
    assert "Error" not in said
    assert "internal error" not in said


def test_cronjobflows_are_checked_with_their_own_rules(tmp_path: Path) -> None:
    scheduled = yaml.safe_load((REPO / "examples" / "scheduled" / "nightly-report.yaml").read_text())
    broken = copy.deepcopy(scheduled)
    broken["spec"]["schedule"] = "61 * * * *"
    broken["spec"]["jobFlowTemplate"]["spec"]["steps"][1]["dependencies"] = ["ghost"]
    path = write(tmp_path / "crons.yaml", scheduled, broken)
    code, lines, err = run(str(path))
    assert code == 2
    assert lines == [
        f"{path}#2: spec.schedule: Invalid value: \"61 * * * *\": minute: '61': out of range 0-59",
        f'{path}#2: spec.jobFlowTemplate.spec.steps[1].dependencies[0]: Not found: "ghost"',
    ]
    assert "0 JobFlow(s) and 2 CronJobFlow(s) checked, 1 invalid" in err


# --- a flow naming a JobFlowTemplate, with gates decided in advance ------------------------------------

GATE_TEMPLATE: dict[str, Any] = {
    "apiVersion": "workflow.kube-zen.io/v1alpha1",
    "kind": "JobFlowTemplate",
    "metadata": {"name": "release"},
    "spec": {
        "steps": [
            {
                "name": "gate",
                "type": "Manual",
                "outputs": {
                    "parameters": [{"name": "env", "valueFrom": {"supplied": {"enum": ["staging", "prod"]}}}]
                },
            }
        ]
    },
}


def decided(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "release-1", "annotations": annotations},
        "spec": {"templateRef": {"name": "release"}},
    }


APPROVE, VALUES = "approve.workflow.kube-zen.io/gate", "values.workflow.kube-zen.io/gate"


def test_a_flow_is_expanded_from_a_template_given_beside_it_and_then_checked_whole(tmp_path: Path) -> None:
    # Its advance approval and values name the template's gate: valid, as the webhook finds them.
    path = write(
        tmp_path / "release.yaml", GATE_TEMPLATE, decided(**{APPROVE: "true", VALUES: '{"env":"prod"}'})
    )
    assert run(path)[:2] == (0, [])
    # In another file given too; a value outside the gate's enum is then found, as the webhook finds it.
    template = write(tmp_path / "template.yaml", GATE_TEMPLATE)
    flow = write(tmp_path / "flow.yaml", decided(**{APPROVE: "true", VALUES: '{"env":"qa"}'}))
    code, lines, err = run(template, flow)
    assert code == 2
    assert [line.split(": Invalid value")[0] for line in lines] == [f"{flow}: metadata.annotations[{VALUES}]"]
    assert "note:" not in err
    # A step the template does not have.
    flow = write(tmp_path / "ghost.yaml", decided(**{"approve.workflow.kube-zen.io/ghost": "true"}))
    code, lines, _ = run(template, flow)
    assert code == 2
    assert "this flow has no step of that name" in lines[0]
    # The expansion's own errors: an argument the template does not declare.
    flow_doc = decided()
    flow_doc["spec"]["arguments"] = {"parameters": [{"name": "colour", "value": "red"}]}
    code, lines, _ = run(template, write(tmp_path / "arg.yaml", flow_doc))
    assert code == 2
    assert 'JobFlowTemplate "release" declares no such argument' in lines[0]


def test_without_its_template_the_gates_a_flow_names_are_left_to_the_webhook(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.yaml", decided(**{APPROVE: "true", VALUES: '{"env":"prod"}'}))
    code, lines, err = run(path)
    assert (code, lines) == (0, [])
    assert (
        f"{path}: note: the steps its approval and values annotations name are its JobFlowTemplate's" in err
    )
    # A template of that name in another namespace is not the flow's.
    other = {**GATE_TEMPLATE, "metadata": {"name": "release", "namespace": "team-b"}}
    flow_doc = decided(**{APPROVE: "true", VALUES: '{"env":"qa"}'})
    flow_doc["metadata"]["namespace"] = "team-a"
    code, lines, err = run(write(tmp_path / "ns.yaml", other, flow_doc))
    assert (code, lines) == (0, [])
    assert "note:" in err


def test_a_flow_naming_a_cluster_template_is_expanded_from_the_cluster_template_given(tmp_path: Path) -> None:
    cluster_template = {**GATE_TEMPLATE, "kind": "ClusterJobFlowTemplate"}
    flow_doc = decided(**{APPROVE: "true", VALUES: '{"env":"qa"}'})
    flow_doc["metadata"]["namespace"] = "team-a"  # a cluster template serves every namespace
    flow_doc["spec"]["templateRef"]["clusterScope"] = True
    code, lines, err = run(write(tmp_path / "cluster.yaml", cluster_template, flow_doc))
    assert code == 2
    assert [line.split(": Invalid value")[0] for line in lines] == [
        f"{tmp_path / 'cluster.yaml'}#2: metadata.annotations[{VALUES}]"
    ]
    assert "note:" not in err
    assert "1 JobFlow(s) and 1 ClusterJobFlowTemplate(s) checked, 1 invalid" in err
    # The namespaced template of that name is not the one a clusterScope flow names, nor the other way.
    code, lines, err = run(write(tmp_path / "namespaced.yaml", GATE_TEMPLATE, flow_doc))
    assert (code, lines) == (0, [])
    assert "note:" in err
    flow_doc["spec"]["templateRef"] = {"name": "release"}
    code, lines, err = run(write(tmp_path / "other.yaml", cluster_template, flow_doc))
    assert (code, lines) == (0, [])
    assert "note:" in err


def test_a_cluster_template_is_checked_with_the_jobflow_rules(tmp_path: Path) -> None:
    broken = {**GATE_TEMPLATE, "kind": "ClusterJobFlowTemplate"}
    broken["spec"] = {"steps": [{"name": "a", "type": "Manual", "dependencies": ["ghost"]}]}
    path = write(tmp_path / "broken.yaml", broken)
    code, lines, _ = run(path)
    assert (code, lines) == (2, [f'{path}: spec.steps[0].dependencies[0]: Not found: "ghost"'])


@pytest.mark.parametrize(
    ("regions", "code", "line"),
    [
        ('["eu","us","ap"]', 0, None),
        (
            "eu,us",
            2,
            'spec.steps[0].matrix.parameters[1].valueFrom.argument: Invalid value: "regions": the value of '
            'argument "regions" must be a JSON array',
        ),
    ],
)
def test_a_matrix_is_expanded_with_the_overridden_arguments(
    capsys: Any, regions: str, code: int, line: str | None
) -> None:
    from zen_flow.cli import main

    assert main(["validate", f"-pregions={regions}", str(REPO / "examples" / "matrix-build.yaml")]) == code
    out = capsys.readouterr().out
    assert (line in out) if line else out == ""


def test_spec_and_approval_errors_are_listed_together_under_one_limit(tmp_path: Path) -> None:
    # As the webhook lists them: one `Too many` line, last, never an approval error after it.
    flow = base_flow()
    step(flow, "b")["dependencies"] = [f"missing-{i}" for i in range(150)]
    flow["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/b": "true"}
    path = write(tmp_path / "many.yaml", flow)
    code, lines, _ = run(path)
    assert code == 2
    assert len(lines) == 101
    assert [i for i, line in enumerate(lines) if ": Too many: " in line] == [100]


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("Jobflow", 'kind: Unsupported value: "Jobflow": kinds are case-sensitive: JobFlow'),
        ("cronjobflow", 'kind: Unsupported value: "cronjobflow": kinds are case-sensitive: CronJobFlow'),
        (
            "JobFlows",
            'kind: Unsupported value: "JobFlows": the kinds of workflow.kube-zen.io: JobFlow, CronJobFlow, '
            "JobFlowTemplate, ClusterJobFlowTemplate",
        ),
    ],
)
def test_a_document_of_zen_flows_api_with_a_kind_it_does_not_have_is_an_error_not_skipped(
    tmp_path: Path, kind: str, said: str
) -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "still-skipped"}}
    path = write(tmp_path / "flow.yaml", {**base_flow(), "kind": kind}, other)
    code, lines, err = run(path)
    assert (code, lines) == (2, [f"{path}#1: {said}"])
    assert "1 document(s) of a kind zen-flow does not have" in err
