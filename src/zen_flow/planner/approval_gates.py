"""The observe pass's look at a step waiting at its approval gate (a Manual step, PendingApproval):
the decision the flow's annotations give (approved, with its values; rejected), a tallied gate's
approvals audited one by one and counted in its message while it waits, and its `timeoutSeconds`
rejecting it once no decision came in time (planner/approvals.py reads the annotations)."""

from __future__ import annotations

from zen_flow.api.constants import ANNOTATION_DECISION_MESSAGE_PREFIX, StepPhase
from zen_flow.api.flow_status import Approval
from zen_flow.api.jobflow import StepApproval
from zen_flow.core.gate_values import ValuesError
from zen_flow.planner.approvals import (
    approval_count,
    approvers_so_far,
    decision,
    gate_outputs,
    supplier,
    tally_message,
    values_refused,
    waiting_message,
)
from zen_flow.planner.child_stops import ChildStops
from zen_flow.planner.events import NO_DECISION_MARK
from zen_flow.planner.steps import StepWork, bound
from zen_flow.planner.timing import after


class ApprovalGates(ChildStops):
    """Steps waiting for a decision (see the module; the observe pass, `zen_flow.planner.observation`)."""

    def observe_approval(self, w: StepWork) -> None:
        annotations = self.flow.metadata.annotations
        decided = decision(annotations, w.name, w.spec.approval)
        approval = w.spec.approval
        tallied = approval is not None and (decided is None or decided[0] == "Approved")
        # The values of the approval that opens the gate: those on the flow when it is seen approved.
        opened = decided is not None and decided[0] == "Approved"
        supplied_by = supplier(annotations, w.spec) if opened else None
        if approval is not None and tallied:
            self.tally(w, approval, waiting=decided is None, supplied_by=supplied_by)
        if decided is None:
            self.expire_approval(w)
            return
        verdict, user = decided
        w.approved_by = user
        # Decided on annotations that can change before this plan's status write lands (a reject after
        # the approve: a 409; an approval taken back): its dependents wait for the write, as a timeout's
        # do (`after_timeout`), so none runs on a decision the stored status never held.
        self.timed_out.add(w.name)
        if not tallied:  # a tallied gate's approvals are in the audit already, one by one
            why = annotations.get(ANNOTATION_DECISION_MESSAGE_PREFIX + w.name) or None
            self.approvals.append(
                Approval(
                    step=w.name,
                    decision=verdict,
                    user=user,
                    time=self.now,
                    message=why and why[:1024],
                    supplied_by=supplied_by,
                )
            )
        if verdict != "Approved":
            w.fail(self.now, f"rejected by {user}" if user else "rejected")
            self.note_failure(w)
            return
        try:
            w.outputs = gate_outputs(annotations, w.spec)
        except ValuesError as err:  # no webhook checked them: fail, never stall nor guess
            w.fail(self.now, values_refused(user, str(err), w.name))
            self.note_failure(w)
            return
        w.succeed(self.now, f"approved by {user}" if user else "approved")

    def tally(
        self, w: StepWork, approval: StepApproval, *, waiting: bool, supplied_by: str | None = None
    ) -> None:
        """A tallied gate's approvals (`approval`): each approver audited as it comes, and, while it
        waits, its count in its message (none yet on a gate one approval opens: its usual message).

        The audit stays bounded, whatever approvals are given and taken back (validation/size.py counts
        on it): in one reach of the gate each user is audited at most once, and approvals that do not
        open it at most `required - 1` times; those that open it always are, the one that opens it (the
        last recorded) even by a user audited before in this reach (who approved, was taken back and
        approved again): at most `required` entries in the plan that opens it, `2 * required - 1` in
        all. `supplied_by`: who set the values of a gate that opens now, for the entry of the approval
        that opens it, so that entry is always there to carry it."""
        annotations = self.flow.metadata.annotations
        users = approvers_so_far(annotations, w.name, approval.needed)
        audited = self.audited_in_reach(w)
        room = approval.needed - 1 - len(audited)
        # The webhook keeps a decision message only with the request that recorded its writer last in
        # approved-by (webhook/mutation.py): it is theirs.
        why = annotations.get(ANNOTATION_DECISION_MESSAGE_PREFIX + w.name) or None
        for user in users:
            opens = not waiting and user == users[-1]
            if user in audited and not opens:
                continue
            if waiting:
                if room <= 0:
                    continue
                room -= 1
            self.approvals.append(
                Approval(
                    step=w.name,
                    decision="Approved",
                    user=user,
                    time=self.now,
                    message=why[:1024] if why and user == users[-1] else None,
                    # The approval that opens it takes the values: who set them goes with it.
                    supplied_by=supplied_by if opens else None,
                )
            )
        if waiting:
            w.approved_by = ", ".join(users) or None
            count = approval_count(annotations, w.name, users)
            if count or approval.needed > 1:
                w.message = bound(tally_message(users, count, approval.needed, w.spec.message))
            else:
                w.message = bound(waiting_message(w.spec))

    def audited_in_reach(self, w: StepWork) -> set[str]:
        """The users audited approving `w` since it was last reached (a rerun reaches it again): entries
        from its start on (the audit's times and the start are the planner's clock, to the second; an
        entry of the run before in the very second a rerun reaches it would count as this run's: it can
        only leave an audit entry out, never add one)."""
        audit = self.flow.status.audit
        since = w.start_time
        return {
            a.user
            for a in (*(audit.approvals if audit is not None else ()), *self.approvals)
            if a.step == w.name
            and a.decision == "Approved"
            and a.user
            and (since is None or a.time is None or a.time >= since)
        }

    def expire_approval(self, w: StepWork) -> None:
        """A Manual step's `timeoutSeconds` bounds its wait for a decision, from when it was reached:
        then it is rejected (Failed), as if someone had said no; unlike a rejection, a rerun asks again
        (its reset clears `start_time`, so the wait counts from when the rerun reaches it)."""
        timeout = w.spec.timeout_seconds
        if not timeout or w.start_time is None or w.phase != StepPhase.PENDING_APPROVAL:
            return
        due = after(w.start_time, timeout)
        if self.now < due:
            self.wakeups.append(due)
            return
        w.fail(self.now, f"{NO_DECISION_MARK} {timeout}s (timeoutSeconds)")
        self.note_failure(w)
        self.timed_out.add(w.name)  # an approval seen later still wins: `after_timeout`
