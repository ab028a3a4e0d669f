"""Finishing Jobs by hand where no Job controller runs (the `apiserver` test profile).

There, Jobs the controller creates never get pods; the test plays the Job controller by writing terminal
conditions to the Job's /status subresource. Since Kubernetes 1.31 (JobManagedBy / JobSuccessPolicy
validation, strict in 1.36) the apiserver only accepts a terminal status that the real Job controller
could have written. Found by trying against kube-apiserver 1.36:

- `Complete=True` needs `SuccessCriteriaMet=True` alongside, plus `startTime` and `completionTime`
  ("cannot set Complete=True condition without the SuccessCriteriaMet=true condition",
  "completionTime is required for Complete jobs", "startTime is required for finished job");
- `Failed=True` needs `FailureTarget=True` alongside, plus `startTime` (and no `completionTime`).

Counters are set as the Job controller would (`succeeded: 1` / `failed: 1` for a one-pod Job), so a
reader relying on them sees a consistent Job too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from zen_flow.kube.client import KubeClient
from zen_flow.kube.jobs import JOBS

Outcome = Literal["Complete", "Failed"]

# The reasons and messages the Job controller itself writes (pkg/controller/job), so the Job looks real.
_COMPLETE_REASON = "CompletionsReached"
_COMPLETE_MESSAGE = "Reached expected number of succeeded pods"
_FAILED_REASON = "BackoffLimitExceeded"
_FAILED_MESSAGE = "Job has reached the specified backoff limit"


def _condition(type_: str, reason: str, message: str, stamp: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def terminal_status(
    outcome: Outcome, now: datetime | None = None, message: str | None = None
) -> dict[str, Any]:
    """The `status` of a one-pod Job that just ended with `outcome`, in a form the apiserver accepts.
    `message` replaces the Job controller's condition message (tests that read it as an output)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if outcome == "Complete":
        text = message or _COMPLETE_MESSAGE
        return {
            "startTime": stamp,
            "completionTime": stamp,
            "active": 0,
            "ready": 0,
            "succeeded": 1,
            "conditions": [
                _condition("SuccessCriteriaMet", _COMPLETE_REASON, text, stamp),
                _condition("Complete", _COMPLETE_REASON, text, stamp),
            ],
        }
    return {
        "startTime": stamp,
        "active": 0,
        "ready": 0,
        "failed": 1,
        "conditions": [
            _condition("FailureTarget", _FAILED_REASON, _FAILED_MESSAGE, stamp),
            _condition("Failed", _FAILED_REASON, _FAILED_MESSAGE, stamp),
        ],
    }


async def finish_job(
    kube: KubeClient,
    namespace: str,
    name: str,
    outcome: Outcome,
    now: datetime | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Merge-patch the Job's /status to a terminal `outcome`; returns the updated Job.

    Meant for a Job with no status yet (a merge patch replaces the whole `conditions` list).
    """
    return await kube.request(
        "PATCH",
        JOBS.path(namespace, name, "status"),
        body={"status": terminal_status(outcome, now, message)},
        content_type="application/merge-patch+json",
    )


async def complete_job(
    kube: KubeClient, namespace: str, name: str, message: str | None = None
) -> dict[str, Any]:
    return await finish_job(kube, namespace, name, "Complete", message=message)


async def fail_job(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await finish_job(kube, namespace, name, "Failed")
