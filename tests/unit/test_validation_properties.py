"""Property tests: the validator never raises, and accepts every flow of a grammar of valid flows."""

from __future__ import annotations

import copy
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validation_samples import EXAMPLES, load_yaml

from zen_flow.api import JobFlow
from zen_flow.validation import validate_jobflow, validate_update
from zen_flow.validation.approvals import validate_approvals
from zen_flow.validation.memo import CheckMemo
from zen_flow.validation.reader import Reader
from zen_flow.validation.update import _ratcheted, _under
from zen_flow_dev.testing.mutations import corrupted_examples, json_like, scalars, without_nulls

# --- arbitrary JSON-like input -------------------------------------------------------------------------

# Keys the validator looks up, so random objects reach deep rules instead of stopping at the top.
KEYS = [
    "apiVersion", "kind", "metadata", "name", "generateName", "annotations", "labels", "spec", "steps",
    "executionPolicy", "podFailurePolicy", "rules", "action", "onExitCodes", "onPodConditions", "values",
    "operator", "containerName", "resourceTemplates", "volumeClaimTemplates", "configMapTemplates",
    "accessModes", "resources", "requests", "limits", "storage", "type", "template", "containers",
    "initContainers", "image", "restartPolicy", "dependencies", "when", "retryPolicy", "backoff", "limit",
    "duration", "factor", "timeoutSeconds", "inputs", "outputs", "parameters", "artifacts", "valueFrom",
    "jsonPath", "from", "http", "url", "path", "value", "archive", "s3", "status", "phase", "data",
    "synchronization", "mutexes", "semaphores",
]  # fmt: skip
shaped = st.recursive(
    scalars | st.sampled_from(["a", "b", "main", "Never", "Manual", "a:$.x", "a/out", "/x", "1Gi", "10s"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_never_raises_on_arbitrary_json(obj: Any) -> None:
    for error in validate_jobflow(obj):
        str(error)  # rendering must not raise either


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped, shaped)
def test_never_raises_on_objects_shaped_like_flows(obj: Any, old: Any) -> None:
    for error in validate_jobflow(obj) + validate_update(old, obj):
        str(error)


@settings(max_examples=300, deadline=None)
@given(corrupted_examples())
def test_never_raises_on_corrupted_examples(flow: Any) -> None:
    for error in validate_jobflow(flow):
        str(error)


@settings(max_examples=200, deadline=None)
@given(
    corrupted_examples(), st.dictionaries(st.sampled_from(["team", "bad key"]), st.sampled_from(["a", "b c"]))
)
def test_an_update_that_keeps_the_spec_skips_it_and_reports_the_same(
    flow: Any, labels: dict[str, str]
) -> None:
    """Relabelling a stored flow does not read its spec, and says what checking everything and
    dropping the problems of untouched parts (ratcheting) would say."""
    new = copy.deepcopy(flow)
    if isinstance(new.get("metadata"), dict):
        new["metadata"]["labels"] = labels
    ratcheted = _ratcheted(flow, new)
    everything = validate_jobflow(new) + validate_approvals(new)
    expected = [str(e) for e in everything if not any(_under(e.path, p) for p in ratcheted)]
    assert [str(e) for e in validate_update(flow, new)] == expected


# --- a grammar of valid flows --------------------------------------------------------------------------

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")


def template(restart: str) -> dict[str, Any]:
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    container = {"name": "main", "image": "busybox", "command": ["sh", "-c", "true"], "resources": resources}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": restart, "containers": [container]}},
        },
    }


