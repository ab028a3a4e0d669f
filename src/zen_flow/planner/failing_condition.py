"""The conditions that say a flow's Job requests fail for now, one rule for both: JobCreateFailing
(planner.create_refusals) and JobDeleteFailing (planner.delete_refusals).

True naming the first refused object and the apiserver's answer while such requests fail; False once a
plan of a flow that had it gets by without one (its requests `passed`, or it had none left to send);
absent on a flow none of whose requests ever failed. The planner never names them, so every status
written carries them on. Their `lastTransitionTime` moves only when their status flips, and a first blip
(`quiet`: a 5xx or a lost answer, most often gone by the retry) leaves them as they were.

While one stays True for the same reason and the object its message names is still refused, its message
stays as first written. The answer's text varies (a webhook's request id, `no answer: <error>`, how many
more are refused), and every status written brings the flow back at once through its own watch event,
past the backoff: each changed word would send every refused request again at once, in a loop while the
apiserver flaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.meta import Condition
from zen_flow.planner.status import MAX_CONDITION_MESSAGE, cut, next_condition, observed_at
from zen_flow.planner.timing import normalize

__all__ = ["FailingCondition", "Refused", "carried", "with_failing"]


@dataclass(frozen=True)
class FailingCondition:
    """A condition of this kind: its `type`, and its False reasons once a plan's requests `passed`, or
    once it had none refused and none sent (`idle`)."""

    type: str
    passed: str
    idle: str


@dataclass(frozen=True)
class Refused:
    """What a True condition says now: its `reason` and `message`, and `leads`: how a message that names
    one of the objects refused now begins (one of the same reason is kept)."""

    reason: str
    message: str
    leads: tuple[str, ...]


def with_failing(
    old: JobFlowStatus,
    status: JobFlowStatus,
    kind: FailingCondition,
    refused: Refused | None,
    now: datetime,
    *,
    passed: bool = False,
    quiet: bool = False,
) -> JobFlowStatus:
    """`status` (planned from `old`) with the condition of `kind`: True saying `refused`, False once a
    plan of a flow that had it got by without a refusal, as the module's docstring says."""
    before = next((c for c in old.conditions if c.type == kind.type), None)
    if quiet:  # as it was, at the generation planned
        return carried(status, kind.type, before and observed_at(before, status.observed_generation))
    if refused is not None:
        value, reason, message = "True", refused.reason, cut(refused.message, MAX_CONDITION_MESSAGE)
        if (
            before is not None
            and before.status == value
            and before.reason == reason
            and (before.message or "").startswith(refused.leads)
        ):
            message = before.message or ""  # the same refusal of the same object: as first said
    elif before is not None and before.status == "True":
        value, reason, message = "False", kind.passed if passed else kind.idle, ""
    elif before is not None:  # False already: said once, not again for each plan's requests
        return carried(status, kind.type, observed_at(before, status.observed_generation))
    else:
        return status
    generation = status.observed_generation
    cond = next_condition(kind.type, value == "True", reason, message, generation, normalize(now), before)
    return carried(status, kind.type, cond)


def carried(status: JobFlowStatus, type_: str, cond: Condition | None) -> JobFlowStatus:
    """`status` with `cond` as its condition of `type_` (none: without one)."""
    current = next((c for c in status.conditions if c.type == type_), None)
    if current == cond:
        return status
    others = tuple(c for c in status.conditions if c.type != type_)
    return status.model_copy(update={"conditions": (*others, cond) if cond is not None else others})
