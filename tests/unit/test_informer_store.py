"""The informer's store without a cluster: replace, the owner index, transforms, and the tombstones a
finished Job leaves (informer_rig)."""

from __future__ import annotations

from informer_rig import FakeSource, Recorder, event, flow_raw, job, job_informer, job_raw, running
from informer_rig import clock_fixture as clock_fixture  # the `clock` fixture
from informer_rig import recorder_fixture as recorder_fixture  # the `recorder` fixture

from zen_flow.api import Job, JobFlow
from zen_flow.api.job import JOB
from zen_flow.informer import JobFlowInformer, JobInformer, Store, owner_flow_key
from zen_flow.kube import ListResult
from zen_flow_dev.testing.clock import FakeClock, settle

# --- store ----------------------------------------------------------------------------------------


def owner_index(obj: Job) -> list[str]:
    ref = obj.metadata.controller_ref()
    return [ref.uid] if ref else []


def test_replace_reports_adds_updates_and_tombstones_with_last_known_state() -> None:
    store: Store[Job] = Store()
    store.upsert(job("a", rv="1"))
    store.upsert(job("b", rv="2"))

    result = store.replace([job("a", rv="5"), job("c", rv="6")])

    assert [j.metadata.name for j in result.added] == ["c"]
    assert [
        (old.metadata.resource_version, new.metadata.resource_version) for old, new in result.updated
    ] == [("1", "5")]
    # b vanished while we were not watching: the handler gets the last state we knew.
    assert [(j.metadata.name, j.metadata.resource_version) for j in result.deleted] == [("b", "2")]
    assert sorted(store.keys()) == ["ns/a", "ns/c"]


def test_namespaced_replace_leaves_other_namespaces_alone() -> None:
    store: Store[Job] = Store()
    store.upsert(job("a", ns="one"))
    store.upsert(job("b", ns="two"))

    result = store.replace([], namespace="one")

    assert [j.metadata.key for j in result.deleted] == ["one/a"]
    assert store.keys() == ["two/b"]


def test_owner_index_follows_updates_and_deletes() -> None:
    store: Store[Job] = Store({"owner": owner_index})
    store.upsert(job("a", owner_uid="u1"))
    store.upsert(job("b", owner_uid="u1"))
    store.upsert(job("orphan", owner_uid=None))
    assert sorted(j.metadata.name for j in store.by_index("owner", "u1")) == ["a", "b"]

    store.upsert(job("b", owner_uid="u2"))  # re-owned
    store.delete("ns/a")

    assert store.by_index("owner", "u1") == []
    assert [j.metadata.name for j in store.by_index("owner", "u2")] == ["b"]


def test_job_transform_keeps_no_pod_template_or_managed_fields() -> None:
    cached = JOB.validate_python(job_raw("a"))
    wire = JOB.dump_python(cached, by_alias=True)
    assert "spec" not in wire  # reconcile reads no Job spec field
    assert "managedFields" not in wire["metadata"]
    assert "labels" not in wire["metadata"]  # nor labels (the owner reference names the flow)
    assert not hasattr(cached, "__dict__")  # a slotted record: no dict per cached Job


def test_owner_flow_key_only_for_jobflow_controllers() -> None:
    assert owner_flow_key(job("a")) == "ns/flow"
    assert owner_flow_key(job("b", owner_uid=None)) is None
    raw = job_raw("c")
    raw["metadata"]["ownerReferences"][0]["kind"] = "CronJob"
    raw["metadata"]["ownerReferences"][0]["apiVersion"] = "batch/v1"
    assert owner_flow_key(JOB.validate_python(raw)) is None


COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}


async def test_a_finished_job_deleted_at_once_still_counts_for_its_flow_a_while(
    clock: FakeClock, recorder: Recorder
) -> None:
    # ttlSecondsAfterFinished: 0: the Job is gone moments after it completed. When both events are read
    # before the flow's reconcile, its plan must still find the outcome, not "deleted outside zen-flow".
    source = FakeSource(ListResult(items=(job_raw("done"), job_raw("running")), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        await informer.wait_synced()
        stream = await source.next_stream()
        stream.push(
            event("MODIFIED", job_raw("done", rv="11", status=COMPLETE)),
            event("DELETED", job_raw("done", rv="12", status=COMPLETE)),
            event("DELETED", job_raw("running", rv="13")),  # deleted unfinished: not its flow's result
        )
        await settle()
        [kept] = informer.jobs_for("u1")
        assert (kept.metadata.name, kept.complete) == ("done", True)
        assert informer.get("ns/done") is None  # gone from the cache itself

        stream.push(event("ADDED", job_raw("done", rv="14")))  # created again: the live one counts
        await settle()
        [live] = informer.jobs_for("u1")
        assert (live.metadata.resource_version, live.complete) == ("14", False)

        stream.push(event("DELETED", job_raw("done", rv="15", status=COMPLETE)))
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["done"]
        clock.jump(301)  # remembered five minutes
        assert informer.jobs_for("u1") == []


def test_the_jobs_of_a_deleted_flow_leave_no_tombstones() -> None:
    # The garbage collector deletes a deleted flow's Jobs: no flow waits for their results, and 2,000
    # of them would push out the tombstones that matter.
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    flows.store.replace([JobFlow.model_validate(flow_raw("flow"))])
    done = JOB.validate_python(job_raw("done", owner_uid="uid-flow", status=COMPLETE))
    orphan = JOB.validate_python(job_raw("orphan", owner_uid="u2", status=COMPLETE))  # a flow gone since
    assert (flows.owns(done), flows.owns(orphan)) == (True, False)
    jobs = JobInformer(None, clock=FakeClock(), owner_alive=flows.owns)  # type: ignore[arg-type]
    jobs.gone.remember(done)
    jobs.gone.remember(orphan)
    assert len(jobs.gone) == 1
    assert [j.metadata.name for j in jobs.jobs_for("uid-flow")] == ["done"]


async def test_a_finished_job_the_controller_deleted_as_a_stray_leaves_no_tombstone(
    clock: FakeClock, recorder: Recorder
) -> None:
    # An ended flow's finished stray (an abandoned rerun's Job) is deleted by the controller itself: were
    # it kept as a tombstone, the next plans would delete it again on every wake-up for five minutes, and
    # a rerun meanwhile would take its old outcome over instead of running the step.
    source = FakeSource(ListResult(items=(job_raw("stray"), job_raw("other")), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        await informer.wait_synced()
        stream = await source.next_stream()
        informer.deleted_stray("ns/stray")  # before its delete goes out: the event may come first
        stream.push(
            event("DELETED", job_raw("stray", rv="11", status=COMPLETE)),
            event("DELETED", job_raw("other", rv="12", status=COMPLETE)),  # a Job TTL's delete: kept
        )
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other"]

        stream.push(event("ADDED", job_raw("stray", rv="13")))  # a later Job of that name: kept as ever
        await settle()
        stream.push(event("DELETED", job_raw("stray", rv="14", status=COMPLETE)))
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other", "stray"]

        informer.deleted_stray("ns/stray")  # a delete that found it gone already: its tombstone goes too
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other"]
