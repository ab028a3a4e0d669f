"""Admission rules for JobFlows, shared by the webhook, `zen-flow validate` and the controller.

Pure: no I/O. `validate_jobflow(obj)` (the flow's definition; what the controller re-checks),
`validate_approvals(obj)` (approval annotations; admission only) and `validate_update(old, new)` (both,
plus the UPDATE rules) take raw objects (dicts as they arrive in an AdmissionReview or a YAML file) and
return every FieldError at once (`validate_cronjobflow(obj)` checks a CronJobFlow, its template with
`validate_jobflow`, and `validate_jobflowtemplate(obj)` a JobFlowTemplate, its spec with it too,
`validate_clusterjobflowtemplate(obj)` a ClusterJobFlowTemplate alike; a flow
naming a template is expanded by `expansion.expand`); `AcceptedSpecs` remembers valid specs by their
JSON bytes (argument values aside).

The image runs these modules compiled with mypyc (hatch_build.py); `COMPILED` says whether this
process does, `BUILD` says it in a word ("compiled" or "python": `zen-flow version`, the controller's
start-up line, `zen_flow_build_info`).
"""

from types import FunctionType

from zen_flow.validation.accepted import NAME_READERS, AcceptedSpecs
from zen_flow.validation.approvals import has_approvals, validate_approvals
from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.errors import ErrorType, FieldError, render
from zen_flow.validation.flow import STEP_WIRING, validate_jobflow
from zen_flow.validation.flow_template import validate_clusterjobflowtemplate, validate_jobflowtemplate
from zen_flow.validation.size import status_bound
from zen_flow.validation.update import has_started, validate_update

# A function mypyc compiled is a built-in, not a Python function.
COMPILED = not isinstance(validate_jobflow, FunctionType)
BUILD = "compiled" if COMPILED else "python"

__all__ = [
    "BUILD",
    "COMPILED",
    "NAME_READERS",
    "STEP_WIRING",
    "AcceptedSpecs",
    "ErrorType",
    "FieldError",
    "has_approvals",
    "has_started",
    "render",
    "status_bound",
    "validate_approvals",
    "validate_clusterjobflowtemplate",
    "validate_cronjobflow",
    "validate_jobflow",
    "validate_jobflowtemplate",
    "validate_update",
]
