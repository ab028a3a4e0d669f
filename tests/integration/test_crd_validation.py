"""What the apiserver rejects in a new JobFlow, by the JobFlow CRD's schema and CEL rules and the admission
policy that ships with it (config/crd/), with the message users see; the S3 keys it bounds without the
webhook."""

from __future__ import annotations

from typing import Any

import pytest
from crd_validation_rig import objects_fixture as objects_fixture  # the `objects` fixture
from jobflow_objects import Kubectl, create, flow, job, kubectl_create, patch_status
from kubernetes_asyncio import client

from zen_flow.validation import validate_jobflow

pytestmark = pytest.mark.integration


# --- rejections ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "spec", "message"),
    [
        pytest.param(
            [{"name": "ok", "template": job()}, {"name": "a", "type": "Job"}],
            {},
            "a step of type Job needs a template (a batch/v1 Job); for an approval gate use type: Manual"
            " (step a)",
            id="job-without-template",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "dependencies": ["a"]}],
            {},
            "spec.steps: a step cannot depend on itself (step a)",
            id="self-dependency",
        ),
        pytest.param(
            [{"name": "Step_1", "template": job()}], {}, "spec.steps[0].name: Invalid value", id="bad-name"
        ),
        pytest.param(
            [{"name": "a", "type": "Script", "template": job()}],
            {},
            'spec.steps[0].type: Unsupported value: "Script"',
            id="unknown-type",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"limit": -1}}],
            {},
            "spec.steps[0].retryPolicy.limit in body should be greater than or equal to 0",
            id="negative-retry-limit",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"affinity": {"nodeAntiAffinity": {"x": 1}}}}],
            {},
            "spec.steps[0].retryPolicy.affinity.nodeAntiAffinity: Too many: 1: must have at most 0 items",
            id="node-anti-affinity-with-a-field",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"duration": "ten seconds"}}}],
            {},
            "spec.steps[0].retryPolicy.backoff.duration: Invalid value",
            id="bad-duration",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "timeoutSeconds": 0}],
            {},
            "spec.steps[0].timeoutSeconds: Invalid value",
            id="zero-timeout",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"concurrencyPolicy": "Sometimes"}},
            'spec.executionPolicy.concurrencyPolicy: Unsupported value: "Sometimes"',
            id="unknown-concurrency-policy",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {
                        "rules": [
                            {
                                "action": "Count",
                                "onExitCodes": {"operator": "In", "values": [1]},
                                "onPodConditions": [{"type": "DisruptionTarget"}],
                            }
                        ]
                    }
                }
            },
            "a podFailurePolicy rule needs exactly one of onExitCodes and onPodConditions",
            id="pod-failure-rule-with-both-matchers",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": []}]}
                }
            },
            "a podFailurePolicy rule needs exactly one of onExitCodes and onPodConditions",
            id="pod-failure-rule-without-matcher",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {"rules": [{"action": "Count", "onExitCodes": {"values": [0]}}]}
                }
            },
            "exit code 0 cannot be used with the In operator",
            id="exit-code-zero-with-in",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"finallyGraceSeconds": 10}},
            "spec.executionPolicy.finallyGraceSeconds: Invalid value",
            id="finally-grace-without-deadline",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"activeDeadlineSeconds": 20, "finallyGraceSeconds": 20}},
            "spec.executionPolicy.finallyGraceSeconds: Invalid value: must be less than activeDeadline",
            id="finally-grace-as-long-as-the-deadline",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"duration": "0s"}}}],
            {},
            "must be more than 0s and at most 720h (30 days)",
            id="zero-backoff",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"maxDuration": "721h"}}}],
            {},
            "must be more than 0s and at most 720h (30 days)",
            id="backoff-cap-over-30-days",
        ),
        pytest.param(
            [{"name": "a", "type": "Manual", "template": job()}],
            {},
            "a Manual step takes no template: it is an approval gate and runs nothing (step a)",
            id="manual-with-template",
        ),
        pytest.param(
            [{"name": "ok", "template": job()}, {"name": "gate", "type": "Manual", "finally": True}],
            {},
            "a Manual step cannot be finally: nobody could approve it in time to matter, as every other"
            " step has ended when it is reached (step gate)",
            id="manual-finally",
        ),
        pytest.param(
            [{"name": "report", "finally": True}],
            {},
            "a Manual step cannot be finally",
            id="typeless-gate-finally",
        ),
        pytest.param(
            [
                {"name": "cleanup", "template": job(), "finally": True},
                {"name": "deploy", "template": job(), "dependencies": ["cleanup"]},
            ],
            {},
            "spec.steps: step deploy depends on cleanup, which is a finally step, which runs only after"
            " every step that is not finally has ended, this one included: it can never come first",
            id="step-after-finally",
        ),
        pytest.param(
            [
                {"name": "deploy", "template": job()},
                {"name": "cleanup", "template": job(), "finally": True, "dependencies": ["deploy"]},
            ],
            {},
            "spec.steps: step cleanup depends on deploy, which is not a finally step: a finally step already"
            " runs after every step that is not finally",
            id="finally-after-step",
        ),
        pytest.param(
            [{"name": "gate", "type": "Manual", "matrix": {"parameters": [{"name": "s", "values": ["a"]}]}}],
            {},
            "spec.steps[].matrix: a Manual step is an approval gate and cannot fan out; put the matrix on a"
            " Job step (step gate)",
            id="manual-matrix",
        ),
        pytest.param(
            [
                {
                    "name": "build",
                    "template": job(),
                    "matrix": {"parameters": [{"name": "s", "values": ["a"]}]},
                },
                {"name": "report", "template": job(), "finally": True, "dependencies": ["build-0"]},
            ],
            {},
            "spec.steps: step report depends on build-0, which is not a finally step",
            id="finally-after-item",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {
                    "name": "clean",
                    "template": job(),
                    "finally": True,
                    "matrix": {"parameters": [{"name": "s", "values": ["a", "b"]}]},
                },
                {"name": "b", "template": job(), "dependencies": ["clean-1"]},
            ],
            {},
            "spec.steps: step b depends on clean-1, which is a finally step",
            id="item-of-finally-first",
        ),
        pytest.param(
            [
                {
                    "name": "child",
                    "type": "Flow",
                    "flow": {"templateRef": {"name": "build"}},
                    "matrix": {"parameters": [{"name": "s", "values": ["a", "b"]}]},
                }
            ],
            {},
            "spec.steps[].matrix: a Flow step cannot fan out (step child)",
            id="flow-matrix",
        ),
        # The schema's patterns are RE2's: `$` is the end of the text, not before a final newline as
        # Python's (the webhook refuses it too: tests/unit/test_validation_newlines.py).
        pytest.param(
            [{"name": "a\n", "template": job()}],
            {},
            "spec.steps[0].name in body should match",
            id="step-name-ending-in-a-newline",
        ),
        pytest.param([], {}, "spec.steps: Invalid value", id="no-steps"),
    ],
)
def test_invalid_flows_are_rejected_with_a_clear_message(
    kubectl: Kubectl,
    namespace: str,
    jobflow_crd: Any,
    steps: list[dict[str, Any]],
    spec: dict[str, Any],
    message: str,
) -> None:
    done = kubectl_create(kubectl, flow("bad", namespace, steps, **spec))
    assert done.returncode != 0
    assert message in done.stderr


