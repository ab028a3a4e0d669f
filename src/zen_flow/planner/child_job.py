"""A Flow step's child flow as its step's Job (`ChildFlowJob`): the record planner.children makes of a
child (`as_job`), apart from it so the modules below planner.children (planner.undeleted, read by
planner.lifecycle) can tell a child from a Job without importing what planner.children needs."""

from __future__ import annotations

from typing import Any

from pydantic.dataclasses import dataclass

from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import RECORD


@dataclass(frozen=True, slots=True, config=RECORD)
class ChildFlowJob(Job):
    """A child flow as its step's Job. `flow`: the child itself (its status is what the step's output
    paths read, its `spec.suspend` what the parent's suspension is compared with)."""

    flow: Any = None

    @property
    def child(self) -> JobFlow:
        assert isinstance(self.flow, JobFlow)
        return self.flow
