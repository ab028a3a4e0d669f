"""text/template's trim markers in placeholders (`{{- .JobFlow.Name -}}`), as Go reads them: admission
(validation) and substitution (planner) agree with Go's own text/template on a table it produced
(tests/fixtures/go-template-trim: `go run gen.go > cases.json`), and with Go's documented rule on
generated strings: `{{- ` trims the space, tab, CR and LF right before the action, ` -}}` those right
after it, and the dash needs one of them beside it (`{{-3}}` is the number -3)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.core.parameter_forms import substitute
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.parameters import FlowFields, apply_parameters, resolve_inputs
from zen_flow.validation.flow import validate_jobflow
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template, make_flow
from zen_flow_dev.testing.simulator import Simulator

CASES = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "go-template-trim" / "cases.json").read_text(encoding="utf-8")
)["cases"]
GO_SPACE = " \t\r\n"  # text/template's white space: a no-break space, \v or \f is text
VALUE = " X\n"  # the generator's parameter x: trimming never touches a value put in
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def flow_with(text: str) -> dict[str, Any]:
    """The flow `flow` in namespace `ns`, one step `step` whose Job annotation holds `text` (the Go
    generator's context: JobFlow {flow, ns}, StepName step, Parameters {x: VALUE})."""
    step = job_step("step", inputs={"parameters": [{"name": "x", "value": VALUE}]})
    step["metadata"] = {"annotations": {"t": text}}
    return flow_manifest("flow", "ns", [step])


def substituted(text: str) -> str:
    step = JobFlow.model_validate(flow_with(text)).spec.steps[0]
    body = {"metadata": {"annotations": {"t": text}}}
    out = apply_parameters(body, "step", resolve_inputs(step, lambda _: None), FlowFields("flow", "ns", ""))
    return str(out["metadata"]["annotations"]["t"])


@pytest.mark.parametrize("case", CASES, ids=[repr(c["template"]) for c in CASES])
def test_admission_and_substitution_read_a_placeholder_as_gos_text_template_does(
    case: dict[str, Any],
) -> None:
    text, go = case["template"], case["output"]
    errors = validate_jobflow(flow_with(text))
    if go is not None:  # Go runs it: admitted, and substituted to what Go printed
        assert errors == []
        assert substituted(text) == go
    else:  # Go refuses it: so does admission, and the planner creates no Job with it left in
        assert [e.path for e in errors] == ["spec.steps[0].metadata.annotations.t"]
        with pytest.raises(JobBuildError):
            substituted(text)


def test_the_table_covers_every_trim_marker_on_every_form() -> None:
    forms = (".JobFlow.Name", ".JobFlow.Namespace", ".StepName", ".Parameters.x")
    for form in forms:
        runs = [c for c in CASES if form + "}}" in c["template"] or form + " " in c["template"]]
        assert any(c["output"] is not None and "{{- " + form + " -}}" in c["template"] for c in runs), form
        assert any(c["output"] is None and "{{-" + form in c["template"] for c in runs), form


def test_a_dash_without_a_space_is_no_trim_marker_and_is_refused_saying_how_to_trim() -> None:
    (error,) = validate_jobflow(flow_with("a {{-.JobFlow.Name-}} b"))
    assert error.value == "{{-.JobFlow.Name-}}"
    assert "unsupported template action" in str(error)
    assert "a trim marker is {{- or -}} with a space beside the dash" in str(error)


def test_text_that_is_not_ours_keeps_its_markers_and_the_text_beside_ours_is_trimmed() -> None:
    # `{{-3}}` is Go's number -3, and a kubectl go-template is kubectl's to run: both stay as they are.
    text = "{{-3}} -o go-template='{{- .metadata.name -}}'   {{- .StepName}}"
    assert validate_jobflow(flow_with(text)) == []
    assert substituted(text) == "{{-3}} -o go-template='{{- .metadata.name -}}'step"


@pytest.mark.parametrize(
    "text",
    [
        """kubectl get cm -o go-template='{{index .data "app-parameters.yaml"}}'""",
        """{{ template "db-parameters.tpl" . }}""",
    ],
)
def test_someone_elses_template_with_a_dash_before_parameters_is_left_alone(text: str) -> None:
    # A dash counts only right after `{{` or white space; inside other text (a key, a file name) the
    # action is not ours: admitted and left as it is, as before trim markers were read.
    assert validate_jobflow(flow_with(text)) == []
    assert substituted(text) == text


@pytest.mark.parametrize("text", ["{{-.StepName}}", "{{ -.StepName }}", "{{-parameters.x}}"])
def test_a_dash_stuck_to_our_field_is_refused(text: str) -> None:
    errors = validate_jobflow(flow_with(text))
    assert errors
    assert "unsupported template action" in str(errors[0])


def test_the_planner_creates_the_job_with_the_trimmed_text() -> None:
    template = job_template()
    template["spec"]["template"]["spec"]["containers"][0]["args"] = ["release-\n  {{- .StepName -}}\n  -v1"]
    sim = Simulator(make_flow([job_step("build", template=template)], name="nightly"), T0)
    sim.reconcile()
    (body,) = [a.body for a in sim.last.actions if hasattr(a, "body")]
    assert body["spec"]["template"]["spec"]["containers"][0]["args"] == ["release-build-v1"]


# --- Go's documented rule, on generated strings ------------------------------------------------------------

_FORMS = [
    "{{%s.StepName%s}}",
    "{{%s .JobFlow.Name %s}}",
    "{{%sinputs.parameters.x%s}}",
    "{{%s.Parameters.x%s}}",
]
_VALUES = {".StepName": "step", ".JobFlow.Name": "flow", "inputs.parameters.x": VALUE, ".Parameters.x": VALUE}
_TEXT = st.text(alphabet="ab-} \t\r\n\u00a0\v\f", max_size=6)  # no `{` or `$`: no placeholder of its own
_PLACEHOLDER = st.tuples(
    st.sampled_from(_FORMS),
    st.sampled_from(["", "- ", "-\t", "-\n", "-\r", "-  "]),
    st.sampled_from(["", " -", "\t-", "\n-", "\r-", "  -"]),
)


def _model(parts: list[str | tuple[str, str, str]]) -> str:
    """Go's rule written out: each text part loses its Go white space at the end when the next action
    has a left marker, and at the start when the previous one has a right marker."""
    out = []
    for i, part in enumerate(parts):
        if isinstance(part, tuple):
            form = part[0] % ("", "")
            out.append(_VALUES[form.strip("{} ")])
            continue
        before, after = (parts[i - 1] if i else None), (parts[i + 1] if i + 1 < len(parts) else None)
        if isinstance(before, tuple) and before[2]:
            part = part.lstrip(GO_SPACE)
        if isinstance(after, tuple) and after[1]:
            part = part.rstrip(GO_SPACE)
        out.append(part)
    return "".join(out)


@given(st.lists(st.one_of(_TEXT, _PLACEHOLDER), max_size=8))
def test_trimming_follows_gos_documented_rule(drawn: list[str | tuple[str, str, str]]) -> None:
    parts: list[str | tuple[str, str, str]] = []
    for part in drawn:  # text parts next to each other are one text part
        if isinstance(part, str) and parts and isinstance(parts[-1], str):
            parts[-1] += part
        else:
            parts.append(part)
    text = "".join(p if isinstance(p, str) else p[0] % (p[1], p[2]) for p in parts)
    values = {"Name": "flow", "StepName": "step"}

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(3) or match.group(4) or "", VALUE)

    assert substitute(text, value) == _model(parts)
    assert validate_jobflow(flow_with(text)) == []
