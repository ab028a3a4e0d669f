"""The finally steps' gate: whether every step that is not finally has ended, so that the finally
steps may start (API.md "Finally steps"), and what their `when` sees then (`flow.outcome`).

Fail-fast ends the other steps here rather than in the conclude pass, once none of them runs: the
finally steps then start in the same plan, not one status write later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.core.expressions import WhenContext
from zen_flow.planner.observation import Observation
from zen_flow.planner.steps import StepWork


class Finale(Observation):
    # What the finally steps' `when` sees: `flow.outcome` besides (set once the other steps have ended).
    final_context: WhenContext

    def close_main(self) -> bool:
        """Have all the steps that are not finally ended, so that the finally steps may start? Under
        fail-fast, once none of them runs, those that would never start end here (Skipped), so the
        finally steps start in this same plan. A stop, a replacement or the flow deadline ends everything
        at once (`conclude`): no finally step starts after them."""
        if self.stopped is not None or self.deadline_passed or self.group.replaced is not None:
            return False
        final = self.final
        if not self.final_outcome_known():
            if self.failure is None:
                return False
            main = [w for name, w in self.moving.items() if name not in final]
            self.fail_retrying(main)
            if any(w.phase == StepPhase.RUNNING for w in main):
                return False
            self.works.wake_all()
            for name, w in self.moving.items():
                if name not in final and not w.terminal:
                    w.drop(self.now, "the flow failed")
        outcome = FlowPhase.FAILED if self.main_failed else FlowPhase.SUCCEEDED
        self.final_context = replace(
            self.when_context, flow={**self.when_context.flow, "outcome": outcome.value}
        )
        return True

    def final_outcome_known(self) -> bool:
        """Has every step that is not finally ended (settled or dormant steps are read cheaply)?"""
        final = self.final
        if not self.works.dormant <= final:
            return False
        return all(w.terminal for name, w in self.moving.items() if name not in final)

    def fail_retrying(self, works: Sequence[StepWork]) -> None:
        for w in works:
            if w.phase == StepPhase.RETRYING:
                w.fail(self.now, f"not retried, the flow is failing; {w.message or ''}")
