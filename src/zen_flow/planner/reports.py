"""The transfer containers' reports, read by the controller from the pod's termination messages.

The uploader's report (an `UploadReport`, JSON) becomes `status.steps[].outputs.artifacts` (sizes,
digests, where each artifact is); a report that is missing or names an error fails the step with a
message that names the artifact. The downloader writes one line when it fails, which the step's failure
message quotes.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from zen_flow.api.flow_status import ArtifactRef
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.api.transfer import DOWNLOADER, UPLOADER, UploadReport
from zen_flow.planner.artifacts import output_url, uploads


class ReportError(ValueError):
    """The uploader's report says an output artifact was not stored (or there is no report)."""


def stored_artifacts(
    flow: JobFlow, step: Step, messages: Mapping[str, str] | None
) -> tuple[ArtifactRef, ...]:
    """What the uploader stored, from its termination message; ReportError when an artifact that is
    not optional was not stored."""
    items = uploads(flow, step)
    if messages is None:
        raise ReportError(
            "output artifacts: the Job has no succeeded pod left to read the uploader's report from"
        )
    text = messages.get(UPLOADER)
    if not text:
        raise ReportError(
            "output artifacts: the uploader wrote no report: it was stopped before it finished (the "
            "pod's terminationGracePeriodSeconds, 30 s unless the template sets more, bounds the upload)"
        )
    try:
        report = UploadReport.model_validate_json(text)
    except ValidationError:
        raise ReportError(f"output artifacts: the uploader's report is unreadable: {text[:200]!r}") from None
    for artifact in items:
        if artifact.name in report.errors:
            others = len(report.errors) - 1
            more = f" (and {others} more: see the {UPLOADER} container's log)" if others else ""
            raise ReportError(f"output artifact {artifact.name}: {report.errors[artifact.name]}{more}")
        if artifact.name not in report.stored and not (artifact.optional and artifact.name in report.missing):
            raise ReportError(f"output artifact {artifact.name}: the uploader did not report it")
    return tuple(
        ArtifactRef(
            name=a.name,
            path=a.path,
            url=output_url(flow, step.name, a),
            size=report.stored[a.name].size,
            digest=report.stored[a.name].digest,
            archive=report.stored[a.name].archive,
        )
        for a in items
        if a.name in report.stored
    )


def download_failure(messages: Mapping[str, str] | None) -> str | None:
    """Why the downloader failed, from its termination message (None: it did not, or left no word)."""
    text = (messages or {}).get(DOWNLOADER, "").strip()
    return text or None


# Beside what a failed pod's containers wrote, `PodMessages` holds how each one that failed ended, under
# `EXITED + name` (a container name is a DNS label: it holds no ':'), e.g. "exit code 137 (OOMKilled)".
EXITED = "exit:"
# ... and, under this key, what ended the pod before it ran to an exit of its own (a DisruptionTarget
# condition, its activeDeadlineSeconds): retryPolicy.expression's `lastRetry.status` is then "Error".
INTERRUPTED = "interrupted:"


def exit_summary(messages: Mapping[str, str] | None) -> str | None:
    """How the failed pod's containers ended, e.g. `main: exit code 137 (OOMKilled)` (None: unknown)."""
    ended = [
        f"{key[len(EXITED) :]}: {text}" for key, text in (messages or {}).items() if key.startswith(EXITED)
    ]
    return "; ".join(ended) or None


def first_exit_code(messages: Mapping[str, str] | None) -> int | None:
    """The exit code of the failed pod's first container that failed (init containers first: the
    others never ran then), read back from `exit_summary`'s words; None when none is known."""
    for key, text in (messages or {}).items():
        if key.startswith(EXITED):
            word = text.removeprefix("exit code ").partition(" ")[0]
            try:
                return int(word)
            except ValueError:
                continue
    return None


def interrupted(messages: Mapping[str, str] | None) -> bool:
    """Did something end the failed pod before it ran to an exit of its own (`INTERRUPTED`)?"""
    return bool((messages or {}).get(INTERRUPTED))
