"""A status write that races another writer (409 Conflict): nothing the other writer did is lost, no Job is
created twice, and the flow converges. The controller runs its real worker loop and queue against
FakeApiServer, which answers a stale resourceVersion with 409 as the apiserver does
(tests/integration/test_fake_contract.py holds it to that)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow.controller.metrics import Metrics
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import from_status
from zen_flow.planner.jobs import build_job
from zen_flow.planner.lifecycle import ENDED_REASON
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step

APPROVE = "approve.workflow.kube-zen.io/gate"
APPROVED_BY = "approved-by.workflow.kube-zen.io/gate"
REJECT = "reject.workflow.kube-zen.io/gate"

CHAIN = make_flow([job_step("a"), job_step("b", "a")], name="chain", namespace="team")
GATED = make_flow(
    [job_step("a"), manual_step("gate", "a"), job_step("b", "gate")], name="gated", namespace="team"
)


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_jobs_created_before_a_conflicting_status_write_are_adopted_not_created_again(rig: Rig) -> None:
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("a") == "Running"
    # Job a finishes; at the same time a user labels the flow. The job informer delivers first, so the
    # controller plans from a flow one version old: it creates Job b, then its status write is refused.
    api.finish_job("team", rig.job("a"))
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {**f.metadata.labels, "owner": "data-team"}})}))  # fmt: skip
    api.sync(flows=False)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    assert rig.count("zen_flow_status_patches_total", "conflict") == 1
    assert [name.split("-")[1] for name in api.job_creates] == ["a", "b"]  # b was created, unrecorded
    assert rig.step("b") == "Pending"  # the refused write recorded nothing

    api.sync()  # the flow informer catches up; the retry plans from the current version
    await rig.settle()
    api.sync()
    assert rig.step("b") == "Running"
    api.finish_job("team", rig.job("b"))
    api.sync()
    await rig.settle()

    assert rig.flow.status.phase == "Succeeded"
    assert len(api.job_creates) == 2  # Job b was adopted, never sent twice
    assert api.refused == ["409 Conflict"]  # no AlreadyExists either: the expectation held the create back
    assert rig.flow.metadata.labels["owner"] == "data-team"  # the other writer's change is kept


FRESH = make_flow([job_step("migrate"), job_step("extra")], name="fresh", namespace="team")


def edited(flow: JobFlow) -> JobFlow:
    """What a user's second `kubectl apply` does to a flow that has not started: `extra` removed, and
    `migrate` runs another command (a new generation, as the apiserver counts spec changes)."""
    (migrate, _) = flow.spec.steps
    template = {**migrate.template, "metadata": {"annotations": {"version": "2"}}}
    steps = (migrate.model_copy(update={"template": template}),)
    meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
    return flow.model_copy(update={"spec": flow.spec.model_copy(update={"steps": steps}), "metadata": meta})


def assert_restarted_from_the_edit(rig: Rig) -> None:
    """`edited`'s flow runs its one step from the new spec: `extra`'s first Job went, `migrate`'s was
    created again, and only that one is left."""
    api = rig.api
    assert [s.name for s in rig.flow.status.steps] == ["migrate"]
    assert [job for _, job in api.jobs] == [rig.job("migrate")]
    assert sorted(name.split("-")[1] for name in api.job_creates) == ["extra", "migrate", "migrate"]


@pytest.mark.parametrize("rig", [FRESH], indirect=True)
async def test_steps_edited_before_the_start_was_recorded_replace_the_first_jobs(rig: Rig) -> None:
    api = rig.api
    api.sync()
    # The user applies the edited flow while the first reconcile, planned from the first version,
    # creates its Jobs: its status write is refused, and admission let the edit through (not started).
    api.update_flow(rig.key, edited)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    assert sorted(name.split("-")[1] for name in api.job_creates) == ["extra", "migrate"]
    api.sync()  # the edited flow reaches the cache: the Jobs built from the old steps go
    await rig.settle()
    assert sorted(job for _, job in api.jobs) == []
    assert ("Normal", "StepsChanged") in {(t, r) for t, r, _ in api.events}
    deletes = rig.metrics.registry.get_sample_value
    assert deletes("zen_flow_job_deletes_total", {"reason": "edited"}) == 2
    assert deletes("zen_flow_job_deletes_total", {"reason": "other"}) == 0
    api.sync()  # their deletions are seen: the steps start from the new spec
    await rig.settle()
    api.sync()
    assert [s.name for s in rig.flow.status.steps] == ["migrate"]
    assert rig.step("migrate") == "Running"
    assert [job for _, job in api.jobs] == [rig.job("migrate")]
    api.finish_job("team", rig.job("migrate"))
    api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Succeeded"


@pytest.mark.parametrize("rig", [FRESH], indirect=True)
async def test_a_failed_delete_of_outdated_first_jobs_is_sent_again(rig: Rig) -> None:
    api = rig.api
    api.sync()
    api.update_flow(rig.key, edited)
    await rig.settle()
    api.sync()
    deletes: list[str] = []
    delete = api.delete_job

    async def flaky_delete(namespace: str, name: str, uid: str = "") -> None:
        deletes.append(name)
        if len(deletes) == 1:
            raise from_status(503, {"message": "etcdserver: leader changed"})
        await delete(namespace, name, uid)

    api.delete_job = flaky_delete  # type: ignore[method-assign]
    # The first delete fails with a 503: the other is held back (the apiserver is in trouble), and the
    # reconcile is retried with backoff (milliseconds), which sends both.
    await rig.settle()
    assert [name.split("-")[1] for name in deletes] == ["migrate", "migrate", "extra"]
    assert not api.jobs
    api.sync()
    await rig.settle()
    api.sync()
    assert_restarted_from_the_edit(rig)


@pytest.mark.parametrize("rig", [FRESH], indirect=True)
async def test_steps_edited_after_a_failed_first_status_write_replace_the_first_jobs_too(rig: Rig) -> None:
    # The write failed without a conflict (a 503); the edit came after it, and admission let it through.
    api = rig.api
    api.sync()
    api.status_errors.append(from_status(503, {"message": "etcdserver: leader changed"}))
    await rig.settle(0)
    api.update_flow(rig.key, edited)
    api.sync()
    await rig.settle()
    api.sync()
    await rig.settle()
    api.sync()
    assert_restarted_from_the_edit(rig)


@pytest.mark.parametrize("rig", [FRESH], indirect=True)
async def test_a_suspend_before_the_start_was_recorded_keeps_the_running_first_jobs(rig: Rig) -> None:
    # A new generation, but nothing the Jobs were built from changed: they run on (API.md, suspend).
    api = rig.api
    api.sync()

    def suspended(flow: JobFlow) -> JobFlow:
        meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
        spec = flow.spec.model_copy(update={"suspend": True})
        return flow.model_copy(update={"spec": spec, "metadata": meta})

    api.update_flow(rig.key, suspended)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    api.sync()
    assert len(api.job_creates) == len(api.jobs) == 2
    assert {rig.step("migrate"), rig.step("extra")} == {"Running"}
    assert "StepsChanged" not in {r for _, r, _ in api.events}


LOCKED = make_flow(
    [job_step("migrate")], name="locked", namespace="team", synchronization={"mutexes": [{"name": "db"}]}
)


@pytest.mark.parametrize("rig", [LOCKED], indirect=True)
async def test_locks_edited_before_the_start_was_recorded_replace_the_first_jobs(rig: Rig) -> None:
    # The first Job ran under mutex db; the edit (let through: the start was not recorded) names db-2,
    # which guards other work: the Job is replaced, and the flow runs under the lock it now names.
    api = rig.api
    api.sync()

    def relocked(flow: JobFlow) -> JobFlow:
        sync = flow.spec.synchronization
        assert sync is not None
        spec = flow.spec.model_copy(
            update={
                "synchronization": sync.model_copy(
                    update={"mutexes": (sync.mutexes[0].model_copy(update={"name": "db-2"}),)}
                )
            }
        )
        meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
        return flow.model_copy(update={"spec": spec, "metadata": meta})

    api.update_flow(rig.key, relocked)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    assert [job for _, job in api.jobs] == []
    assert ("Normal", "StepsChanged") in {(t, r) for t, r, _ in api.events}
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("migrate") == "Running"
    assert rig.flow.status.held_locks == ("db-2",)
    assert len(api.job_creates) == 2


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_a_label_added_before_the_start_was_recorded_keeps_the_first_jobs(rig: Rig) -> None:
    api = rig.api
    api.sync()
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {**f.metadata.labels, "owner": "data-team"}})}))  # fmt: skip
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("a") == "Running"
    assert len(api.job_creates) == 1  # the first Job was kept, and recorded by the retried write
    assert "StepsChanged" not in {r for _, r, _ in api.events}


@pytest.mark.parametrize("rig", [GATED], indirect=True)
async def test_an_approval_racing_a_status_write_is_not_lost(rig: Rig) -> None:
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    # The user approves the gate while Job a finishes; the controller first sees only the Job.
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"annotations": {**f.metadata.annotations, APPROVE: "true"}})}))  # fmt: skip
    api.finish_job("team", rig.job("a"))
    api.sync(flows=False)
    await rig.settle(0)
    assert api.refused == ["409 Conflict"]  # its plan (gate waiting) would have hidden the approval
    await rig.settle()  # retried with backoff, refused again while the flow informer lags
    assert set(api.refused) == {"409 Conflict"}

    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("gate") == "Succeeded"
    await rig.settle(0)  # b starts on the event of that write, once the approval is stored
    api.sync()
    assert rig.step("b") == "Running"
    approvals = rig.flow.status.audit.approvals if rig.flow.status.audit else ()
    assert [(a.step, a.decision) for a in approvals] == [("gate", "Approved")]
    assert len(api.job_creates) == 2
    reasons = [reason for _, reason, _ in api.events]
    assert reasons.count("StepApproved") == 1  # events of the refused plan were never sent


@pytest.mark.parametrize("rig", [GATED], indirect=True)
async def test_a_reject_that_refused_the_approvals_status_write_runs_nothing_behind_the_gate(
    rig: Rig,
) -> None:
    # Alice approves; Bob's reject lands between the controller's read and its status write, which the
    # apiserver refuses (409). The approval never was stored: step b, behind the gate, never runs.
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    api.finish_job("team", rig.job("a"))
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("gate") == "PendingApproval"
    api.update_flow(rig.key, annotated({APPROVE: "true", APPROVED_BY: "alice"}))
    api.sync()
    real = api.patch_flow_status
    rejected: list[bool] = []

    async def patch(namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        if not rejected:
            rejected.append(True)
            api.update_flow(rig.key, annotated({REJECT: "true", APPROVED_BY: "bob"}))
        return await real(namespace, name, ops)

    api.patch_flow_status = patch  # type: ignore[method-assign]
    await rig.settle(0)
    assert api.refused == ["409 Conflict"]
    for _ in range(3):
        api.sync()
        await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert (rig.step("gate"), rig.step("b")) == ("Failed", "Skipped")
    assert [name.split("-")[1] for name in api.job_creates] == ["a"]
    approvals = rig.flow.status.audit.approvals if rig.flow.status.audit else ()
    assert [(a.decision, a.user) for a in approvals] == [("Rejected", "bob")]
    reasons = [reason for _, reason, _ in api.events]
    assert "StepApproved" not in reasons
    assert reasons.count("StepStarted") == 1  # step a's


TIMED = make_flow([job_step("a", timeoutSeconds=30)], name="timed", namespace="team")


@pytest.mark.parametrize("rig", [TIMED], indirect=True)
async def test_a_timeout_the_jobs_own_deadline_noticed_first_is_counted_as_one(rig: Rig) -> None:
    """The Job carries the step's timeout as activeDeadlineSeconds; when the Job controller stops it
    first, zen-flow deletes nothing, and the timeout still counts (it once counted only its deletes)."""
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    api.finish_job("team", rig.job("a"), succeeded=False, reason="DeadlineExceeded")
    api.sync()
    await rig.settle()
    assert rig.step("a") == "Failed"
    assert "timed out after 30s" in (rig.flow.status.step("a").message or "")  # type: ignore[union-attr]
    timeouts = rig.metrics.registry.get_sample_value("zen_flow_step_timeouts_total", {"namespace": "team"})
    assert timeouts == 1
    assert rig.metrics.registry.get_sample_value("zen_flow_job_deletes_total", {"reason": "timeout"}) == 0


def test_every_job_delete_cause_is_exported_from_the_start() -> None:
    from zen_flow.controller.first_jobs import STEPS_CHANGED
    from zen_flow.controller.job_deletes import delete_cause
    from zen_flow.controller.metrics import JOB_DELETE_CAUSES
    from zen_flow.planner.pending_pods import PENDING_TIMEOUT_MARK

    registry = Metrics().registry
    reasons = (
        "timed out after 30s",
        PENDING_TIMEOUT_MARK,
        "flow deadline exceeded",
        "replaced by a newer flow",
        "stopped by ann",
    )
    from zen_flow.planner.lifecycle import ENDED_REASON
    from zen_flow.planner.retention import RELEASED_REASON, SUPERSEDED_FAILED_ONLY, SUPERSEDED_REASON

    retention = (SUPERSEDED_REASON, SUPERSEDED_FAILED_ONLY, RELEASED_REASON)
    causes = [
        delete_cause(reason)
        for reason in (*reasons, STEPS_CHANGED, *retention, ENDED_REASON, "the flow spec is invalid")
    ]
    assert causes == [
        "timeout",
        "pod_pending",
        "deadline",
        "replaced",
        "stopped",
        "edited",
        "superseded",
        "superseded",
        "succeeded",
        "ended",
        "other",
    ]
    assert sorted(set(causes)) == sorted(JOB_DELETE_CAUSES)
    for cause in causes:
        assert registry.get_sample_value("zen_flow_job_deletes_total", {"reason": cause}) == 0


CLEANUP = make_flow([job_step("a"), job_step("cleanup", **{"finally": True})], name="tidy", namespace="team")


@pytest.mark.parametrize("rig", [CLEANUP], indirect=True)
async def test_the_finally_step_starts_on_the_watch_event_of_the_write_that_ends_the_other_steps(
    rig: Rig,
) -> None:
    # The reconcile that sees a end writes that first and creates no Job; the event of its own write
    # brings the next reconcile at once (no requeue, no resync), which creates cleanup's.
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    api.finish_job("team", rig.job("a"))
    api.sync()
    await rig.settle(0)
    assert (rig.step("a"), rig.step("cleanup")) == ("Succeeded", "Pending")
    assert [name.split("-")[1] for name in api.job_creates] == ["a"]
    api.sync()  # the event of that status write
    await rig.settle(0)
    assert rig.step("cleanup") == "Running"
    assert [name.split("-")[1] for name in api.job_creates] == ["a", "cleanup"]


@pytest.mark.parametrize("rig", [CLEANUP], indirect=True)
async def test_no_finally_job_exists_when_the_write_that_ends_the_other_steps_is_refused(rig: Rig) -> None:
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    api.finish_job("team", rig.job("a"))
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {**f.metadata.labels, "owner": "data-team"}})}))  # fmt: skip
    api.sync(flows=False)
    await rig.settle(0)
    assert api.refused == ["409 Conflict"]
    assert [name.split("-")[1] for name in api.job_creates] == ["a"]  # nothing ran on the refused write
    api.sync()
    await rig.settle()
    api.sync()
    await rig.settle()
    assert rig.step("cleanup") == "Running"
    api.finish_job("team", rig.job("cleanup"))
    api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Succeeded"
    assert [name.split("-")[1] for name in api.job_creates] == ["a", "cleanup"]


RERUN = make_flow([job_step("load"), job_step("report", "load")], name="etl", namespace="team")


def annotated(annotations: dict[str, str | None]) -> Callable[[JobFlow], JobFlow]:
    def edit(flow: JobFlow) -> JobFlow:
        kept = {k: v for k, v in {**flow.metadata.annotations, **annotations}.items() if v is not None}
        return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"annotations": kept})})

    return edit


async def load_failed(rig: Rig) -> None:
    """The flow has run to Failed: its step load failed (report never ran)."""
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    api.finish_job("team", rig.job("load"), succeeded=False)
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.flow.status.phase == "Failed"


@pytest.mark.parametrize("rig", [RERUN], indirect=True)
async def test_a_flow_cache_behind_the_job_cache_never_deletes_a_live_reruns_jobs(rig: Rig) -> None:
    # A new leader's Job informer is warm, its flow informer is not (or the flow watch hangs): it sees the
    # rerun's Job with the flow still Failed from before the request. Taken for an ended flow's unrecorded
    # Job, it would be deleted and the live rerun fail ("deleted outside zen-flow").
    api = rig.api
    await load_failed(rig)
    failed = api.get(rig.key)
    api.update_flow(rig.key, annotated({"workflow.kube-zen.io/retry": "r1"}))
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.flow.status.phase == "Running"
    rerun = rig.job("load")
    assert failed is not None
    api._cached_flows[rig.key] = failed  # the flow cache is back before the request
    assert await rig.controller.reconcile(rig.key) is not None  # looks again, deletes nothing
    assert (rig.api.flows[rig.key].metadata.namespace, rerun) in [(ns, n) for ns, n in api.jobs]
    api.sync()
    await rig.settle()
    assert rig.step("load") == "Running"
    assert rig.job("load") == rerun


async def abandoned_rerun(rig: Rig) -> str:
    """load failed, and a rerun's reconcile created its next Job, then lost its status write (a label set
    meanwhile); the request is then taken back. Returns the Job's name: still running, recorded nowhere."""
    api = rig.api
    await load_failed(rig)
    api.update_flow(rig.key, annotated({"workflow.kube-zen.io/retry": "r1"}))
    api.sync()
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {**f.metadata.labels, "owner": "data-team"}})}))  # fmt: skip
    await rig.settle()
    assert "409 Conflict" in api.refused
    [rerun] = [name for _, name in api.jobs if name.endswith("-r1")]
    assert rig.flow.status.phase == "Failed"
    api.update_flow(rig.key, annotated({"workflow.kube-zen.io/retry": None}))
    return rerun


