"""Pydantic models of the CronJobFlow: a schedule that creates a JobFlow per run time.

Field names are Kubernetes' CronJob's where one exists (`schedule`, `timeZone`, `concurrencyPolicy`,
`startingDeadlineSeconds`, `suspend`, `successfulJobsHistoryLimit`, `failedJobsHistoryLimit`), so users
of CronJob (and Argo's CronWorkflow) know them. The template's spec is kept as the raw JobFlow spec the
user wrote: it is sent as it is in every run's create, where the JobFlow CRD's schema and webhook see it,
and it is checked beforehand with the JobFlow validator (validation/cronjobflow.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from zen_flow.api.constants import API_VERSION, CRON_KIND
from zen_flow.api.meta import Condition, Model, ObjectMeta, SpecModel, Timestamp


class TemplateMetadata(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class JobFlowTemplate(SpecModel):
    metadata: TemplateMetadata | None = None
    spec: dict[str, Any] = Field(default_factory=dict)


class CronJobFlowSpec(SpecModel):
    schedule: str = ""
    time_zone: str | None = None  # IANA name; None: UTC
    concurrency_policy: str | None = None  # ConcurrencyPolicy; None: Forbid
    starting_deadline_seconds: int | None = None
    suspend: bool | None = None
    successful_jobs_history_limit: int | None = None  # None: 3
    failed_jobs_history_limit: int | None = None  # None: 1
    job_flow_template: JobFlowTemplate = JobFlowTemplate()


class RunRef(Model):
    """A run: one JobFlow the CronJobFlow created (status.active[])."""

    name: str
    uid: str | None = None
    scheduled_time: Timestamp | None = None


class CronJobFlowStatus(Model):
    # The run time of the latest run created.
    last_schedule_time: Timestamp | None = None
    # When the latest run that succeeded finished.
    last_successful_time: Timestamp | None = None
    # The latest run time that was skipped (concurrencyPolicy Forbid, or later than the deadline): it is
    # never looked at again, so a run skipped once is not started later.
    last_skipped_time: Timestamp | None = None
    active: tuple[RunRef, ...] = ()
    # len(active), for the ACTIVE printer column (a CRD's column JSONPath cannot count).
    active_runs: int | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None


class CronJobFlow(Model):
    api_version: str = API_VERSION
    kind: str = CRON_KIND
    metadata: ObjectMeta = ObjectMeta()
    spec: CronJobFlowSpec = CronJobFlowSpec()
    status: CronJobFlowStatus = CronJobFlowStatus()

    @property
    def key(self) -> str:
        return self.metadata.key
