"""The JobFlow CRD on a real kube-apiserver: it installs, keeps every field, defaults, prints.

The CRD is installed by the session fixture `jobflow_crd` (tests/integration/conftest.py); what the
apiserver rejects is in test_crd_validation.py, test_crd_value_sources.py and test_crd_updates.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jobflow_objects import (
    DEFAULT_POLICY,
    Kubectl,
    covered_paths,
    crd_schema,
    create,
    flow,
    get,
    job,
    leaf_paths,
    patch_status,
    with_defaults,
)
from kubernetes_asyncio import client

from zen_flow.api.flow_status import JobFlowStatus
from zen_flow_dev.cluster.adminclient import wait_until
from zen_flow_dev.testing.examples import all_flow_params, load

pytestmark = pytest.mark.integration


@pytest.fixture
def objects(api_client: Any, jobflow_crd: dict[str, Any]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


# --- installation ------------------------------------------------------------------------------------


def test_crd_is_established_and_the_apiserver_kept_the_whole_schema(jobflow_crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in jobflow_crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert "NonStructuralSchema" not in conditions
    assert jobflow_crd["status"]["acceptedNames"]["shortNames"] == ["jf", "flow"]
    # The apiserver drops schema keywords it does not know (a typo such as x-kubernetes-list-typ):
    # what it stored must be exactly what we wrote.
    version = jobflow_crd["spec"]["versions"][0]
    assert version["schema"]["openAPIV3Schema"] == crd_schema()


# --- the original's examples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", all_flow_params())
async def test_the_examples_are_accepted_and_read_back_whole(
    objects: client.CustomObjectsApi, namespace: str, path: Path
) -> None:
    sent = load(path)
    # Some say `namespace: default`; only that is changed, so tests stay isolated.
    sent["metadata"]["namespace"] = namespace
    created = await create(objects, sent)
    stored = await get(objects, namespace, created["metadata"]["name"])
    assert stored["spec"] == with_defaults(sent["spec"])


async def test_defaults_fill_a_partial_execution_policy(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    sent = flow("partial", namespace, [{"name": "a", "template": job()}], executionPolicy={"backoffLimit": 0})
    await create(objects, sent)
    stored = await get(objects, namespace, "partial")
    assert stored["spec"]["executionPolicy"] == {**DEFAULT_POLICY, "backoffLimit": 0}
    # No default on steps[].type: the type-less step with a template stays type-less (a Job by the rule).
    assert "type" not in stored["spec"]["steps"][0]


def kitchen_sink_spec() -> dict[str, Any]:
    """A spec that sets every field of the schema."""
    key_ref = {"name": "creds", "key": "token"}
    return {
        "executionPolicy": {
            "concurrencyPolicy": "Replace",
            "ttlSecondsAfterFinished": 0,
            "ttlStrategy": {"secondsAfterSuccess": 3600, "secondsAfterFailure": 604800},
            "jobRetention": "LastAttempt",
            "backoffLimit": 2,
            "activeDeadlineSeconds": 7200,
            "finallyGraceSeconds": 600,
            "parallelism": 4,
            "priority": 100,
            "podPendingTimeoutSeconds": 600,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
        },
        "resourceTemplates": {
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
            "configMapTemplates": [{"metadata": {"name": "cfg"}, "data": {"k": "v"}}],
        },
        "suspend": False,
        "artifactRepository": {
            "s3": {
                "endpoint": "https://s3.example.com",
                "bucket": "flows",
                "keyPrefix": "team-a/artifacts",
                "region": "eu-west-1",
                "insecure": False,
                "accessKeyIDSecretRef": key_ref,
                "secretAccessKeySecretRef": key_ref,
            }
        },
        "stepDefaults": {
            "metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team-a"}, "annotations": {"cost": "42"}},
            "podSpec": {
                "serviceAccountName": "runner",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [
                    {
                        "key": "batch",
                        "operator": "Equal",
                        "value": "yes",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    }
                ],
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 1,
                                "preference": {
                                    "matchExpressions": [
                                        {"key": "pool", "operator": "In", "values": ["batch"]}
                                    ]
                                },
                            }
                        ]
                    }
                },
                "imagePullSecrets": [{"name": "registry"}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                "priorityClassName": "batch-low",
                "runtimeClassName": "gvisor",
                "schedulerName": "batch-scheduler",
            },
            "activeDeadlineSeconds": 3600,
        },
        "arguments": {
            "parameters": [
                {
                    "name": "env",
                    "value": "staging",
                    "description": "where",
                    "enum": ["staging", "production"],
                },
                {"name": "regions", "value": '["eu","us"]'},
            ]
        },
        "steps": [
            {
                "name": "produce",
                "type": "Job",
                "metadata": {"labels": {"team": "data"}, "annotations": {"note": "x"}},
                "retryPolicy": {
                    "limit": 0,
                    "backoff": {"type": "Exponential", "factor": 1.5, "duration": "10s", "maxDuration": "1h"},
                    "affinity": {"nodeAntiAffinity": {}},
                    "expression": "lastRetry.exitCode != 2",
                },
                "timeoutSeconds": 600,
                "podPendingTimeoutSeconds": 300,
                "when": "always",
                "continueOnFailure": True,
                "allowFailure": True,
                "template": job("echo produce"),
                "inputs": {
                    "artifacts": [
                        {
                            "name": "seed",
                            "path": "/in/seed",
                            "http": {
                                "url": "https://example.com/seed",
                                "headers": {"Accept": "*/*"},
                                "headersFrom": [
                                    {
                                        "name": "Authorization",
                                        "secretKeyRef": {"name": "seed-token", "key": "header"},
                                    }
                                ],
                            },
                        },
                        {
                            "name": "model",
                            "path": "/in/model",
                            "s3": {
                                "endpoint": "https://s3.example.com",
                                "bucket": "b",
                                "key": "models/m.bin",
                                "region": "eu-west-1",
                                "insecure": False,
                                "accessKeyIDSecretRef": key_ref,
                                "secretAccessKeySecretRef": key_ref,
                            },
                        },
                    ],
                    "parameters": [
                        {"name": "literal", "value": "1"},
                        {"name": "cm", "valueFrom": {"configMapKeyRef": key_ref}},
                        {"name": "secret", "valueFrom": {"secretKeyRef": key_ref}},
                        {"name": "env", "valueFrom": {"argument": "env"}},
                    ],
                },
                "outputs": {
                    "artifacts": [
                        {
                            "name": "result",
                            "path": "/out/result",
                            "optional": True,
                            "archive": {"format": "tar", "compression": "gzip"},
                            "s3": {
                                "endpoint": "https://s3.example.com",
                                "bucket": "b",
                                "key": "k",
                                "region": "eu-west-1",
                                "insecure": False,
                                "accessKeyIDSecretRef": key_ref,
                                "secretAccessKeySecretRef": key_ref,
                            },
                        }
                    ],
                    "parameters": [
                        {"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}},
                        {
                            "name": "digest",
                            "valueFrom": {"terminationMessage": {"container": "main", "key": "d"}},
                        },
                    ],
                },
            },
            {
                "name": "gate",
                "type": "Manual",
                "message": "Look at produce's result first",
                "approval": {
                    "approvers": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "release"}],
                    "required": 2,
                },
                "dependencies": ["produce"],
                "outputs": {
                    "parameters": [
                        {
                            "name": "env",
                            "valueFrom": {
                                "supplied": {
                                    "default": "staging",
                                    "enum": ["staging", "prod"],
                                    "description": "where to release",
                                }
                            },
                        }
                    ]
                },
            },
            {
                "name": "consume",
                "dependencies": ["gate"],
                "dependencyPolicy": "SucceededOrSkipped",
                "when": "steps.produce.phase == 'Succeeded'",
                "template": job("echo consume"),
                "inputs": {
                    "artifacts": [{"name": "result", "from": "produce/result", "path": "/in/result"}],
                    "parameters": [{"name": "count", "valueFrom": {"jsonPath": "produce:$.succeeded"}}],
                },
                "synchronization": {
                    "mutexes": [{"name": "db-migrations"}],
                    "semaphores": [{"name": "warehouse", "limit": 3}],
                },
                "memoize": {
                    "key": "consume-{{inputs.parameters.count}}",
                    "maxAge": "24h",
                    "cache": {"configMap": {"name": "consume-cache"}},
                },
            },
            {
                "name": "fan",
                "dependencies": ["produce"],
                "template": job("echo fan"),
                "matrix": {
                    "maxParallel": 2,
                    "parameters": [
                        {"name": "os", "values": ["linux", "darwin"]},
                        {"name": "region", "valueFrom": {"argument": "regions"}},
                    ],
                },
            },
            {
                "name": "spread",
                "dependencies": ["produce"],
                "template": job("echo spread"),
                "matrix": {
                    "maxItems": 16,
                    "parameters": [
                        {"name": "env", "valueFrom": {"jsonPath": "produce:$.outputs.parameters.env"}}
                    ],
                },
            },
            {
                "name": "cleanup",
                "finally": True,
                "when": "flow.outcome == 'Failed' || steps.consume.phase != 'Succeeded'",
                "template": job("echo cleanup"),
            },
            {
                "name": "child",
                "type": "Flow",
                "dependencies": ["produce"],
                "flow": {
                    "templateRef": {"name": "package", "clusterScope": True},
                    "arguments": {"parameters": [{"name": "version", "value": "1.0"}]},
                },
            },
        ],
    }


def full_status() -> dict[str, Any]:
    """A status that sets every field of the schema, in the form the models write it (to_wire())."""
    t0, t1 = "2026-01-02T03:04:05Z", "2026-01-02T03:14:05Z"
    job_ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "f-produce-0",
        "namespace": "ns",
        "uid": "u-1",
    }
    return {
        "phase": "Paused",
        "conditions": [
            {
                "type": "WaitingForApproval",
                "status": "True",
                "reason": "StepPendingApproval",
                "message": "step gate waits for approval",
                "lastTransitionTime": t1,
                "observedGeneration": 1,
            },
            {
                "type": "Complete",
                "status": "False",
                "reason": "Running",
                "message": "",
                "lastTransitionTime": t0,
            },
        ],
        "startTime": t0,
        "completionTime": t1,
        "estimatedCompletionTime": t1,
        "lastProgressTime": t1,
        "steps": [
            {
                "name": "produce",
                "phase": "Succeeded",
                "startTime": t0,
                "completionTime": t1,
                "jobRef": job_ref,
                "outputs": {
                    "parameters": [{"name": "count", "value": "1"}],
                    "artifacts": [
                        {
                            "name": "result",
                            "path": "/out/result",
                            "url": "s3://b/k",
                            "size": 1234,
                            "digest": "sha256:" + "0" * 64,
                            "archive": "tar+gzip",
                        }
                    ],
                },
                "retryCount": 1,
                "message": "Job completed",
                "nextRetryTime": t0,
            },
            {
                "name": "gate",
                "phase": "PendingApproval",
                "startTime": t1,
                "retryCount": 0,
                "approvedBy": "alice",
            },
            {
                "name": "consume",
                "phase": "Running",
                "startTime": t1,
                "attemptStartTime": t1,
                "retryCount": 1,
                "failedNodes": ["node-a"],
            },
        ],
        "resourceRefs": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "f-cfg", "namespace": "ns", "uid": "u-2"}
        ],
        "progress": {
            "completedSteps": 1,
            "totalSteps": 3,
            "successfulSteps": 1,
            "failedSteps": 0,
            "skippedSteps": 0,
        },
        "audit": {
            "initiatedBy": {"user": "alice", "type": "User"},
            "correlationID": "req-42",
            "approvals": [
                {
                    "step": "gate",
                    "decision": "Approved",
                    "user": "bob",
                    "time": t1,
                    "message": "checked the diff",
                    "suppliedBy": "carol",
                }
            ],
            "retries": [{"id": "r1", "user": "carol", "time": t1, "steps": ["produce"]}],
        },
        "observedGeneration": 1,
        "progressSummary": "1/3",
        "message": "waiting for approval of step gate",
        "heldLocks": ["deploy", "warehouse"],
    }


# The fields a flow holds instead of steps (steps or templateRef, never both: the CRD's rule), and the
# flow's own locks (a flow with them takes none on its steps: the validator's rule).
FROM_TEMPLATE_SPEC = {
    "templateRef": {"name": "build-and-test", "clusterScope": True},
    "synchronization": {"mutexes": [{"name": "deploy"}], "semaphores": [{"name": "warehouse", "limit": 2}]},
}


def test_the_samples_set_every_field_of_the_schema() -> None:
    schema = crd_schema()["properties"]
    samples = (("spec", kitchen_sink_spec()), ("spec", FROM_TEMPLATE_SPEC), ("status", full_status()))
    for key in ("spec", "status"):
        covered = {path for k, sample in samples if k == key for path in covered_paths(sample, schema[key])}
        assert set(leaf_paths(schema[key])) - covered == set(), key


async def test_every_spec_field_survives_a_round_trip(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    sent = flow("everything", namespace, [])
    sent["spec"] = kitchen_sink_spec()
    await create(objects, sent)
    stored = await get(objects, namespace, "everything")
    assert stored["spec"] == sent["spec"]
    from_template = flow("from-template", namespace, [])
    from_template["spec"] = {**FROM_TEMPLATE_SPEC, "executionPolicy": DEFAULT_POLICY}
    await create(objects, from_template)
    assert (await get(objects, namespace, "from-template"))["spec"] == from_template["spec"]


async def test_a_full_status_survives_a_round_trip(objects: client.CustomObjectsApi, namespace: str) -> None:
    sent = flow("with-status", namespace, [])
    sent["spec"] = kitchen_sink_spec()
    await create(objects, sent)
    status = full_status()
    patched = await patch_status(objects, namespace, "with-status", status)
    assert patched["status"] == status
    stored = await get(objects, namespace, "with-status")
    assert stored["status"] == status
    # The controller's model reads it and writes back exactly the same document.
    assert JobFlowStatus.model_validate(stored["status"]).to_wire() == status


async def test_a_status_write_ignores_spec_and_a_spec_write_ignores_status(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    sent = flow("split", namespace, [{"name": "a", "template": job()}])
    sent["status"] = {"phase": "Succeeded"}
    created = await create(objects, sent)
    assert "status" not in created  # the status subresource is on: create drops status
    await patch_status(objects, namespace, "split", {"phase": "Running"})
    stored = await get(objects, namespace, "split")
    assert stored["status"] == {"phase": "Running"}
    assert stored["metadata"]["generation"] == 1


async def test_kubectl_wait_for_condition_complete(
    objects: client.CustomObjectsApi, kubectl: Kubectl, namespace: str
) -> None:
    await create(objects, flow("done", namespace, [{"name": "a", "template": job()}]))
    complete = {
        "type": "Complete",
        "status": "True",
        "reason": "FlowSucceeded",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
    await patch_status(objects, namespace, "done", {"phase": "Succeeded", "conditions": [complete]})
    done = kubectl("wait", "--for=condition=Complete", "--timeout=20s", "jf/done", "-n", namespace)
    assert "condition met" in done.stdout


# --- kubectl UX ---------------------------------------------------------------------------------------


async def test_kubectl_get_shows_phase_and_progress(
    objects: client.CustomObjectsApi, kubectl: Kubectl, namespace: str
) -> None:
    await create(objects, flow("shown", namespace, [{"name": "a", "template": job()}]))
    await patch_status(
        objects,
        namespace,
        "shown",
        {
            "phase": "Running",
            "progressSummary": "1/3",
            "progress": {"successfulSteps": 1, "failedSteps": 0},
            "message": "step b is running",
        },
    )
    header, row = kubectl("get", "jf", "-n", namespace).stdout.splitlines()
    # The message by default, as `zen-flow list` and Argo's `kubectl get wf` show it: which gate a Paused
    # flow waits for, why one failed.
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "AGE", "MESSAGE"]
    assert row.split()[:3] == ["shown", "Running", "1/3"]
    assert row.endswith("step b is running")
    wide_header, wide_row = kubectl("get", "flow", "shown", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide_header.split() == [
        "NAME", "PHASE", "PROGRESS", "SUCCEEDED", "FAILED", "PRIORITY", "AGE", "MESSAGE"
    ]  # fmt: skip
    priority = wide_row[wide_header.index("PRIORITY") : wide_header.index("AGE")]
    assert priority.strip() == ""  # no priority set (0): an empty cell
    assert "step b is running" in wide_row
    # category `zen-flow`, not `all`: `kubectl delete all --all` must not delete flows (and, through owner
    # references, their Jobs) as a side effect
    assert (
        "jobflow.workflow.kube-zen.io/shown"
        in kubectl("get", "zen-flow", "-n", namespace, "-o", "name").stdout
    )
    assert "jobflow" not in kubectl("get", "all", "-n", namespace, "-o", "name").stdout


def test_kubectl_explain_prints_the_descriptions(kubectl: Kubectl, jobflow_crd: Any) -> None:
    # The aggregated OpenAPI document picks up a new CRD asynchronously: wait for it, with a deadline.
    def explained() -> str | None:
        done = kubectl("explain", "jobflow.spec.steps", check=False)
        return done.stdout if done.returncode == 0 else None

    text = wait_until(explained, timeout=30, what="kubectl explain jobflow.spec.steps")
    for fragment in (
        "at most 500",
        "retryPolicy",
        "continueOnFailure",
        "approve.workflow.kube-zen.io",
        "memoize",
    ):
        assert fragment in " ".join(text.split()), fragment
    policy = " ".join(kubectl("explain", "jobflow.spec.executionPolicy.backoffLimit").stdout.split())
    assert "total number of step retries allowed across the whole flow" in policy
    memoize = " ".join(kubectl("explain", "jobflow.spec.steps.memoize").stdout.split())
    assert "a step whose result is already known for the same key is not run again" in memoize


def test_kubectl_explain_describes_a_cronjobflows_spec_and_status(kubectl: Kubectl, jobflow_crd: Any) -> None:
    # `kubectl explain cjf.spec` printed an empty DESCRIPTION.
    def explained(what: str) -> str | None:
        done = kubectl("explain", what, check=False)
        return " ".join(done.stdout.split()) if done.returncode == 0 else None

    spec = wait_until(lambda: explained("cjf.spec"), timeout=30, what="kubectl explain cjf.spec")
    assert "A change applies from the next run time on" in spec
    status = explained("cjf.status")
    assert status is not None
    assert "Observed state, written only by zen-flow" in status