@st.composite
def valid_flows(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(labels, min_size=1, max_size=12, unique=True))
    arguments = draw(st.lists(labels, max_size=3, unique=True))
    with_pfp = draw(st.booleans())
    # With an artifact repository an output without s3 is stored too, and later steps may take it.
    repository = draw(st.booleans())
    steps: list[dict[str, Any]] = []
    ancestors: dict[str, set[str]] = {}
    manual: set[str] = set()
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True)) if i else []
        ancestors[name] = set(deps).union(*(ancestors[d] for d in deps))
        step: dict[str, Any] = {"name": name}
        if deps:
            step["dependencies"] = deps
        if draw(st.integers(0, 4)) == 0:
            manual.add(name)
            step.update(type="Manual", message=draw(st.text(max_size=30)))
        else:
            if draw(st.booleans()):
                step["type"] = "Job"
            step["template"] = template(
                "Never" if with_pfp else draw(st.sampled_from(["Never", "OnFailure"]))
            )
            # Job fields the Job API accepts beside the flow's podFailurePolicy, and labels of the user's.
            step["template"]["spec"].update(
                draw(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "podReplacementPolicy": st.just("Failed"),
                            "managedBy": st.just("kubernetes.io/job-controller"),
                        },
                    )
                )
            )
            if draw(st.booleans()):
                step["metadata"] = {"labels": {"team": "a", "kueue.x-k8s.io/queue-name": "q"}}
            step["outputs"] = {
                "parameters": [
                    {"name": "succeeded", "valueFrom": {"jsonPath": "$.succeeded"}},
                    {
                        "name": "written",
                        "valueFrom": {"terminationMessage": draw(st.sampled_from([{}, {"key": "digest"}]))},
                    },
                ],
                "artifacts": [
                    {
                        "name": "out",
                        "path": "/out/data",
                        "archive": {"format": "tar", "compression": "gzip"},
                        **({} if repository and draw(st.booleans()) else {"s3": {"bucket": "results"}}),
                    }
                ],
            }
            if draw(st.booleans()):
                step["retryPolicy"] = {
                    "limit": draw(st.integers(0, 10)),
                    "backoff": {
                        "type": draw(st.sampled_from(["Exponential", "Linear", "Fixed"])),
                        "factor": draw(st.floats(1, 10)),
                        "duration": draw(st.sampled_from(["1s", "10s", "1m30s", "0.5s", "720h"])),
                    },
                }
            if draw(st.booleans()):
                step["timeoutSeconds"] = draw(st.integers(1, 2_592_000))
            if draw(st.booleans()):
                locks = draw(st.lists(labels, min_size=1, max_size=8, unique=True))
                cut = draw(st.integers(0, len(locks)))
                step["synchronization"] = {
                    "mutexes": [{"name": n} for n in locks[:cut]],
                    "semaphores": [{"name": n, "limit": draw(st.integers(1, 10000))} for n in locks[cut:]],
                }
        readable = sorted(ancestors[name] - manual)
        if readable and name not in manual and draw(st.booleans()):
            source = draw(st.sampled_from(readable))
            step["inputs"] = {
                "parameters": [
                    {"name": "p", "valueFrom": {"jsonPath": f"{source}:$.succeeded"}},
                    {"name": "q", "value": draw(st.text(max_size=10))},
                    *[{"name": "r", "valueFrom": {"argument": a}} for a in arguments[:1]],
                ],
                "artifacts": [{"name": "in", "from": f"{source}/out", "path": "/in"}],
            }
        if ancestors[name] and draw(st.booleans()):
            ref = draw(st.sampled_from(sorted(ancestors[name])))
            step["when"] = draw(
                st.sampled_from(
                    [
                        f"steps.{ref}.phase == 'Succeeded'",
                        f"steps['{ref}'].phase != 'Failed'",
                        "always",
                        "never",
                    ]
                )
            )
        steps.append(step)
    spec: dict[str, Any] = {"steps": steps}
    if repository:
        spec["artifactRepository"] = {
            "s3": {
                "bucket": "flows",
                **draw(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "endpoint": st.sampled_from(["http://minio:9000", "https://s3.example.com"]),
                            "keyPrefix": st.sampled_from(["team-a", "a/b/", "/x"]),
                            "region": st.just("eu-west-1"),
                            "insecure": st.booleans(),
                            "accessKeyIDSecretRef": st.just({"name": "creds", "key": "id"}),
                            "secretAccessKeySecretRef": st.just({"name": "creds"}),
                        },
                    )
                ),
            }
        }
    if arguments:
        spec["arguments"] = {
            "parameters": [
                {"name": a, "value": "v", **({"enum": ["v", "w"]} if draw(st.booleans()) else {})}
                for a in arguments
            ]
        }
    if draw(st.booleans()):
        claim = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": draw(st.sampled_from(["1Gi", "500M", "1e9"]))}},
        }
        spec["resourceTemplates"] = {
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
            "configMapTemplates": [
                {"metadata": {"name": "settings"}, "data": {"mode": draw(st.text(max_size=10))}}
            ],
        }
    if not any("synchronization" in s or s.get("type") == "Flow" for s in steps) and draw(st.booleans()):
        # The flow's own locks: only where no step takes any (nor runs a child flow).
        locks = draw(st.lists(labels, min_size=1, max_size=8, unique=True))
        cut = draw(st.integers(0, len(locks)))
        spec["synchronization"] = {
            "mutexes": [{"name": n} for n in locks[:cut]],
            "semaphores": [{"name": n, "limit": draw(st.integers(1, 10000))} for n in locks[cut:]],
        }
    if with_pfp:
        spec["executionPolicy"] = {
            "concurrencyPolicy": draw(st.sampled_from(["Allow", "Forbid", "Replace"])),
            "ttlSecondsAfterFinished": draw(st.integers(0, 2**31 - 1)),
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": "main", "values": [42]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0, 1]}},
                ]
            },
        }
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {
            "name": draw(labels),
            "annotations": {f"approve.workflow.kube-zen.io/{m}": "true" for m in manual},
        },
        "spec": spec,
    }


