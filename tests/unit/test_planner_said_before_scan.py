"""planner.finale `said_before`: its three answers come from one scan of the settled steps, which stops
once all three are found. Each must still be what a scan of its own finds: the cause of the first
settled step, in spec order, that a stop (over every step, or over the steps that are not finally) or
the finally grace (over those) ended in this run. A scan that stopped at the first answer would leave
the others unanswered, and a plan would miss a stop or the grace said before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.planner.finale import Finale
from zen_flow.planner.grace import GRACE_MESSAGES
from zen_flow.planner.interventions import STOPPED_MESSAGES
from zen_flow.planner.steps import cause_of, ended_in_run

BEGAN = datetime(2026, 1, 1, tzinfo=UTC)
MESSAGES = (
    *(f"{m}alice" for m in STOPPED_MESSAGES),
    *(f"{m}bob; will retry" for m in STOPPED_MESSAGES),
    *(f"{m}the last 5s" for m in GRACE_MESSAGES),
    "boom",
    None,
)
STEP = st.builds(
    lambda phase, message, offset: (phase, message, BEGAN + timedelta(seconds=offset)),
    st.sampled_from([StepPhase.FAILED, StepPhase.SKIPPED, StepPhase.SUCCEEDED]),
    st.sampled_from(MESSAGES),
    st.sampled_from([-1, 0, 1]),
)


def alone(steps: list[StepStatus], final: set[str], stop: bool, main: bool) -> str | None:
    """One question's own scan (what said_before did before the single scan)."""
    prefixes = STOPPED_MESSAGES if stop else GRACE_MESSAGES
    for s in steps:
        if (main or not stop) and s.name in final:
            continue
        if ended_in_run(s, BEGAN, prefixes):
            return cause_of(s.message or "")
    return None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(STEP, st.booleans()), max_size=8))
def test_each_answer_of_the_one_scan_is_its_own_scans(
    drawn: list[tuple[tuple[str, str | None, datetime], bool]],
) -> None:
    steps = [
        StepStatus(name=f"s{i}", phase=phase, message=message, completion_time=at)
        for i, ((phase, message, at), _) in enumerate(drawn)
    ]
    final = {s.name for s, (_, is_final) in zip(steps, drawn, strict=True) if is_final}
    # The one scan reads only these of the Finale (its flow's startTime, its finally steps, the settled
    # steps in spec order).
    plan = SimpleNamespace(
        flow=SimpleNamespace(status=SimpleNamespace(start_time=BEGAN)),
        final=final,
        works=SimpleNamespace(settled=lambda: iter(steps)),
        _said={},
    )
    plan._read_said = lambda: Finale._read_said(plan)  # type: ignore[arg-type]
    for stop in (True, False):
        for main in (True, False):
            assert Finale.said_before(plan, stop=stop, main=main) == alone(steps, final, stop, main)  # type: ignore[arg-type]
