"""Running the pure planner for the reconciler: what it must first read from the API, and where it runs.

Before a plan: what finished pods wrote (termination-message outputs, artifact reports), why pending steps'
pods wait (`pod_reads`, controller/pod_reads.py), and whether a Running step's Job the cache lacks exists
(`cache_lags`); after it, whether a plan deleting an ended flow's unrecorded Jobs was made from the
stored flow (`flow_lags`). The plan itself runs on the event loop, or in a thread when it is too large for
the loop (`PlanCpu`, controller/plan_cpu.py), or in a thread of its own pool when it has a `when` or a
retryPolicy.expression to evaluate that is not constant (nor a phase test): those wait for an expression
worker (up to the budget each), because no expression may hold the event loop (a chain of `+` over a large
annotation, on 500 steps, once held it 13 s). Which plans those are is known only by making them: a plan on
the loop (or, for a large flow, in a `PlanCpu` thread) whose evaluator is asked anything stops (`Offload`)
and is made again in the pool, unless the flow was deleted meanwhile (`FlowGone`); the other plans of such a
flow (nearly all: a step's `when` is decided once) stay on the loop, or in a `PlanCpu` thread when large.
That pool has as many threads as there are expression workers, and a plan that finds them all busy is not
queued for one: the reconciler looks at the flow again a second later. A tenant's flows full of slow
expressions once held every reconcile worker waiting for threads, and every other flow with them. And one
plan evaluates for `PLAN_EVALUATION_SECONDS` (and the expression under way then): the conditions left are
decided by the flow's next plans (`Deferred`), so a 500-step flow of slow conditions takes turns with the
other flows instead of holding a worker for minutes. The turns go by namespace (`_may_start`): each
namespace that wants threads gets an equal share, and a free thread goes to the namespace that has waited
longest.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.pod import Pod
from zen_flow.controller.plan_cpu import PlanCpu
from zen_flow.controller.pod_reads import PodReads
from zen_flow.controller.unseen_jobs import CACHE_LAG_RETRY_SECONDS, EventSink, JobApi, UnseenJobs
from zen_flow.core.expressions import (
    BudgetExceeded,
    CompiledWhen,
    Deferred,
    EvaluationError,
    Evaluator,
    Offload,
)
from zen_flow.logging import get_logger

log = get_logger(__name__)

# Pod reads for termination messages in flight per plan (the client allows 32 in all).
POD_READS_AT_ONCE = 8
# When every thread for plans that evaluate in the sandbox is taken: look at the flow again after this.
SANDBOX_BUSY_RETRY_SECONDS = 1.0
# Expression evaluation one plan may spend before the conditions left wait for the next plan.
PLAN_EVALUATION_SECONDS = 5.0
# A namespace turned away is waiting for a thread until it has not asked for this long (its flows come
# back every SANDBOX_BUSY_RETRY_SECONDS while they wait).
TURN_SECONDS = 3.0


class PlanApi(JobApi, Protocol):
    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None: ...
    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]: ...


class PlanRunner:
    def __init__(
        self,
        *,
        api: PlanApi,
        evaluate: Evaluator | None,
        transfers: planner.ArtifactOptions,
        progress_deadline: float,
        sandboxed_plans: int = 2,
        monotonic: Callable[[], float] = time.monotonic,
        cpu: PlanCpu | None = None,
        events: EventSink | None = None,
    ) -> None:
        self._api = api
        # Where a plan with no `when` or retryPolicy.expression to evaluate runs: on the loop, or in a
        # thread when large (plan_cpu.py).
        self.cpu = cpu or PlanCpu()
        self._monotonic = monotonic
        self._evaluate = evaluate
        self._transfers = transfers
        self._progress_deadline = progress_deadline
        self._slots = sandboxed_plans
        self._busy = 0
        self._held: Counter[str] = Counter()  # namespace -> its plans in the pool
        # namespace -> (when it began waiting for a thread, when it last asked)
        self._waiting: dict[str, tuple[float, float]] = {}
        # flow uid -> when its plan last found no thread (`turned_away`)
        self._wanting: dict[str, float] = {}
        self._pool: ThreadPoolExecutor | None = None  # started on first use, like the expression workers
        # Why pending steps' pods wait: read before a plan when due, the last of each Job kept for its plans.
        self.pod_reads = PodReads(api, monotonic=monotonic)
        # Running steps' Jobs the cache lacks: waited for (relabelled if they lost their label).
        self.unseen = UnseenJobs(api, monotonic=monotonic, events=events)

    async def cache_lags(self, flow: JobFlow, jobs: Sequence[Job]) -> float | None:
        """When to look again if a Running step's Job the cache lacks exists (unseen_jobs.py)."""
        return await self.unseen.lags(flow, jobs)

    async def flow_lags(self, flow: JobFlow, actions: Sequence[planner.Action]) -> float | None:
        """When to look again if the plan deletes Jobs its ended flow does not record (`ENDED_REASON`)
        while the flow cache is behind the stored flow: a new leader whose Job informer is warm and
        whose flow informer is not, or a flow watch that hangs, sees a rerun's Jobs with the flow still
        Failed from before the request, and would kill the live rerun. One GET of the flow, only for
        such plans (rare); None when the flow cache is current (or the flow is gone: nothing to do)."""
        if not any(isinstance(a, planner.DeleteJob) and a.reason == planner.ENDED_REASON for a in actions):
            return None
        meta = flow.metadata
        stored = await self._api.get_flow(meta.namespace, meta.name)
        if stored is None:
            return None
        version = stored.get("metadata", {}).get("resourceVersion")
        if version == meta.resource_version:
            return None
        log.info("flow cache behind the stored flow; its Jobs are left until it catches up", stored=version)
        return CACHE_LAG_RETRY_SECONDS

    async def termination_messages(
        self, flow: JobFlow, jobs: Sequence[Job]
    ) -> dict[str, planner.PodMessages]:
        """What finished pods wrote (termination-message outputs, artifact reports, download failures):
        read here, once per finished step, outside any concurrency-group lock (planning stays pure; the
        next status write records what it found)."""
        names = planner.jobs_to_read(flow, jobs)
        if not names:
            return {}
        by_name = {job.metadata.name: job for job in jobs}
        # A few at a time, not one after another: a 500-step fan-out finishing at once held its worker
        # for 500 round trips (~5 s at 10 ms each), and eight such flows every worker of the controller.
        at_once = asyncio.Semaphore(POD_READS_AT_ONCE)

        async def read(name: str) -> planner.PodMessages:
            async with at_once:
                return await self._api.termination_messages(
                    flow.metadata.namespace,
                    name,
                    job_uid=by_name[name].metadata.uid,
                    succeeded=by_name[name].succeeds,  # SuccessCriteriaMet too (planner.jobs_to_read)
                )

        reads = [asyncio.ensure_future(read(name)) for name in names]
        try:
            return dict(zip(names, await asyncio.gather(*reads), strict=True))
        except BaseException:
            for pending in reads:
                pending.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            raise

    async def plan(
        self,
        flow: JobFlow,
        jobs: Sequence[Job],
        now: datetime,
        messages: Mapping[str, planner.PodMessages],
        peers: Sequence[planner.Peer],
        memos: Mapping[str, planner.MemoAnswer] | None,
        slot: str | None = None,
        lineage: planner.Lineage | None = None,
        locks: planner.LockView = planner.NO_LOCKS,
    ) -> planner.Plan | None:
        """The plan; None when it would evaluate in the sandbox and every thread for that is taken.
        `memos`: the cache entries read for the lookups of the flow's plan before this one; `slot`: why
        the flow waits for a limit on running flows (None: it may start); `locks`: the other flows' use of the
        locks its steps declare (planner.lock_book). Raises `FlowGone` (controller/plan_cpu.py) when the
        flow was deleted while its plan ran or waited off the loop."""
        run = functools.partial(
            planner.plan,
            flow,
            jobs,
            now,
            peers=tuple(peers),
            messages=messages,
            memos=memos,
            slot=slot,
            lineage=lineage,
            locks=locks,
            pods=self.pod_reads.seen(flow),
            transfers=self._transfers,
            progress_deadline=self._progress_deadline,
        )
        # A flow with no `when` or retryPolicy.expression to evaluate never calls `_offload`; one that has
        # stops at it (`Offload`)
        # and is planned again below. Asking first (from the flow's shape) would derive a large flow's
        # shape on the event loop, the very work `cpu` moves off it.
        if (evaluator := self._evaluate) is None:
            return await self.cpu.run(flow, run)
        try:
            return await self.cpu.run(flow, functools.partial(run, evaluate=_offload))
        except Offload:
            pass
        # A large flow's first plan ran in a plan thread (`cpu`): it may have been deleted meanwhile, or
        # while its plan below waits for its expressions; a deleted flow is not planned (nor its Jobs made).
        self.cpu.still_there(flow)
        namespace, uid = flow.metadata.namespace, flow.metadata.uid
        if not self._may_start(namespace):
            self._wanting[uid] = self._monotonic()
            return None
        self._wanting.pop(uid, None)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix="zen-flow-plan")
        self._busy += 1
        self._held[namespace] += 1
        try:
            # Its `when` may wait for an expression worker (up to its budget): not on the event loop. In
            # the reconcile's context, as `asyncio.to_thread` would: its log lines keep the flow's fields.
            call = functools.partial(run, evaluate=self._share(evaluator))
            made = await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(contextvars.copy_context().run, call)
            )
        finally:
            self._busy -= 1
            self._held[namespace] -= 1
            if not self._held[namespace]:
                del self._held[namespace]
        self.cpu.still_there(flow)
        return made

    def turned_away(self, flow: JobFlow) -> bool:
        """Would the flow's plan, which found no thread last time, find none now? Asked before the
        reconcile reads anything for it, so a flow that comes back every second for a thread does not
        read its pods every time. A flow that has not asked for TURN_SECONDS is forgotten (deleted)."""
        if not self._wanting:
            return False
        now = self._monotonic()
        for uid, last in list(self._wanting.items()):
            if now - last > TURN_SECONDS:
                del self._wanting[uid]
        uid = flow.metadata.uid
        if uid not in self._wanting or self._may_start(flow.metadata.namespace):
            return False
        self._wanting[uid] = now
        return True

    def _may_start(self, namespace: str) -> bool:
        """A thread for this namespace's plan now? Each namespace that holds or waits for threads gets an
        equal share of them (rounded up), and a free thread goes to the namespace that has waited
        longest: one tenant's many flows of slow conditions, coming back every second, cannot keep
        another tenant's flow out. A namespace that stopped asking (TURN_SECONDS) no longer waits."""
        now = self._monotonic()
        for other, (_, last) in list(self._waiting.items()):
            if now - last > TURN_SECONDS:
                del self._waiting[other]
        contenders = len(set(self._held) | set(self._waiting) | {namespace})
        share = -(-self._slots // contenders)
        first = min(
            ((since, other) for other, (since, _) in self._waiting.items() if self._held[other] < share),
            default=None,
        )
        if (
            self._busy < self._slots
            and self._held[namespace] < share
            and (first is None or first[1] == namespace)
        ):
            self._waiting.pop(namespace, None)
            return True
        since = self._waiting.get(namespace, (now, now))[0]
        self._waiting[namespace] = (since, now)
        return False

    def _share(self, evaluate: Evaluator) -> Evaluator:
        """`evaluate` for one plan: `Deferred` once the plan has spent PLAN_EVALUATION_SECONDS in it."""
        spent = 0.0

        def evaluate_in_turn(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
            nonlocal spent
            if spent >= PLAN_EVALUATION_SECONDS:
                raise Deferred(f"this plan spent {spent:.1f}s evaluating; the rest waits for the next one")
            started = self._monotonic()
            try:
                return evaluate(compiled, variables)
            except (Deferred, BudgetExceeded, EvaluationError):
                raise
            except Exception:  # a bug, not the expression: its step waits (Unavailable), and we say why
                log.warning("the expression evaluator failed", exc_info=True)
                raise
            finally:
                spent += self._monotonic() - started

        return evaluate_in_turn

    def close(self) -> None:
        self.cpu.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _offload(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
    """The evaluator of a plan made on the event loop: none evaluates there."""
    raise Offload(compiled.source)
