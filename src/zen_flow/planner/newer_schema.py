"""A flow (or CronJobFlow) written for a newer zen-flow (api/known_fields.py): its condition Valid is
Unknown, reason NewerSchema, naming the first field or value this release does not know; nothing else of
its status changes, and nothing of it is planned: a controller that knows it plans it (a rolling
upgrade's new leader), and sets Valid again from its own plan."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from zen_flow.api.constants import ConditionType
from zen_flow.api.meta import Condition
from zen_flow.planner.status import next_condition
from zen_flow.planner.timing import normalize

REASON_NEWER_SCHEMA = "NewerSchema"
# How often a controller that does not know a flow looks at it again (its spec's changes wake it at
# once); nothing it learns in between can change its verdict, this is only the safety net.
NEWER_SCHEMA_RETRY_SECONDS = 300.0


def newer_schema_conditions(
    conditions: Sequence[Condition], found: str, generation: int | None, now: datetime, version: str
) -> tuple[Condition, ...]:
    """`conditions` with Valid=Unknown (NewerSchema) for `found` (api/known_fields.newer_field), the
    others as they were; `version`: this controller's, said in the message."""
    message = (
        f"written for a newer zen-flow than this controller ({version}): {found}. It is not run (nor "
        "failed) until a controller that knows it leads: finish the upgrade (kubectl rollout status), "
        "or, after a rollback of the controller only, remove what it does not know"
    )
    kind = ConditionType.VALID.value
    before = next((c for c in conditions if c.type == kind), None)
    valid = next_condition(kind, None, REASON_NEWER_SCHEMA, message, generation, normalize(now), before)
    if before is None:
        return (*conditions, valid)
    return tuple(valid if c is before else c for c in conditions)
