"""A flow (or CronJobFlow) written for a newer zen-flow (api/known_fields.py): its condition Valid is
Unknown, reason NewerSchema, naming the first field or value this release does not know; nothing else of
its status changes, and nothing of it is planned: a controller that knows it plans it (a rolling
upgrade's new leader), and sets Valid again from its own plan (an ended flow's too: `known_again`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from zen_flow.api.constants import ConditionType
from zen_flow.api.meta import Condition
from zen_flow.planner.status import INVALID_REASONS, REASON_SPEC_VALID, next_condition
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


def known_again(
    conditions: tuple[Condition, ...], generation: int | None, now: datetime
) -> tuple[Condition, ...]:
    """`conditions` of a flow this release knows (it is planned) with a Valid=Unknown (NewerSchema) an
    older controller wrote said as a plan says it: True (SpecValid), or False as its condition Failed says
    for a flow that failed invalid. Every plan of a flow under way says Valid afresh (status.conditions),
    an ended flow's keeps its conditions (lifecycle.terminal_plan): without this, a NewerSchema written by
    an older leader (a controller-only rollback) would stay on it for good. `conditions` itself when no
    Valid says NewerSchema."""
    kind = ConditionType.VALID.value
    before = next((c for c in conditions if c.type == kind), None)
    if before is None or before.reason != REASON_NEWER_SCHEMA:
        return conditions
    failed = next((c for c in conditions if c.type == ConditionType.FAILED.value), None)
    if failed is not None and failed.status == "True" and failed.reason in INVALID_REASONS:
        valid = next_condition(kind, False, failed.reason, failed.message, generation, now, before)
    else:
        valid = next_condition(kind, True, REASON_SPEC_VALID, "", generation, now, before)
    return tuple(valid if c is before else c for c in conditions)