@settings(max_examples=200, deadline=None)
@given(valid_flows())
def test_accepts_every_flow_of_the_valid_grammar(flow: dict[str, Any]) -> None:
    assert [str(e) for e in validate_jobflow(flow)] == []


@settings(max_examples=100, deadline=None)
@given(valid_flows(), st.sampled_from(["Pending", "Running"]))
def test_an_unchanged_flow_is_always_a_valid_update(flow: dict[str, Any], phase: str) -> None:
    old = {**flow, "status": {"phase": phase}}
    assert validate_update(old, copy.deepcopy(old)) == []


@settings(max_examples=100, deadline=None)
@given(valid_flows())
def test_a_valid_flow_stays_valid_through_the_api_models(flow: dict[str, Any]) -> None:
    """The controller re-validates `JobFlow.model_dump(...)`, which fills model defaults: same verdict."""
    flow["metadata"]["namespace"] = "default"
    dumped = JobFlow.model_validate(flow).model_dump(by_alias=True, exclude_none=True, mode="json")
    assert [str(e) for e in validate_jobflow(dumped)] == []


def test_the_examples_stay_valid_through_the_api_models() -> None:
    for path in EXAMPLES:
        dumped = JobFlow.model_validate(load_yaml(path)).model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        assert validate_jobflow(dumped) == [], path


# --- the validator and the models agree -----------------------------------------------------------------


def _declared_manual(step: Any) -> bool:
    """The API's rule on the raw step: `type: Manual`, or no type and no template at all."""
    kind = step.get("type")
    return kind == "Manual" if kind else step.get("template") is None


@settings(max_examples=400, deadline=None)
@given(corrupted_examples())
def test_what_the_validator_accepts_the_models_read_the_same_way(flow: Any) -> None:
    """The controller re-reads an admitted flow through the models: a flow the validator admits must
    parse, and every step must be the kind (Job or approval gate) the validator judged it to be.
    (A falsy template such as 0, "" or [] once passed the validator and became an approval gate.)"""
    if validate_jobflow(flow):
        return
    # The apiserver prunes nulls of a structural schema before anyone reads the object (not inside the
    # template, whose unknown fields it keeps): the models never see them.
    model = JobFlow.model_validate(without_nulls(flow))
    for raw, step in zip(flow["spec"]["steps"], model.spec.steps, strict=True):
        assert step.is_manual == _declared_manual(raw), raw


