"""What a plan decided of the steps that are not finally, carried on the finally steps' Jobs it creates.

The plan that ends the last of the other steps creates the finally steps' Jobs at once. If its status
write is then lost (a conflict with a write to the flow between its read and its write, a crash), the
next plan reads the status that plan read and must end those steps as it did: the finally steps run on
that outcome (their `when` saw it as `flow.outcome`). Most of it the next plan decides again the same
way, from the Jobs (a finished Job stays finished) and the spec; what it could decide otherwise is what
hangs on the flow's annotations and on the clock:

- a gate's decision: an approval or rejection can be given, changed or taken back in between, and a
  decision seen only past the gate's `timeoutSeconds` counts (given in time, seen late: a restart), so
  the gate that plan timed out could read as decided, or the gate it decided as timed out;
- a step's timeout: that plan deleted the Job past its `timeoutSeconds`, but the Job may have finished
  between its read and the delete, and the next plan would read its success;
- a gate that plan ended without a decision (a graceful stop, fail-fast): a decision seen since must
  not decide it.

So each finally Job the planner creates carries `workflow.kube-zen.io/decisions`: the steps this plan
ended by a decision or a timeout that the status it read did not record, `deploy=approved,
check=timed-out` (empty when none). A plan that finds such a Job, for the attempt its status says comes
next, takes those decisions (`Recorded`), and for a gate waiting in its status that the record does not
name, takes none: that plan ended it otherwise, and so does this one. Step names are DNS labels (no `,`
nor `=`), each named once: at most `MAX_STEPS` entries of at most 74 characters (~36 KiB), in practice
the few gates one plan decides.
"""

from __future__ import annotations

from collections.abc import Mapping

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed-out"
_VERDICTS = frozenset({APPROVED, REJECTED, TIMED_OUT})


def encode(decided: Mapping[str, str]) -> str:
    """The annotation's value: `step=verdict`, comma-separated, in the order they were decided."""
    return ",".join(f"{step}={verdict}" for step, verdict in decided.items())


def parse(text: str) -> dict[str, str]:
    """The decisions an annotation's value records; what does not read as one is left out (a user can
    edit a Job's annotations: nothing there is trusted to be well-formed)."""
    found: dict[str, str] = {}
    for entry in text.split(","):
        step, sep, verdict = entry.strip().partition("=")
        if sep and step and verdict in _VERDICTS:
            found.setdefault(step, verdict)
    return found
