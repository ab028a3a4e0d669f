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
from zen_flow.webhook.review import review_whole


def validate_cron_review(body: bytes) -> dict[str, Any]:
    return review_whole(body, validate_cronjobflow, CRON_KIND)
