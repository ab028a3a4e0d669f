"""The subset of a batch/v1 Job that reconcile reads (the informer caches only this)."""

from __future__ import annotations

from zen_flow.api.meta import Condition, Model, ObjectMeta, Timestamp


class JobStatus(Model):
    conditions: tuple[Condition, ...] = ()
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    ready: int | None = None


class Job(Model):
    metadata: ObjectMeta
    status: JobStatus = JobStatus()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == type_), None)

    def _is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return cond is not None and cond.status == "True"

    @property
    def complete(self) -> bool:
        """Terminal success: the Job controller's `Complete` condition (not pod counts)."""
        return self._is_true("Complete")

    @property
    def failed(self) -> bool:
        """Terminal failure: the Job controller's `Failed` condition."""
        return self._is_true("Failed")

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def deleting(self) -> bool:
        return self.metadata.deletion_timestamp is not None
