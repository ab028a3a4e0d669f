"""Reconcile workers: take a flow key from the queue, plan, apply the plan, write status once.

Level-based: a key is all a worker gets; everything else is read from the informer caches. Reconcile is
idempotent (deterministic Job names; a 409 adopts the flow's own Job), so running it twice is harmless,
and it never acts on a cache that has not yet seen its own creates and deletes (expectations).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial

import structlog

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.controller.announcements import Announcements
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.cluster_access import ChildFlowCache, ChildRefusals, ClusterApi, FlowCache, JobCache
from zen_flow.controller.create_failures import Executed, with_failing_conditions
from zen_flow.controller.executor import JobNameTaken, PlanExecutor
from zen_flow.controller.first_jobs import FirstJobs
from zen_flow.controller.flow_admission import FlowAdmission
from zen_flow.controller.flow_groups import FlowGroups
from zen_flow.controller.flow_memory import current
from zen_flow.controller.flow_queue import FailureReports, priority
from zen_flow.controller.flow_slots import FlowSlots
from zen_flow.controller.informer_events import InformerEvents
from zen_flow.controller.matrix_flows import MatrixFlows
from zen_flow.controller.memo_cache import EventSink, MemoCache
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.plan_cpu import FlowGone, PlanCpu
from zen_flow.controller.plan_runner import SANDBOX_BUSY_RETRY_SECONDS, PlanRunner
from zen_flow.controller.provisioning import create_resources, with_resource_uids
from zen_flow.controller.shard_gate import ShardGate, cached_flow_shard, shard_turn
from zen_flow.controller.status_writer import StatusWriter, with_job_uids
from zen_flow.controller.step_locks import StepLocks
from zen_flow.controller.templates import TemplateResolver, unexpanded
from zen_flow.controller.validity import Validity
from zen_flow.core.expressions import Evaluator
from zen_flow.kube.errors import ApiError, Conflict
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import QueueShutDown, WorkQueue

log = get_logger(__name__)

# How soon to look again when a resourceTemplates object's name is held by one on its way out (a flow
# deleted and re-created under that name: the old flow's PVC awaits the garbage collector, then its pods).
RESOURCE_RETRY_SECONDS = 5.0
# While a create is refused, the plan's own timers (another step's timeout, a retry) still wake the flow,
# at most this often: each look also tries the refused create again.
REFUSED_WAKEUP_FLOOR_SECONDS = 10.0
# A look after replacing first Jobs built from edited steps, whose deletes may wake nothing (first_jobs.py).
STEPS_CHANGED_RETRY_SECONDS = 1.0


class Controller(InformerEvents):
    def __init__(
        self,
        *,
        flows: FlowCache,
        jobs: JobCache,
        api: ClusterApi,
        queue: WorkQueue[str],
        expectations: Expectations,
        events: EventSink,
        clock: Clock,
        metrics: Metrics,
        evaluate: Evaluator | None = None,
        transfers: planner.ArtifactOptions | None = None,
        progress_deadline: float = 0.0,
        sandboxed_plans: int = 2,
        cloud_events: CloudEventSink | None = None,
        slots: planner.SlotLimits | None = None,
        shards: ShardGate | None = None,
        archive: Archiver | None = None,
    ) -> None:
        """`sandboxed_plans`: plans that evaluate `when` in the expression workers at once (one per
        worker); a flow that finds them all busy is looked at again a second later (plan_runner.py).
        `cloud_events`: where the transitions go as CloudEvents (`--cloudevents-sink`), if anywhere.
        `slots`: the limits on running flows (`--max-running-flows`, `--namespace-max-running-flows`).
        `shards`: with `--shards N > 1`, which flows this replica may reconcile now.
        `archive`: where ended flows' records go (`--archive-s3-*`), if anywhere."""
        self._flows = flows
        # The flows in line for those limits, kept from the flow informer's events (planner.slots); Flow
        # steps' child flows among them when the JobCache shows them (controller/child_flows.py).
        self._family = jobs if isinstance(jobs, ChildFlowCache) else None
        self._slots = FlowSlots(slots or planner.SlotLimits(), flows, jobs, queue, self._family)
        self._progress_deadline = progress_deadline
        self._runner = PlanRunner(
            api=api,
            evaluate=evaluate,
            transfers=transfers or planner.ArtifactOptions(),
            progress_deadline=progress_deadline,
            sandboxed_plans=sandboxed_plans,
            monotonic=clock.monotonic,
            cpu=PlanCpu(current=partial(current, flows.get), waited=metrics.plan_thread_wait.observe),
            events=events,
        )
        # One planner at a time per concurrency group, and the peers its plans weigh.
        self._groups = FlowGroups(flows, jobs, queue)
        self._jobs = jobs
        self._api = api
        self._queue = queue
        self._expectations = expectations
        self._announcements = Announcements(
            events=events, metrics=metrics, cloud_events=cloud_events, cached=flows.get
        )
        self._clock = clock
        self._metrics = metrics
        self._executor = PlanExecutor(
            api=api,
            expectations=expectations,
            metrics=metrics,
            clock=clock,
            waited=queue.waited,
            disown=jobs.deleted_stray,
            refused=jobs.child_refused if isinstance(jobs, ChildRefusals) else lambda *_: None,
            owned=jobs.jobs_for,
        )
        self._status = StatusWriter(
            api=api, flows=flows, announcements=self._announcements, metrics=metrics, clock=clock
        )
        self._first_jobs = FirstJobs()
        self._memo_cache = MemoCache(api=api, events=events, metrics=metrics)
        self._matrix = MatrixFlows()
        # Step synchronization (planner.locks): the namespaces' lock holders and waiters, from the cache
        # (a matrix step's items hold their own: the book reads such a flow's remembered expansion).
        self._locks = StepLocks(flows, jobs, queue, lambda flow: self._matrix.effective(flow)[0])
        self._admission = FlowAdmission(
            groups=self._groups,
            slots=self._slots,
            locks=self._locks,
            runner=self._runner,
            memo_cache=self._memo_cache,
            family=self._family,
        )
        self._templates = TemplateResolver(api, events, monotonic=clock.monotonic)
        self._validity = Validity(flows.parse_error, self._runner.cpu)
        self._failures = FailureReports(log)  # the causes of failing reconciles, logged once
        self._reconcile_ids = itertools.count(1)
        self._shards = shards
        self._archive = archive
        self._memory = self._remembering(jobs)

    def creates_failing(self) -> list[str]:
        """Keys of the flows whose last Job creates failed and are being retried (read at scrape time).
        Under --shards only those of shards held: a flow handed over is another replica's to report, and
        the alert sums over replicas."""
        return self._held_shards(self._executor.creates_failing())

    def status_held(self) -> list[str]:
        """Keys of the flows held as every status write of them is refused (status_holds.py); as above."""
        return self._held_shards(self._status.held_flows())

    def _held_shards(self, keys: list[str]) -> list[str]:
        return keys if self._shards is None else self._shards.held_flows(keys, self._flows.get)

    def close(self) -> None:
        """Stop the threads of sandboxed plans and of large ones (none start until a flow needs them)."""
        self._runner.close()

    async def _effective(self, stored: JobFlow) -> tuple[JobFlow, tuple[str, ...]]:
        """The flow's effective flow (matrix steps expanded): a large matrix expands in a thread, as its
        validation and plan run (two steps of 250 items, one after the other, made 62,500 dependencies)."""
        cpu = self._runner.cpu
        if (expand := self._matrix.due(stored)) is None or not cpu.large(stored):
            return self._matrix.effective(stored)
        return self._matrix.effective(stored, await cpu.run(stored, expand, measured=False))

    # --- workers -------------------------------------------------------------------------------------

    async def run_worker(self) -> None:
        shard_of = cached_flow_shard(self._flows.get)
        while True:
            try:
                key = await self._queue.get()
            except QueueShutDown:
                return
            async with shard_turn(self._shards, shard_of, key, self._queue, self._dropped) as mine:
                if mine:
                    # Every line of this reconcile, the failure report included, names flow and reconcile.
                    names = {"flow": key, "reconcile_id": f"{next(self._reconcile_ids):x}"}
                    with structlog.contextvars.bound_contextvars(**names):
                        await self._work(key)

    async def _work(self, key: str) -> None:
        started = time.perf_counter()
        try:
            requeue_after = await self.reconcile(key)
        except Conflict as exc:
            # Expected now and then (a stale cache); the conditional write refused it. Retry soon.
            self._metrics.reconciles.labels("conflict").inc()
            log.debug("status conflict; retrying", error=str(exc))
            self._queue.add_rate_limited(key, priority(self._flows.get(key)))
        except Exception as exc:
            self._metrics.reconciles.labels("error").inc()
            self._failures.failed(key, exc)
            # A flow that has not started comes back at low priority: a tenant's failing new flows must
            # not skip the start limit and the namespaces' turns of the line of new flows.
            self._queue.add_rate_limited(key, priority(self._flows.get(key)))
        else:
            self._queue.forget(key)
            self._failures.succeeded(key)
            if requeue_after is not None:
                self._metrics.reconciles.labels("requeue").inc()
                # As its events would queue it: a flow not yet started stays behind running ones.
                self._queue.add_after(key, requeue_after, priority(self._flows.get(key)))
            else:
                self._metrics.reconciles.labels("ok").inc()
        finally:
            self._metrics.reconcile_duration.observe(time.perf_counter() - started)
            self._queue.done(key)

    async def reconcile(self, key: str) -> float | None:
        flow = self._flows.get(key)
        try:
            return await self._reconcile(key)
        except FlowGone:
            # Deleted while its validation, expansion or plan waited for or ran in a thread: not applied.
            return None
        finally:
            if flow is not None:
                self._memory.settled(flow)  # deleted meanwhile: what it wrote goes (failing creates too)

    async def _reconcile(self, key: str) -> float | None:
        flow = self._flows.get(key)
        if (
            flow is None
            or flow.metadata.deletion_timestamp is not None
            or self._executor.deleted(flow.metadata.uid)  # by us; its delete event is on its way
        ):
            if flow is not None and flow.metadata.deletion_timestamp is not None:  # deleted, not gone yet:
                self._executor.forget(flow.metadata.uid)  # a create refused meanwhile counts no more
            self._queue.cancel_after(key)  # a timer set as its delete event came (`_work`'s requeue)
            return None
        # From here on the flow is its effective flow (matrix steps expanded into their items); the
        # stored one is validated and written (its status), so the cache never holds an effective spec.
        stored = flow
        flow, unexpandable = await self._effective(stored)
        uid = flow.metadata.uid
        self._announcements.settle(flow)  # a status write in doubt that the cache shows now landed
        if not self._expectations.satisfied(uid):
            # Our own creates/deletes are not in the cache yet: their watch events enqueue us again. Should
            # one be lost, look again when the expectation expires (with resync off nothing else would).
            return self._expectations.expires_in(uid)
        if (unseen := self._status.unseen_for(uid)) is not None:
            # Our last write is on its way to the cache, whose event wakes us (the requeue: a safety net).
            return unseen
        if (held := await self._status.held(flow)) is not None:
            return held  # every write of it is refused: nothing is done until one is accepted
        if (newer := self._validity.newer(stored)) is not None:  # written for a newer zen-flow
            return await self._status.newer_schema(flow, newer, stored=stored)
        if outdated := self._first_jobs.outdated(flow):
            # Their deletions wake the flow, which then starts from its new spec (first_jobs.py).
            log.info("first jobs built from edited steps; replacing them", jobs=len(outdated))
            self._announcements.steps_changed(flow)
            # A failed one raises (judging nothing): the record stays, the next reconcile sends it again.
            await self._sent(flow, outdated)
            self._first_jobs.replaced(uid)
            # A Job of a create that got no answer may never have been made: no delete event then.
            return STEPS_CHANGED_RETRY_SECONDS
        refusal = None
        if unexpanded(flow) and (refusal := await self._templates.resolve(flow)) is None:
            return None  # its steps are written now: the watch event of that write brings it back
        if refusal is not None:
            errors = refusal.errors
        else:  # a large spec is validated in a thread (controller/plan_cpu.py)
            errors = await self._validity.checked(stored) or unexpandable
        now = self._clock.now()
        started = time.perf_counter()
        if errors and refusal is not None:
            result = refusal.plan(flow, now)
        elif errors:
            # Its Jobs too: a started flow found invalid (its matrix no longer expands, after a restart)
            # has running Jobs its spec cannot name, deleted as an ended flow's (lifecycle.strays).
            result = planner.fail_invalid(flow, errors, now, jobs=self._jobs.jobs_for(uid))
            if (lag := await self._runner.flow_lags(flow, result.actions)) is not None:
                return lag
        else:
            if self._runner.turned_away(flow):
                return SANDBOX_BUSY_RETRY_SECONDS
            jobs = self._jobs.jobs_for(uid)
            if (lag := await self._runner.cache_lags(flow, jobs)) is not None:
                return lag
            messages = await self._runner.termination_messages(flow, jobs)
            await self._runner.pod_reads.read(flow, jobs, now)
            planned = await self._admission.plan(flow, jobs, now, messages)
            if planned is None:
                return SANDBOX_BUSY_RETRY_SECONDS
            result = planned
            if (lag := await self._runner.flow_lags(flow, result.actions)) is not None:
                return lag  # the flow watch brings the stored flow; the requeue is the safety net
        self._metrics.plan_duration.observe(time.perf_counter() - started)
        if self._archive is not None:  # an ended flow's record first; its TTL deletion waits for it
            result = self._archive.settle(stored, result, now, effective=flow)
        try:
            made = await create_resources(self._api, flow, result.actions)
            if made.problems:
                result = planner.fail_resources(flow, made.problems, now, made.recorded, planned=result)
            executed = await self._executor.execute(flow, planner.before_write(result.actions))
            if executed.unwritten is not None:  # who holds a taken name is unknown: nothing written
                raise executed.unwritten
            # Before the status write that marks the steps Succeeded: a lost write stores them again.
            await self._memo_cache.save(flow, result.actions, now)
        except (JobNameTaken, ApiError) as err:
            self._announcements.create_failed(flow, err)
            raise
        # A failed delete (or child flow patch) is sent again by the next plans; the status is written all
        # the same (the Jobs created, the steps' transitions: a timed-out step's own delete refused).
        self._announcements.undone(flow, executed)
        if executed.flow_undeleted is not None:  # its TTL deletion, tried again: no status left to write
            raise executed.flow_undeleted.error
        created, rejected, refusals = executed.created, executed.rejected, executed.held
        if refusals and not rejected:
            # Tried again with backoff (raised below); meanwhile the rest of the plan is recorded: the Jobs
            # it created, its deletes, the held steps Pending saying why (refused; a Job being deleted).
            result = planner.refused_creates(
                flow, result, refusals, now, deadline=self._progress_deadline, quiet=executed.quiet
            )
            self._announcements.creates_held(flow, executed)
        if executed.unanswered:
            # Those Jobs may exist while the status says nothing started: an edit of their steps before a
            # status records the start must replace them, not adopt them.
            self._first_jobs.unrecorded(flow, dict.fromkeys(executed.unanswered, ""), result.actions)
        self._announcements.acted(flow, planner.untold(result.events, executed.undeleted))
        if any(isinstance(a, planner.DeleteFlow) for a in result.actions):  # its TTL deletion went through:
            return None  # no status write (one caught up to an edit would only find the flow gone: a 404)
        if rejected:
            # The apiserver will never accept these Jobs (422/400): sending them again would loop. The
            # flow fails from what this plan did (the Jobs it created, Running) and stops its Jobs.
            base = with_job_uids(result.status, created) if created else result.status
            result = planner.fail_rejected(flow, rejected, now, replace(result, status=base), created)
            executed = await self._sent(flow, planner.before_write(result.actions), created, executed)
        status = with_job_uids(result.status, created) if created else result.status
        if made.uids or made.waiting:
            status = with_resource_uids(status, made.uids, made.waiting)
        status = with_failing_conditions(flow.status, status, executed, now)
        written = False
        if status != flow.status:
            try:
                written = await self._status.write(flow, status, stored=stored)
            except BaseException as err:
                if isinstance(err, ApiError) and err.permanent:
                    refused = await self._status.refused(flow, err, now, status, stored=stored)
                    await self._sent(flow, refused, created)
                    if (held := await self._status.held(flow)) is not None:  # its Jobs run on, unrecorded
                        self._first_jobs.unrecorded(flow, created, result.actions)  # an edit replaces them
                    return held
                # A conflict, a timeout, a reset connection: the write may have been applied all the same
                # (a 409 to the client's retry of an applied write); `in_doubt` keeps its Events and
                # CloudEvents unless the answer says it was not (a 404, a 403).
                self._first_jobs.unrecorded(flow, created, result.actions)
                self._announcements.in_doubt(flow, status, result.events, now, err)
                raise
            if errors and written:
                # Once, with the write that fails the flow: every later reconcile of the failed flow
                # (the watch event of that very write, a resync) plans it again and writes nothing.
                self._metrics.reconciles.labels("invalid").inc()
        else:
            self._metrics.status_patches.labels("unchanged").inc()
        self._announcements.recorded(flow, status, result.events, now, written=written)
        if made.waiting and not made.problems:
            self._announcements.waiting(flow, made.waiting)
        if later := [a for a in result.actions if planner.held(a)]:
            # Only now that the status recording them is stored (or needed no write): a write that failed
            # raised above, and the Jobs run on for the next plan, which sends them again (planner.finale
            # `delete_again`, or the same plan when there was nothing to write), telling nothing.
            executed = await self._sent(flow, later, created, executed)
        if failed := [*(executed.held_errors if refusals and not rejected else ()), *executed.undone_errors]:
            if result.requeue_after is not None:  # the plan's own timers (timeouts, retries) beside it
                # Not sooner than the floor: each look tries the refused create or delete again, and a plan
                # waking every second (a pod read, the substitution budget) would bypass the backoff.
                wakeup = max(result.requeue_after, REFUSED_WAKEUP_FLOOR_SECONDS)
                self._queue.add_after(key, wakeup, priority(stored))
            raise failed[0]  # the queue's backoff, per namespace, as for any failed reconcile
        if made.waiting and not made.problems:
            return min(result.requeue_after or RESOURCE_RETRY_SECONDS, RESOURCE_RETRY_SECONDS)
        return result.requeue_after

    async def _sent(
        self, flow: JobFlow, actions: Sequence[planner.Action], made: Mapping[str, str] | None = None,
        executed: Executed | None = None,
    ) -> Executed:  # fmt: skip
        """Deletes and child stops sent beside a plan's own (as its Jobs or status were refused, or held for
        its write) or with none (outdated first Jobs), judging nothing: a failure is told now, raised with
        the plan's (`executed`), or at once when there is no plan."""
        sent = await self._executor.execute(flow, actions, made=made, judged=False)
        self._announcements.undone(flow, sent)
        if executed is not None:
            return executed.and_later(sent)
        if sent.undone_errors:
            raise sent.undone_errors[0]
        return sent
