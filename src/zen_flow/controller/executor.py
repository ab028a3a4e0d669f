"""Carrying out a plan's Job creates and deletes (and its requests on flows: controller/flow_requests.py)
for the reconciler.

Expectations are raised before a request goes out and lowered when it fails, so the reconciler never
plans on a cache that has not seen its own writes yet, and never waits for a write that was not made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.create_failures import Executed, refusal, waiting
from zen_flow.controller.flow_requests import FlowRequests
from zen_flow.controller.job_deletes import JobDeletes
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import AlreadyExists, ApiError, NotFound
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.expectations import Expectations
from zen_flow.planner.jobs import refusal_origin

log = get_logger(__name__)

# Job creates in flight per reconcile: at 8, the last Job of a 200-wide fan-out came 1.8x later than an
# ideal driver's; at 16, no later (docs/BENCHMARKS.md). The client lets 32 requests fly at once, 24 of
# one namespace, so one fan-out leaves room for the other workers' requests, its namespace's included
# (the watches have connections of their own).
CREATE_CONCURRENCY = 16


class JobApi(Protocol):
    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job: ...
    async def get_job(self, namespace: str, name: str) -> Job: ...
    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None: ...
    async def delete_flow(self, namespace: str, name: str, uid: str) -> None: ...
    async def create_child_flow(self, namespace: str, body: dict[str, Any]) -> str: ...
    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    async def suspend_flow(self, namespace: str, name: str, suspend: bool, uid: str) -> None: ...
    async def stop_flow(
        self, namespace: str, name: str, uid: str, by: str, resource_version: str = ""
    ) -> None: ...


class JobNameTaken(ApiError):
    """A Job of the planned name exists and is on its way out: the Job of a flow of the same name deleted
    moments ago, which the garbage collector has yet to remove, or one being deleted (foreground, a
    finalizer). Its step waits, the rest of the plan is written; retried with the queue's backoff."""

    def __init__(self, name: str, err: ApiError, kind: str = "Job") -> None:
        super().__init__(err.status, err.reason, planner.name_taken(kind, name))