@given(st.sampled_from([0, "", [], False, {}, "x", 1]))
def test_a_template_that_is_not_a_job_object_is_refused_not_read_as_a_gate(bad: Any) -> None:
    flow = copy.deepcopy(load_yaml(EXAMPLES[0]))
    step = flow["spec"]["steps"][0]
    step.pop("type", None)
    step["template"] = bad
    errors = [str(e) for e in validate_jobflow(flow)]
    assert any(e.startswith("spec.steps[0].template") for e in errors), errors


# --- broken flows are refused, naming the field -----------------------------------------------------------

BadStep = tuple[str, Any]  # (field of the step that is broken, the bad value)
BREAKAGES: list[BadStep] = [
    ("dependencies", ["zz-unknown"]),
    ("name", "Not_A_Label"),
    ("when", "steps.a.phase =="),
    ("timeoutSeconds", -1),
    ("retryPolicy", {"limit": -2}),
    ("metadata", {"labels": {"workflow.kube-zen.io/flow": "other"}}),  # zen-flow's own key
]


@settings(max_examples=200, deadline=None)
@given(valid_flows(), st.data())
def test_every_breakage_of_a_valid_flow_is_refused_naming_the_field(
    flow: dict[str, Any], data: st.DataObject
) -> None:
    steps = flow["spec"]["steps"]
    i = data.draw(st.integers(0, len(steps) - 1), label="step")
    field, bad = data.draw(st.sampled_from(BREAKAGES), label="breakage")
    broken = copy.deepcopy(flow)
    if field == "dependencies":
        broken["spec"]["steps"][i]["dependencies"] = [*steps[i].get("dependencies", []), *bad]
    else:
        broken["spec"]["steps"][i][field] = bad
    errors = [str(e) for e in validate_jobflow(broken)]
    assert any(e.startswith(f"spec.steps[{i}].{field}") for e in errors), errors


@settings(max_examples=100, deadline=None)
@given(valid_flows(), st.data())
def test_a_duplicate_or_self_dependency_is_refused(flow: dict[str, Any], data: st.DataObject) -> None:
    steps = flow["spec"]["steps"]
    i = data.draw(st.integers(0, len(steps) - 1), label="step")
    looped = copy.deepcopy(flow)
    looped["spec"]["steps"][i]["dependencies"] = [*steps[i].get("dependencies", []), steps[i]["name"]]
    assert any(str(e).startswith(f"spec.steps[{i}].dependencies") for e in validate_jobflow(looped))
    if len(steps) > 1:
        j = data.draw(st.integers(0, len(steps) - 1).filter(lambda j: j != i), label="other")
        twin = copy.deepcopy(flow)
        twin["spec"]["steps"][j]["name"] = steps[i]["name"]
        errors = [str(e) for e in validate_jobflow(twin)]
        assert any("name: Duplicate value" in e for e in errors), errors


def _check_every_time(self: CheckMemo[Any], r: Reader, value: Any, path: str) -> Any:
    return self._check(r, value, path)


@settings(max_examples=200, deadline=None)
@given(corrupted_examples())
def test_repeated_steps_checked_once_report_what_checking_each_step_reports(flow: Any) -> None:
    """The validator checks a step's own rules once per distinct step (validation/memo.py); the errors
    are exactly those of checking every step, each at its own step's path, in the same order."""
    spec = flow.get("spec") if isinstance(flow, dict) else None
    steps = spec.get("steps") if isinstance(spec, dict) else None
    if isinstance(steps, list):  # every step three times: the copies hit the memo
        originals = list(steps)
        steps.extend(
            copy.deepcopy(step) | {"name": f"copy-{i}"} if isinstance(step, dict) else copy.deepcopy(step)
            for i, step in enumerate(originals)
        )
        # Sharing their members, as the webhook decodes repeated steps (decode_spec): hits by identity.
        steps.extend(
            step | {"name": f"same-{i}"} for i, step in enumerate(originals) if isinstance(step, dict)
        )
    remembered = validate_jobflow(flow)
    with patch.object(CheckMemo, "run", _check_every_time):
        assert validate_jobflow(flow) == remembered
