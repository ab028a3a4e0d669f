"""A Running step's Job the controller's Job cache lacks while the apiserver has it (ours, not being
deleted): the cache's fault, whatever the Job's age. A Job watch that lags or hangs (the reflector's
inactivity watchdog reopens a silent one after 150 s), a new leader's or shard holder's that is behind,
or a Job whose `app.kubernetes.io/managed-by` label was removed or changed (the Job informer is
label-selected, and its watch drops such a Job). Planned from that cache, the flow took the Job for
deleted: it failed the attempt as "deleted outside zen-flow" and a retry ran beside the Job still running.

So the flow is not planned while such a Job is missing (`lags`): the reconcile looks again, sooner at
first, then every CACHE_LAG_RETRY_MAX_SECONDS, for as long as it takes. Nothing is deleted: the Job is
healthy, and it may finish meanwhile (a GET of its metadata cannot say), so its result is planned from
once the cache shows it. A Job that lost its managed-by label gets it back (a patch of that label only,
on the Job's uid: `JobRelabelled`), which brings it into the cache. A Job still missing after
CACHE_LAG_WARN_SECONDS (by this process's monotonic clock) gets a Warning event (`JobNotInCache`), once,
worded by the cause: a watch that never heals is healed by a restart of the controller, a label that
cannot be put back or keeps being changed back is not. Meanwhile the whole flow waits (its other steps,
its deadline, a stop): a known limitation, as a plan needs every Job of the flow.

The relabel can fail for good: a Role or ClusterRole from before it (no `patch` on jobs), an admission
policy that refuses the patch. Tried again every round all the same (the grant may come), it is told
once per Job (`JobRelabelForbidden`, naming the grant RBAC lacks, or the refusal's words). A label that
something keeps changing back (a mutating policy, another controller) is put back each time, and told
at most once per RELABEL_RETELL_SECONDS per Job, with the count.

At most CACHE_LAG_LOOKUPS GETs per reconcile, the names looked at least recently first; a flow with names
not looked at this round waits too (one may exist). Names a GET found gone (or not the flow's, or being
deleted) are not looked up again: the plan takes those for deleted. What is kept of a flow goes when its
steps no longer miss those Jobs, or with the flow (`forget`); what was told of its Jobs' relabels only
with the flow (a label changed back after the cache showed the Job again is a repeat).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import LABEL_MANAGED_BY, MANAGED_BY
from zen_flow.api.job import labels_of
from zen_flow.controller.create_failures import verdict
from zen_flow.kube.errors import ApiError, Conflict, KubeError, NotFound, describe
from zen_flow.logging import get_logger

log = get_logger(__name__)

# A Job missing this long gets a Warning event: longer than what heals a hung watch (informer/reflector.py:
# the inactivity watchdog's 150 s, a failed rewatch's backoff at its cap, 30 s and up to 100 % jitter) by
# 90 s for the relist.
CACHE_LAG_WARN_SECONDS = 300.0
# Jobs looked up per reconcile; the flow looks again after the first delay, then less often, up to the
# second (plan_runner.py's `flow_lags` waits the first too).
CACHE_LAG_LOOKUPS = 8
CACHE_LAG_RETRY_SECONDS = 1.0
CACHE_LAG_RETRY_MAX_SECONDS = 15.0
# A flow this process has not looked at for this long (its shard held by another replica meanwhile)
# waits afresh: what its cache showed in between is not known.
CACHE_LAG_GAP_SECONDS = 120.0
REASON_NOT_IN_CACHE = "JobNotInCache"
REASON_RELABELLED = "JobRelabelled"
REASON_RELABEL_FORBIDDEN = "JobRelabelForbidden"
# A label something keeps changing back is put back every time, and said so at most this often per Job.
RELABEL_RETELL_SECONDS = 600.0
# Why a Job is missing, when it is not the watch's fault (`_Missing.cause`).
_REFUSED = "refused"
_REVERTED = "reverted"


class JobApi(Protocol):
    async def get_job(self, namespace: str, name: str) -> Job: ...
    async def label_job(self, namespace: str, name: str, labels: Mapping[str, str], uid: str) -> None:
        """Merge `labels` into the Job's, only if the Job of that name is still `uid` (`Conflict`)."""
        ...


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Missing:
    first: float  # when first found missing
    last: float  # when last looked up
    warned: bool = False
    cause: str = ""  # _REFUSED, _REVERTED: its label's fault, as last found; "": the watch's


@dataclass(frozen=True, slots=True)
class _Relabels:
    """What was done and told about one Job's label, kept with its flow."""

    first: float  # when first put back
    count: int = 0  # times put back
    told: float | None = None  # when JobRelabelled was last emitted
    refused: bool = False  # JobRelabelForbidden emitted


