"""The validating webhook of CronJobFlows (`/validate-cronjobflow`): a pure review function.

CREATE and UPDATE are checked whole with `validate_cronjobflow` (the schedule, the time zone, and the
template as the JobFlow its runs will be), except an UPDATE that keeps the spec as stored (a label, a
finalizer): a rule added since it was accepted must not refuse those (ratcheting, as for JobFlows). A denial
is shaped like the JobFlow webhook's (422 Invalid, one cause per field error), so kubectl prints
`spec.jobFlowTemplate.spec.steps[0]...` lines the same way.

A key the run template's spec does not have is refused here too (validation/unknown_keys.py). In a
JobFlow the apiserver prunes such a key before any webhook sees it (kubectl's strict field validation
refuses it by name), but the CRD keeps `jobFlowTemplate.spec` whole, so it was stored, and every run was
created without it. The controller does not hold this against a CronJobFlow stored before (its runs go on
as they did), nor does an UPDATE: only a key the stored object did not already hold at that path is
refused. Suspending a misbehaving schedule (`zen-flow cron suspend`) must not fail on a key that did no
harm, nor must any other edit after a rollback to a release without a newer field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import CRON_KIND
from zen_flow.validation import validate_cronjobflow
from zen_flow.validation.errors import ErrorType, FieldError
from zen_flow.validation.unknown_keys import detail, run_template_unknown_keys
from zen_flow.webhook.review import review_whole

# Said of an unknown key whose release this replica cannot tell: during a rolling upgrade an older replica
# may answer for a field only the newer release has (docs/OPERATOR_GUIDE.md: new fields after the rollout).
_NO_SUCH_KEY = (
    "a JobFlow has no such key (or not before a newer zen-flow than this controller's): every run would be "
    "created without it"
)
_RESPELT = "(keys are camelCase): every run would be created without it"


def validate_cron_review(body: bytes) -> dict[str, Any]:
    return review_whole(body, validate_cronjobflow, CRON_KIND, run_template_errors)


def run_template_errors(cron: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[FieldError]:
    """An error per key of the CronJobFlow's run template spec that a JobFlow does not have, but none
    for a key `old` (the stored object of an UPDATE) held at the same path already."""
    held = {found.path for found in run_template_unknown_keys(old)} if old is not None else set()
    return [
        FieldError(found.path, ErrorType.FORBIDDEN, detail=detail(found, _RESPELT, _NO_SUCH_KEY))
        for found in run_template_unknown_keys(cron)
        if found.path not in held
    ]