@pytest.mark.parametrize("rig", [RERUN], indirect=True)
async def test_an_abandoned_reruns_job_is_deleted_once_the_flow_cache_is_current(rig: Rig) -> None:
    api = rig.api
    rerun = await abandoned_rerun(rig)
    api.sync()  # the flow cache holds the stored flow: the controller's read of it agrees
    await rig.settle()
    assert rerun not in [name for _, name in api.jobs]
    assert [m for t, r, m in api.events if r == "StrayJobDeleted"] == [
        f"Job {rerun} (step load) deleted: {ENDED_REASON}"
    ]
    assert rig.metrics.registry.get_sample_value("zen_flow_job_deletes_total", {"reason": "ended"}) == 1
    assert api.disowned == [f"team/{rerun}"]  # its tombstone would bring it back to the next plans
    assert rig.flow.status.phase == "Failed"


@pytest.mark.parametrize("rig", [RERUN], indirect=True)
async def test_an_abandoned_reruns_job_is_deleted_when_the_flow_read_finds_it_gone(rig: Rig) -> None:
    api = rig.api
    rerun = await abandoned_rerun(rig)
    api.sync()

    async def gone(namespace: str, name: str) -> None:
        return None  # 404: nothing left to wait for

    api.get_flow = gone  # type: ignore[method-assign,assignment]
    api._cached_flows[rig.key] = api._cached_flows[rig.key].model_copy(
        update={"metadata": api._cached_flows[rig.key].metadata.model_copy(update={"resource_version": "1"})}
    )
    await rig.settle()
    assert rerun not in [name for _, name in api.jobs]
    assert rig.metrics.registry.get_sample_value("zen_flow_job_deletes_total", {"reason": "ended"}) == 1