class UnseenJobs:
    """The missing Jobs of the flows this process reconciles (see the module's note)."""

    def __init__(
        self, api: JobApi, *, monotonic: Callable[[], float], events: EventSink | None = None
    ) -> None:
        self._api = api
        self._events = events
        self._monotonic = monotonic
        # flow uid -> {Job name: what is known of it while it exists; None once a GET found it gone}.
        self._missing: dict[str, dict[str, _Missing | None]] = {}
        # flow uid -> {Job name: its relabels}: only Jobs whose label was lost, until the flow goes.
        self._relabels: dict[str, dict[str, _Relabels]] = {}

    async def lags(self, flow: JobFlow, jobs: Sequence[Job]) -> float | None:
        """When to look again if a Running step's Job is missing from the cache but not from the
        apiserver (ours, not being deleted), or may be (not looked up this round): the plan would take
        it for deleted, fail the attempt and retry it beside the Job still running. None when there is
        nothing to wait for (one GET per Job the cache lacks, which is rare: a Job deleted outside
        zen-flow fails its step after it)."""
        uid, namespace = flow.metadata.uid, flow.metadata.namespace
        unseen = planner.unseen_jobs(flow, jobs)
        self._prune(uid, unseen)
        if not unseen:
            return None
        missing = self._missing.setdefault(uid, {})
        # Gone ones out, then the least recently looked at first: every name is looked at in turn.
        names = sorted((n for n in unseen if n not in missing or missing[n] is not None), key=_last(missing))
        wait: float | None = None if len(names) <= CACHE_LAG_LOOKUPS else CACHE_LAG_RETRY_SECONDS
        for name in names[:CACHE_LAG_LOOKUPS]:
            try:
                job = await self._api.get_job(namespace, name)
            except NotFound:
                job = None
            ref = None if job is None else job.metadata.controller_ref()
            if job is None or ref is None or ref.uid != uid or job.deleting:
                missing[name] = None  # the plan takes it for deleted (or not this flow's)
                continue
            again = await self._waiting(flow, job)
            wait = again if wait is None else min(wait, again)
        return wait

    async def _waiting(self, flow: JobFlow, job: Job) -> float:
        """`job` exists and the cache lacks it: give it back its label if it lost it, say so if it has
        been missing long; when to look again."""
        missing, name = self._missing.get(flow.metadata.uid, {}), job.metadata.name  # {}: deleted meanwhile
        clock = self._monotonic()
        was = missing.get(name)
        if was is None or clock - was.last > CACHE_LAG_GAP_SECONDS:
            was = _Missing(clock, clock)
        labels = labels_of(job)
        cause = ""
        if labels is not None and labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
            # A round that learnt nothing new (a conflict, a 5xx) keeps the cause the last one found.
            cause = await self._relabel(flow, job, labels.get(LABEL_MANAGED_BY), clock) or was.cause
        waited = clock - was.first
        warned = was.warned
        if waited >= CACHE_LAG_WARN_SECONDS and not warned:
            warned = True
            log.warning(
                "job missing from the cache; its flow waits", job=name, waited=round(waited), cause=cause
            )
            if self._events is not None:
                self._events.emit(flow, "Warning", REASON_NOT_IN_CACHE, _unseen_message(name, waited, cause))
        else:
            log.info("job not in the cache yet; planning once it is", job=name, waited=round(waited))
        missing[name] = _Missing(was.first, clock, warned, cause)
        # Sooner at first (a watch event moments late), then less often: the Job's event wakes the flow
        # when it comes, and a hung watch takes minutes.
        return min(max(CACHE_LAG_RETRY_SECONDS, waited / 4), CACHE_LAG_RETRY_MAX_SECONDS)

    async def _relabel(self, flow: JobFlow, job: Job, had: str | None, clock: float) -> str:
        """Put back the Job's managed-by label (the controller's own), which the label-selected Job cache
        needs; only on that Job (its uid), so a Job of the same name made since is left alone. Returns
        why the Job may stay missing: _REFUSED, _REVERTED (put back before), or "" (looked at again on
        the next round: a conflict, a transient failure, a first put back)."""
        name, namespace, uid = job.metadata.name, flow.metadata.namespace, flow.metadata.uid
        known = self._relabels.get(uid, {}).get(name) or _Relabels(clock)
        was = "removed" if had is None else f"set to {had!r}"
        try:
            await self._api.label_job(namespace, name, {LABEL_MANAGED_BY: MANAGED_BY}, job.metadata.uid)
        except KubeError as err:
            log.warning("job label not restored", job=name, error=describe(err))
            if not _refusal(err):
                return ""
            if not known.refused and self._events is not None:  # once per Job: not every round
                message = _refused_message(name, namespace, was, err)
                self._events.emit(flow, "Warning", REASON_RELABEL_FORBIDDEN, message)
            self._relabels.setdefault(uid, {})[name] = replace(known, refused=True)
            return _REFUSED
        count = known.count + 1
        log.warning("job label restored", job=name, label=LABEL_MANAGED_BY, had=had, times=count)
        due = known.told is None or clock - known.told >= RELABEL_RETELL_SECONDS
        if due and self._events is not None:
            message = f"Job {name}: its label {LABEL_MANAGED_BY} was {was}"
            if count > 1:  # put back before: something changes it back
                minutes = (clock - known.first) / 60
                message += (
                    f" again, which hides it from the controller; set back to {MANAGED_BY}, {count} times"
                    f" in {minutes:.0f} min: something keeps changing it (a mutating admission policy,"
                    " another controller)"
                )
            else:
                message += f", which hides it from the controller; set back to {MANAGED_BY}"
            self._events.emit(flow, "Warning", REASON_RELABELLED, message)
        self._relabels.setdefault(uid, {})[name] = replace(
            known, count=count, told=clock if due else known.told
        )
        return _REVERTED if count > 1 else ""

    def _prune(self, uid: str, unseen: Sequence[str]) -> None:
        """Forget the flow's Jobs that its Running steps no longer miss: the cache shows them again, or
        their steps moved on."""
        if (missing := self._missing.get(uid)) is not None:
            still = set(unseen)
            for name in [n for n in missing if n not in still]:
                del missing[name]
            if not missing:
                del self._missing[uid]

    def kept(self) -> int:
        """The flows whose missing Jobs are remembered (each until its steps move on, or it goes)."""
        return len(self._missing)

    def forget(self, uid: str) -> None:
        """The flow was deleted: nothing of its Jobs is kept."""
        self._missing.pop(uid, None)
        self._relabels.pop(uid, None)

    def uids(self) -> list[str]:
        return [*self._missing, *self._relabels]


