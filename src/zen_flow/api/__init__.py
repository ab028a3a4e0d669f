"""The JobFlow API: pydantic models of the resource and the Job subset zen-flow reads."""

from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, JobFlowSpec, Step
from zen_flow.api.meta import Condition, ObjectMeta

__all__ = ["Condition", "Job", "JobFlow", "JobFlowSpec", "JobFlowStatus", "ObjectMeta", "Step", "StepStatus"]