def test_a_flow_name_longer_than_a_label_value_is_rejected(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    done = kubectl_create(kubectl, flow("f" * 64, namespace, [{"name": "a", "template": job()}]))
    assert done.returncode != 0
    assert "a JobFlow name must be at most 63 characters" in done.stderr
    assert (
        kubectl_create(kubectl, flow("f" * 63, namespace, [{"name": "a", "template": job()}])).returncode == 0
    )


def test_a_step_without_type_or_template_is_accepted_as_a_manual_gate(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # The original's rule: no type and no template is a Manual gate, so steps[].type has no default.
    steps: list[dict[str, Any]] = [
        {"name": "gate"},
        {"name": "work", "dependencies": ["gate"], "template": job()},
    ]
    done = kubectl_create(kubectl, flow("gates", namespace, steps))
    assert done.returncode == 0, done.stderr


# S3 keys without the webhook: the CRD refuses the repository's keyPrefix as validation/repository.py does
# (its CEL rules). A step's own key has no bound in the CRD: rules inside the step lists would cost the
# schema's CEL budget many times over, and a new bound there (an atomic list, not ratcheted) would refuse
# every status write of a stored flow holding a longer key; the webhook alone checks its length, bytes and
# segments.
PREFIX_FIELD = "spec.artifactRepository.s3.keyPrefix"


def _stored(prefix: str | None = None, key: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    s3 = {"bucket": "b"} | ({"key": key} if key is not None else {})
    steps = [
        {
            "name": "a",
            "template": job(),
            "outputs": {"artifacts": [{"name": "o", "path": "/out/o", "s3": s3}]},
        }
    ]
    repository = {"bucket": "b"} | ({"keyPrefix": prefix} if prefix is not None else {})
    return steps, {"artifactRepository": {"s3": repository}}


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("team/../x", "no /-separated segment may be '.' or '..'"),
        ("./x", "no /-separated segment may be '.' or '..'"),
        ("team/.", "no /-separated segment may be '.' or '..'"),
        ("team\x07x", "must not hold control characters"),
        ("team\x7f", "must not hold control characters"),
        ("//", "must hold a name (e.g. team-a/artifacts), not only slashes"),
        ("é" * 257, "may not be more than 512 bytes: an S3 key has at most 1024 bytes"),  # 514 bytes
    ],
)
def test_a_bad_repository_key_prefix_is_refused_without_the_webhook_naming_the_field(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any, prefix: str, message: str
) -> None:
    steps, spec = _stored(prefix)
    body = flow("bad-prefix", namespace, steps, **spec)
    assert validate_jobflow(body) != []  # the webhook refuses it too
    done = kubectl_create(kubectl, body)
    assert done.returncode != 0
    assert PREFIX_FIELD in done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("prefix", ["team-a/artifacts", "/x/", "a..b/c.d", "é" * 256])
def test_a_repository_key_prefix_the_webhook_takes_is_admitted(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any, prefix: str
) -> None:
    steps, spec = _stored(prefix)
    body = flow(f"prefix-{len(prefix)}-{prefix.count('/')}", namespace, steps, **spec)
    assert [str(e) for e in validate_jobflow(body)] == []
    done = kubectl_create(kubectl, body)
    assert done.returncode == 0, done.stderr


async def test_a_stored_flow_with_an_s3_key_over_1024_characters_keeps_its_status_writes(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    # A flow stored before the webhook refused such keys (or where it does not run) must go on running:
    # the schema under spec.steps is never tightened below what it once admitted.
    steps, spec = _stored(key="k" * 1025)
    steps[0]["inputs"] = {"artifacts": [{"name": "i", "s3": {"bucket": "b", "key": "k" * 1025}}]}
    body = flow("long-key", namespace, steps, **spec)
    assert any("s3.key" in str(e) for e in validate_jobflow(body))  # the webhook refuses it
    await create(objects, body)
    await patch_status(objects, namespace, "long-key", {"phase": "Running", "steps": [{"name": "a"}]})
