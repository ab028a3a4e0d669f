"""The validating webhook of CronJobFlows (`/validate-cronjobflow`): a pure review function.

CREATE and UPDATE are checked whole with `validate_cronjobflow` (the schedule, the time zone, and the
template as the JobFlow its runs will be), except an UPDATE that keeps the spec as stored (a label, a
finalizer): a rule added since it was accepted must not refuse those (ratcheting, as for JobFlows). A denial
is shaped like the JobFlow webhook's (422 Invalid, one cause per field error), so kubectl prints
`spec.jobFlowTemplate.spec.steps[0]...` lines the same way.
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import CRON_KIND
from zen_flow.validation import validate_cronjobflow
from zen_flow.webhook.envelope import parse_review
from zen_flow.webhook.review import _internal, allow, deny_invalid


def validate_cron_review(body: bytes) -> dict[str, Any]:
    request = parse_review(body)
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid)
    spec = request.object.raw("spec")
    if request.operation == "UPDATE" and spec is not None and spec == request.old_object.raw("spec"):
        return allow(request.uid)  # the name cannot change; the spec is the one accepted before
    try:
        errors = validate_cronjobflow(request.object.decode())
    except Exception as exc:  # fail closed, with a message, never a 500 traceback
        return _internal(request, "validation", exc)
    if errors:
        return deny_invalid(request, errors, CRON_KIND)
    return allow(request.uid)