RELEASE = make_flow(
    [job_step("build"), job_step("cleanup", **{"finally": True})],
    name="rel",
    namespace="team",
    execution_policy={"activeDeadlineSeconds": 60},
)


@pytest.mark.parametrize("rig", [RELEASE], indirect=True)
async def test_a_stray_deleted_by_a_plan_whose_status_write_is_refused_is_still_told(rig: Rig) -> None:
    # A Job under the finally step's name, owned by the flow, made by someone else while build runs. The
    # deadline passes: the plan that ends the flow deletes it, and someone writes the flow between the
    # controller's read of it and the status write (409). The next plan finds the Job gone and deletes
    # nothing, so the event of the delete must not have waited for the refused write.
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    forged = job_name("rel", "cleanup", 0)
    await api.create_job("team", build_job(rig.flow, rig.flow.spec.steps[1], forged, 0))
    read = api.get_flow

    async def read_then_written(namespace: str, name: str) -> Mapping[str, Any] | None:
        found = await read(namespace, name)
        api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
            update={"labels": {**f.metadata.labels, "owner": "data-team"}})}))  # fmt: skip
        api.get_flow = read  # type: ignore[method-assign]
        return found

    api.get_flow = read_then_written  # type: ignore[method-assign]
    api.sync()
    await rig.settle(100)
    assert api.refused == ["409 Conflict"]
    assert forged not in [name for _, name in api.jobs]
    api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert [m for _, r, m in api.events if r == "StrayJobDeleted"] == [
        f"Job {forged} (step cleanup) deleted: {ENDED_REASON}"
    ]