class PlanExecutor:
    def __init__(
        self,
        *,
        api: JobApi,
        expectations: Expectations,
        metrics: Metrics,
        clock: Clock,
        waited: Callable[[str], float | None],
        disown: Callable[[str], None] = lambda key: None,
        refused: Callable[[str, str, str, str], None] = lambda uid, ns, name, why: None,
        owned: Callable[[str], Iterable[Job]] | None = None,
    ) -> None:
        """`disown`: told the key of each Job deleted as a stray of an ended flow, or by jobRetention,
        before its delete goes out (`JobCache.deleted_stray`). `refused`: told (flow uid, namespace,
        name, why) of each child flow the apiserver refused for good (`JobCache.child_refused`): its
        step fails, not the flow.
        `owned`: the cached objects of a flow (by uid), as the plan saw them (`JobCache.jobs_for`): what a
        delete removes, and by which UID, read once per plan's deletes (None: every delete is a Job's, by
        name; tests)."""
        self._refused = refused
        self._api = api
        self._expectations = expectations
        self._metrics = metrics
        self._clock = clock
        # How long a flow waited in the queue for the reconcile now running (`WorkQueue.waited`).
        self._waited = waited
        # Deletes go out as many at once as creates: the same share of the client's requests.
        self._deletes = JobDeletes(
            api=api, expectations=expectations, metrics=metrics, disown=disown, owned=owned,
            limit=CREATE_CONCURRENCY,
        )  # fmt: skip
        # UID -> key of the flows whose last Job creates failed and are retried with backoff (a
        # ResourceQuota's 403, an admission webhook's refusal, a 5xx): zen_flow_jobflows_job_creates_failing.
        # The retries back off to 1000 s apart, too rarely for a rate of failed creates to show a flow that
        # stays stuck. By UID, as every book here: a flow re-created under its name (while a create of the
        # old one was in flight) starts afresh, and the flow's memory forgets them with it (flow_memory.py).
        self._creates_failing: dict[str, str] = {}
        # UIDs of the flows whose last Job deletes failed (a policy's 403 or 422, a 5xx, no answer): a
        # second failure in a row of a 5xx or no answer is told, a first one taken for a blip.
        self._deletes_failing: set[str] = set()
        self._requests = FlowRequests(api)

    def creates_failing(self) -> list[str]:
        """Keys of the flows whose last Job creates failed."""
        return list(self._creates_failing.values())

    def uids(self) -> set[str]:
        """The flows (by UID) it keeps anything of (flow_memory.py)."""
        return self._creates_failing.keys() | self._deletes_failing | self._requests.uids()

    def forget(self, uid: str) -> None:
        self._creates_failing.pop(uid, None)
        self._deletes_failing.discard(uid)
        self._requests.forget(uid)

    def deleted(self, uid: str) -> bool:
        """Did this controller delete the flow of this UID (the cache has not shown it gone yet)?"""
        return self._requests.deleted(uid)

    async def execute(
        self,
        flow: JobFlow,
        actions: Sequence[planner.Action],
        made: Mapping[str, str] | None = None,
        *,
        judged: bool = True,
    ) -> Executed:
        """Execute the plan's actions: every create, whatever became of the others, then the deletes,
        whatever became of the creates (a succeeded step's Job deleted by jobRetention may be what frees
        the quota a refused create waits for): all of them, but those held back once one got no answer
        (controller/job_deletes.py); then its child flows' patches and the flow's TTL deletion
        (controller/flow_requests.py). Returns what they did (`Executed`): a create, a delete or a child's
        patch that fails for now is the reconciler's to raise, once the status is written. `made`:
        {name: uid} of what this reconcile created already, which the cache may not show yet (its
        deletes). `judged`: a plan's actions, whose creates and deletes (or none) say whether the flow's
        creates and deletes are failing; not the deletes a reconcile sends after its status write."""
        ns, uid = flow.metadata.namespace, flow.metadata.uid
        created: dict[str, str] = {}
        rejected: list[str] = []
        refused: list[tuple[int, planner.CreateRefusal, Exception]] = []  # (its place in `creates`, ...)
        taken: list[tuple[int, planner.CreateRefusal, Exception]] = []  # names held by one on its way out
        creates = [a for a in actions if isinstance(a, planner.CreateJob)]
        deletes = [a for a in actions if isinstance(a, planner.DeleteJob)]
        if creates:
            self._expectations.expect_creations(uid, [a.body["metadata"]["name"] for a in creates])
        if deletes:
            self._expectations.expect_deletions(uid, [a.name for a in deletes])
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create_one(place: int, create: planner.CreateJob) -> None:
            name = create.body["metadata"]["name"]
            child = planner.is_child_body(create.body)  # a Flow step's child JobFlow (planner/children.py)
            asked = self._clock.monotonic()
            try:
                async with gate:
                    if child:
                        created[name] = await self._api.create_child_flow(ns, create.body)
                    else:
                        created[name] = (await self._api.create_job(ns, create.body)).metadata.uid
                self._metrics.job_creates.labels("created").inc()
                # Why a step started late, per step: the flow waited for a worker (`queued_ms`, since the
                # event that woke it), or the create for the apiserver (`create_ms`, request slot and
                # rate-limiter token included).
                timing = {"create_ms": _ms(self._clock.monotonic() - asked)}
                if (queued := self._waited(flow.key)) is not None:
                    timing["queued_ms"] = _ms(queued)
                log.info("created job", step=create.step, job=name, attempt=create.attempt, **timing)
            except AlreadyExists as err:
                try:
                    found = await (self._child_holder if child else self._holder)(flow, name, err)
                except BaseException:
                    self._metrics.job_creates.labels("error").inc()
                    self._expectations.creation_failed(uid, name)
                    raise
                if isinstance(found, Job):
                    created[name] = found.metadata.uid
                    self._metrics.job_creates.labels("adopted").inc()
                    self._expectations.creation_observed(uid, name)
                    log.info("adopted job", step=create.step, job=name, attempt=create.attempt)
                    return
                self._expectations.creation_failed(uid, name)
                if isinstance(found, JobNameTaken):
                    self._metrics.job_creates.labels("taken").inc()
                    taken.append((place, waiting(create, found), found))
                    raise found from None
                self._metrics.job_creates.labels("rejected").inc()
                if child:  # a JobFlow squats the child's name: its step fails naming it, not the flow
                    self._refused(uid, ns, name, found)
                    log.info("child flow name taken", step=create.step, flow=name, error=found)
                    return
                rejected.append(f"step {create.step}: {found}")
            except ApiError as err:
                self._expectations.creation_failed(uid, name)
                if not err.permanent:
                    self._metrics.job_creates.labels("error").inc()
                    refused.append((place, refusal(create, err), err))
                    raise
                self._metrics.job_creates.labels("rejected").inc()
                if child:  # its step fails saying why (ChildFlows); the flow's other steps go on
                    self._refused(uid, ns, name, f"the apiserver refused child flow {name}: {err.message}")
                    log.info("child flow refused", step=create.step, flow=name, error=err.message)
                    return
                origin = refusal_origin(flow, create.step, err.message)  # a field the step did not write
                rejected.append(f"step {create.step}: {err.status} {err.message}{origin}")
            except Exception as err:  # no answer: tried again (a Job it made after all is adopted then)
                self._metrics.job_creates.labels("error").inc()
                self._expectations.creation_failed(uid, name)
                refused.append((place, refusal(create, err), err))
                raise

        # Concurrently: one after the other, the last Job of a 200-wide fan-out waited for 199 round trips
        # (docs/BENCHMARKS.md). Every create is attempted even when one fails, so no expectation is left
        # waiting for a create that was never sent.
        outcomes = await asyncio.gather(
            *(create_one(i, c) for i, c in enumerate(creates)), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):  # cancelled: the reconcile itself is going away
                self._deletes.fail(deletes, uid)
                raise failure
        # Until the flow's next plan gets here: a plan without creates (the flow was stopped, suspended,
        # failed) waits on none. A taken name is no failure: it waits for the garbage collector.
        again = uid in self._creates_failing
        if any(not isinstance(f, JobNameTaken) for f in failures):
            self._creates_failing[uid] = flow.key
        elif judged:
            self._creates_failing.pop(uid, None)
        # Then every delete, whatever became of the creates (controller/job_deletes.py).
        done = await self._deletes.send(flow, deletes, made or {})
        undeleted = done.undeleted
        deletes_again = uid in self._deletes_failing
        if undeleted:
            self._deletes_failing.add(uid)
        elif judged:
            self._deletes_failing.discard(uid)
        # Then the child flows' patches and the flow's TTL deletion (controller/flow_requests.py).
        requested = await self._requests.send(flow, actions)
        refused.sort(key=lambda entry: entry[0])
        taken.sort(key=lambda entry: entry[0])
        told = {id(err) for _, _, err in (*refused, *taken)}
        # A failed look at who holds a taken name: as before, nothing is written; the retry soon.
        unwritten = next((f for f in failures if id(f) not in told), None)
        names = {c.step: c.body["metadata"]["name"] for c in creates}
        return Executed(
            created,
            rejected,
            tuple(r for _, r, _ in refused),
            tuple(err for _, _, err in refused),
            again,
            unwritten if isinstance(unwritten, Exception) else None,
            tuple(names[r.step] for _, r, e in refused if not isinstance(e, ApiError) or e.status >= 500),
            tuple(r for r, _ in undeleted),
            tuple(err for _, err in undeleted),
            deletes_again,
            done.deleted,
            requested.unpatched,
            requested.undeleted,
            tuple(r for _, r, _ in taken),
            tuple(err for _, _, err in taken),
        )

    async def _holder(self, flow: JobFlow, name: str, err: AlreadyExists) -> Job | JobNameTaken | str:
        """Whose is the Job a create found under its name? The flow's (a create whose answer was lost, or
        one the cache has not shown yet): the Job, adopted unless it is being deleted and unfinished
        (`planner.adoptable`). A deleted flow's of the same name (recreated at once: the garbage collector
        has yet to remove its Jobs), or any Job being deleted, the flow's own too: wait for it; the retry
        creates the step's Job once it is gone. Anyone else's: why the step cannot run, for good (adopting
        it failed the step later as "deleted outside zen-flow", since it never shows among the flow's
        Jobs)."""
        try:
            job = await self._api.get_job(flow.metadata.namespace, name)
        except NotFound:
            return JobNameTaken(name, err)  # gone since: the retry creates it
        ref = job.metadata.controller_ref()
        if ref is not None and ref.uid == flow.metadata.uid and planner.adoptable(job):
            return job
        if planner.on_its_way_out(ref, job.deleting, flow):
            return JobNameTaken(name, err)
        return (
            f"Job {name} already exists and is not this flow's (owned by {planner.describe_owner(ref)}): "
            "delete it or rename the flow"
        )

    async def _child_holder(self, flow: JobFlow, name: str, err: AlreadyExists) -> Job | JobNameTaken | str:
        """`_holder` for a child flow: the child (as its step's Job) when it is the flow's own (a create
        whose answer was lost), JobNameTaken when it is on its way out, else why the step cannot run."""
        stored = await self._api.get_flow(flow.metadata.namespace, name)
        if stored is None:
            return JobNameTaken(name, err, "JobFlow")
        child = JobFlow.model_validate({"metadata": stored.get("metadata", {})})
        ref = child.metadata.controller_ref()
        deleting = child.metadata.deletion_timestamp is not None
        if ref is not None and ref.uid == flow.metadata.uid and not deleting:
            return planner.as_job(child)
        if planner.on_its_way_out(ref, deleting, flow):
            return JobNameTaken(name, err, "JobFlow")
        return (
            f"JobFlow {name} already exists and is not this flow's child (owned by "
            f"{planner.describe_owner(ref)}): delete it or rename the flow"
        )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