def _last(missing: Mapping[str, _Missing | None]) -> Callable[[str], float]:
    """When a name was last looked up; never: first in line."""

    def last(name: str) -> float:
        known = missing.get(name)
        return -1.0 if known is None else known.last

    return last


def _refusal(err: KubeError) -> bool:
    """A verdict on the relabel itself (create_failures.verdict: RBAC's or a policy's 403, a 400 or 422),
    which sending it again does not change: not a gone Job (404) nor another Job of its name (409)."""
    return verdict(err) and not isinstance(err, NotFound | Conflict)


def _refused_message(name: str, namespace: str, was: str, err: KubeError) -> str:
    """JobRelabelForbidden: the grant RBAC lacks (its 403 says `cannot patch`), else the refusal's words."""
    said = f"Job {name}: its label {LABEL_MANAGED_BY} was {was}, which hides it from the controller,"
    if isinstance(err, ApiError) and err.status == 403 and "cannot patch" in err.message:
        said += (
            f" and the controller may not put it back: grant the controller `patch` on `jobs.batch` in"
            f" namespace {namespace} (a Role or ClusterRole from an earlier release lacks it; docs/RBAC.md)"
        )
    else:
        said += " and putting it back was refused"
    return f"{said}: {describe(err)}; the flow waits until the label is {MANAGED_BY} again"


def _unseen_message(name: str, waited: float, cause: str) -> str:
    """JobNotInCache, worded by why the Job is missing: a restart heals a stuck watch, nothing else."""
    if cause == _REFUSED:
        return (
            f"Job {name} exists but is hidden from the controller's Job cache for {waited:.0f}s: its label"
            f" {LABEL_MANAGED_BY} is not {MANAGED_BY} and putting it back is refused"
            f" ({REASON_RELABEL_FORBIDDEN}); the flow is planned once the label is back"
        )
    if cause == _REVERTED:
        return (
            f"Job {name} exists but is hidden from the controller's Job cache for {waited:.0f}s: its label"
            f" {LABEL_MANAGED_BY} keeps being changed back after the controller puts it back"
            f" ({REASON_RELABELLED}); the flow is planned once it stays {MANAGED_BY}"
        )
    return (
        f"Job {name} exists but has not been in the controller's Job cache for {waited:.0f}s;"
        " the flow is planned once it is (a Job watch stuck for good: restart the controller)"
    )
