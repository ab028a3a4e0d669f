"""A Running step's Job the controller's Job cache lacks while the apiserver has it (ours, not being
deleted) is the cache's fault, however old the Job: a Job watch that lags or hangs (its watchdog fires
after 150 s), a new leader's or shard holder's that is behind, or a Job whose managed-by label was removed
(the Job informer is label-selected). The flow is not planned from that cache, which would fail the
attempt as "deleted outside zen-flow" and run a retry beside the Job still running: it waits, with no end
and nothing deleted, a Warning event saying so after a while; a Job that lost its label gets it back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import LABEL_MANAGED_BY
from zen_flow.api.job import JOB, labels_of
from zen_flow.controller.plan_runner import PlanRunner
from zen_flow.controller.unseen_jobs import (
    CACHE_LAG_LOOKUPS,
    CACHE_LAG_RETRY_MAX_SECONDS,
    CACHE_LAG_WARN_SECONDS,
    RELABEL_RETELL_SECONDS,
)
from zen_flow.informer.reflector import ReflectorOptions
from zen_flow.kube.errors import ApiError, Conflict, Forbidden, KubeError, NotFound
from zen_flow.planner import CreateJob, plan
from zen_flow_dev.testing.apiserver_fake import with_labels
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRIES: dict[str, Any] = {"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}


class Apiserver:
    """The apiserver as the runner's lookups see it: its Jobs by name; the GETs and label patches it
    served (`refuse`: the answer to the next patch instead); the events the controller emitted."""

    def __init__(self, jobs: Mapping[str, Job]) -> None:
        self.jobs = dict(jobs)
        self.gets: list[str] = []
        self.patches: list[tuple[str, dict[str, str], str]] = []
        self.refuse: KubeError | None = None
        self.events: list[tuple[str, str, str]] = []
        self.revert: str | None = None  # a policy that sets the label back to this after each patch
        self.clock: list[float] = [0.0]
        self.told_at: list[float] = []  # when each event was emitted, by `clock`

    async def get_job(self, namespace: str, name: str) -> Job:
        self.gets.append(name)
        if name not in self.jobs:
            raise NotFound(404, "NotFound", name)
        return self.jobs[name]

    async def label_job(self, namespace: str, name: str, labels: Mapping[str, str], uid: str) -> None:
        self.patches.append((name, dict(labels), uid))
        if self.refuse is not None:
            raise self.refuse
        job = self.jobs[name]
        kept = {**(labels_of(job) or {}), **labels}
        if self.revert is not None:
            kept[LABEL_MANAGED_BY] = self.revert
        self.jobs[name] = with_labels(job, kept)

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))
        self.told_at.append(self.clock[0])


def runner(api: Apiserver, clock: list[float]) -> PlanRunner:
    api.clock = clock
    return PlanRunner(
        api=api,  # type: ignore[arg-type]
        evaluate=None,
        transfers=planner.ArtifactOptions(),
        progress_deadline=0.0,
        monotonic=lambda: clock[0],
        events=api,
    )


def running(steps: int = 1, **fields: Any) -> Simulator:
    """A flow whose steps run their first Jobs, the status recording them."""
    sim = Simulator(make_flow([job_step(f"s{i}", **fields) for i in range(steps)]), T0)
    sim.reconcile()
    return sim


async def waits(lookups: PlanRunner, sim: Simulator, clock: list[float], until: float) -> list[float]:
    """The waits `cache_lags` asks for, each slept on the clock, until it asks for none or `until`."""
    asked: list[float] = []
    while clock[0] < until:
        lag = await lookups.cache_lags(sim.flow, [])
        if lag is None:
            break
        asked.append(lag)
        clock[0] += lag
    return asked


def test_the_warning_comes_after_what_heals_a_hung_job_watch() -> None:
    # informer/reflector.py: the watchdog reopens a silent watch; a rewatch that fails backs off (at its
    # cap, with its jitter) before the relist: the warning leaves time for the relist itself on top.
    options = ReflectorOptions()
    heals = options.inactivity_timeout + options.backoff_max * (1 + options.backoff_jitter)
    assert heals + 60 <= CACHE_LAG_WARN_SECONDS


async def test_a_running_steps_job_the_cache_lacks_is_waited_for_however_old_it_is() -> None:
    # Red team 4, finding 2: created 90 s before, found by the GET (ours, running), taken for deleted.
    sim = running(retryPolicy=RETRIES)
    (name,) = sim.running()
    api = Apiserver(sim.jobs)
    lookups = runner(api, [0.0])
    for age in (timedelta(seconds=90), timedelta(days=2)):  # the wall clock plays no part
        sim.now = T0 + age
        assert await lookups.cache_lags(sim.flow, []) is not None
    assert api.gets == [name, name]


async def test_the_wait_has_no_end_deletes_nothing_and_warns_once() -> None:
    sim = running(retryPolicy=RETRIES)
    (name,) = sim.running()
    api = Apiserver(sim.jobs)
    clock = [1000.0]
    lookups = runner(api, clock)
    asked = await waits(lookups, sim, clock, until=1000.0 + CACHE_LAG_WARN_SECONDS - 1)
    assert asked[0] == 1.0  # a watch event moments late is not waited for long
    assert api.events == []
    asked += await waits(lookups, sim, clock, until=1000.0 + 3600)
    assert sum(asked) >= 3600 - CACHE_LAG_RETRY_MAX_SECONDS  # it never asked to plan
    assert max(asked) == CACHE_LAG_RETRY_MAX_SECONDS
    assert len(api.gets) == len(asked) < 3600 / CACHE_LAG_RETRY_MAX_SECONDS + 20  # the looks spread out
    ((kind, reason, message),) = api.events
    assert (kind, reason) == ("Warning", "JobNotInCache")
    assert message.startswith(f"Job {name} exists but has not been in the controller's Job cache for 3")
    assert "s; the flow is planned once it is" in message
    assert api.jobs == sim.jobs
    assert api.patches == []
    # The cache shows it at last: planned from it, nothing of it kept.
    assert await lookups.cache_lags(sim.flow, [sim.jobs[name]]) is None
    assert lookups.unseen.kept() == 0


@pytest.mark.parametrize("label", [None, "someone-else"], ids=["label-removed", "label-changed"])
async def test_a_job_whose_managed_by_label_was_removed_gets_it_back_and_is_waited_for(
    label: str | None,
) -> None:
    sim = running()
    (name,) = sim.running()
    job = sim.jobs[name]
    api = Apiserver({name: with_labels(job, {"team": "a", **({LABEL_MANAGED_BY: label} if label else {})})})
    clock = [0.0]
    lookups = runner(api, clock)
    asked = await waits(lookups, sim, clock, until=60)
    assert sum(asked) >= 60  # waited for all along: the cache shows it once its watch brings the patch
    assert api.patches == [(name, {LABEL_MANAGED_BY: "zen-flow"}, job.metadata.uid)]  # only that label
    assert labels_of(api.jobs[name]) == {"team": "a", LABEL_MANAGED_BY: "zen-flow"}
    was = "removed" if label is None else "set to 'someone-else'"
    assert api.events == [
        (
            "Warning",
            "JobRelabelled",
            f"Job {name}: its label {LABEL_MANAGED_BY} was {was}, which hides it from the controller;"
            " set back to zen-flow",
        )
    ]


@pytest.mark.parametrize("answer", [Conflict(409, "Conflict", "x"), KubeError("forbidden")])
async def test_a_relabel_refused_is_tried_again_and_the_job_still_waited_for(answer: KubeError) -> None:
    sim = running()
    (name,) = sim.running()
    api = Apiserver({name: with_labels(sim.jobs[name], {})})
    api.refuse = answer
    clock = [0.0]
    lookups = runner(api, clock)
    assert await lookups.cache_lags(sim.flow, []) == 1.0
    assert api.events == []
    api.refuse = None
    clock[0] += 1
    assert await lookups.cache_lags(sim.flow, []) is not None
    assert len(api.patches) == 2
    assert [reason for _, reason, _ in api.events] == ["JobRelabelled"]


RBAC_REFUSAL = (
    'jobs.batch "{job}" is forbidden: User "system:serviceaccount:zen-flow-system:zen-flow-controller" '
    'cannot patch resource "jobs" in API group "batch" in the namespace "default"'
)


def relabels_refused(refusal: ApiError) -> tuple[Simulator, str, Apiserver, list[float]]:
    sim = running()
    (name,) = sim.running()
    api = Apiserver({name: with_labels(sim.jobs[name], {})})
    api.refuse = refusal
    return sim, name, api, [0.0]


async def test_a_relabel_rbac_refuses_is_told_once_naming_the_grant_and_the_wait_says_so() -> None:
    # A Role from a release before the relabel (no `patch` on jobs): the flow waits, and the only advice
    # used to be "restart the controller", which cannot help.
    sim, name, api, clock = relabels_refused(Forbidden(403, "Forbidden", RBAC_REFUSAL.format(job="x")))
    lookups = runner(api, clock)
    asked = await waits(lookups, sim, clock, until=CACHE_LAG_WARN_SECONDS + 600)
    assert sum(asked) >= CACHE_LAG_WARN_SECONDS + 600  # it still waits, and still tries
    assert len(api.patches) > 20
    reasons = [r for _, r, _ in api.events]
    assert reasons == ["JobRelabelForbidden", "JobNotInCache"]
    assert {t for t, _, _ in api.events} == {"Warning"}
    refused, waiting = (m for _, _, m in api.events)
    assert refused.startswith(f"Job {name}: its label {LABEL_MANAGED_BY} was removed, which hides it")
    assert "grant the controller `patch` on `jobs.batch` in namespace default" in refused
    assert "cannot patch resource" in refused  # the apiserver's own words too
    assert api.told_at[0] == 0.0  # at once, not after the 5 minutes
    assert waiting.startswith(f"Job {name} exists but is hidden from the controller's Job cache for 3")
    assert "putting it back is refused (JobRelabelForbidden)" in waiting
    assert "restart" not in waiting


@pytest.mark.parametrize(
    "refusal",
    [
        Forbidden(403, "Forbidden", 'admission webhook "labels.example.com" denied the request: no'),
        ApiError(422, "Invalid", "ValidatingAdmissionPolicy 'pin-labels' denied request: no"),
    ],
    ids=["webhook-403", "policy-422"],
)
async def test_a_relabel_a_policy_refuses_is_told_once_with_its_words(refusal: ApiError) -> None:
    sim, name, api, clock = relabels_refused(refusal)
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=120)
    ((kind, reason, message),) = api.events
    assert (kind, reason) == ("Warning", "JobRelabelForbidden")
    assert message.startswith(f"Job {name}: its label {LABEL_MANAGED_BY} was removed")
    assert refusal.message in message
    assert "grant" not in message  # RBAC allowed it: no grant would help


async def test_a_label_a_policy_keeps_setting_back_is_told_at_most_every_ten_minutes() -> None:
    # Each patch is accepted, and the label is someone else's again at once (a mutating policy).
    sim = running()
    (name,) = sim.running()
    api = Apiserver({name: with_labels(sim.jobs[name], {LABEL_MANAGED_BY: "argocd"})})
    api.revert = "argocd"
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=3600)
    assert len(api.patches) > 200  # still put back each time
    relabelled = [
        (t, m) for (_, r, m), t in zip(api.events, api.told_at, strict=True) if r == "JobRelabelled"
    ]
    times = [t for t, _ in relabelled]
    assert 5 <= len(times) <= 7
    assert all(b - a >= RELABEL_RETELL_SECONDS for a, b in pairwise(times))
    first, again = relabelled[0][1], relabelled[1][1]
    assert first.endswith("set back to zen-flow")
    assert f"Job {name}: its label {LABEL_MANAGED_BY} was set to 'argocd' again" in again
    assert "something keeps changing it" in again
    (waiting,) = [m for _, r, m in api.events if r == "JobNotInCache"]
    assert "keeps being changed back" in waiting
    assert "restart" not in waiting


async def test_a_label_changed_back_after_the_cache_showed_the_job_is_not_told_again_at_once() -> None:
    sim = running()
    (name,) = sim.running()
    job = sim.jobs[name]
    api = Apiserver({name: with_labels(job, {})})
    clock = [0.0]
    lookups = runner(api, clock)
    for _ in range(3):  # put back, seen, removed again (a controller reverting it a minute later)
        assert await lookups.cache_lags(sim.flow, []) is not None
        assert await lookups.cache_lags(sim.flow, [api.jobs[name]]) is None
        clock[0] += 60
        api.jobs[name] = with_labels(job, {})
    assert len(api.patches) == 3
    assert [r for _, r, _ in api.events] == ["JobRelabelled"]
    clock[0] += RELABEL_RETELL_SECONDS
    assert await lookups.cache_lags(sim.flow, []) is not None
    assert [r for _, r, _ in api.events] == ["JobRelabelled"] * 2
    assert f"Job {name}: its label {LABEL_MANAGED_BY} was removed again" in api.events[-1][2]
    assert "set back to zen-flow, 4 times in 13 min" in api.events[-1][2]


async def test_more_unseen_jobs_than_a_round_looks_up_never_let_the_flow_be_planned() -> None:
    # Review item 1: ten steps running, the cache lacking all their Jobs. No plan (which would take the
    # ones not looked up for deleted, and run retries beside them) until every one has been looked at.
    sim = running(steps=10, retryPolicy=RETRIES)
    names = sim.running()
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    asked = await waits(lookups, sim, clock, until=CACHE_LAG_WARN_SECONDS + 60)
    assert sum(asked) >= CACHE_LAG_WARN_SECONDS + 60
    assert set(api.gets[: 2 * CACHE_LAG_LOOKUPS]) == set(names)  # each looked at within two rounds
    assert sorted(r for _, r, _ in api.events) == ["JobNotInCache"] * 10
    # Once the cache shows them the plan makes no retry of any.
    made = await lookups.plan(sim.flow, list(api.jobs.values()), sim.now, {}, (), None)
    assert made is not None
    later = plan(sim.flow.model_copy(update={"status": made.status}), list(api.jobs.values()), sim.now)
    assert [a for a in later.actions if isinstance(a, CreateJob)] == []


async def test_jobs_found_gone_are_not_looked_up_again_nor_hide_one_that_exists() -> None:
    # Eight Jobs really deleted and a ninth the cache lacks: the ninth is looked up in the next round.
    sim = running(steps=9)
    names = sim.running()
    api = Apiserver({names[-1]: sim.jobs[names[-1]]})
    lookups = runner(api, [0.0])
    assert await lookups.cache_lags(sim.flow, []) == 1.0  # one not looked up yet: it may exist
    assert api.gets == names[:CACHE_LAG_LOOKUPS]
    assert await lookups.cache_lags(sim.flow, []) == 1.0  # it does
    assert api.gets == [*names[:CACHE_LAG_LOOKUPS], names[-1]]
    del api.jobs[names[-1]]
    assert await lookups.cache_lags(sim.flow, []) is None  # all gone: the plan says so
    assert await lookups.cache_lags(sim.flow, []) is None
    assert api.gets == [*names[:CACHE_LAG_LOOKUPS], names[-1], names[-1]]  # none looked up again


@pytest.mark.parametrize("how", ["being deleted", "another flow's"])
async def test_a_job_being_deleted_or_not_the_flows_is_no_wait_and_its_step_fails(how: str) -> None:
    sim = running()
    (name,) = sim.running()
    job = sim.jobs[name]
    if how == "being deleted":
        meta = {"name": name, "uid": job.metadata.uid, "deletionTimestamp": T0.isoformat(),
                "ownerReferences": [{"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow",
                                     "name": sim.flow.metadata.name, "uid": sim.flow.metadata.uid,
                                     "controller": True}]}  # fmt: skip
    else:
        meta = {"name": name, "uid": "other"}
    api = Apiserver({name: JOB.validate_python({"metadata": meta})})
    lookups = runner(api, [0.0])
    assert await lookups.cache_lags(sim.flow, []) is None
    made = await lookups.plan(sim.flow, [], sim.now, {}, (), None)
    assert made is not None
    s0 = made.status.step("s0")
    assert s0 is not None
    assert (s0.phase, s0.message) == ("Failed", f"Job {name} not found (deleted outside zen-flow)")


async def test_a_job_the_cache_shows_again_is_forgotten_and_a_later_miss_waits_afresh() -> None:
    sim = running()
    (name,) = sim.running()
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WARN_SECONDS - 10)
    assert await lookups.cache_lags(sim.flow, [sim.jobs[name]]) is None  # the watch healed
    assert lookups.unseen.kept() == 0
    clock[0] += 5
    assert await lookups.cache_lags(sim.flow, []) == 1.0


@pytest.mark.parametrize("how", ["forgotten", "not looked at"])
async def test_a_flow_deleted_or_long_unseen_by_this_process_waits_afresh(how: str) -> None:
    sim = running()
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WARN_SECONDS - 10)
    if how == "forgotten":
        lookups.unseen.forget(sim.flow.metadata.uid)  # the flow was deleted (then one of its name came back)
        assert lookups.unseen.kept() == 0
    else:
        clock[0] += 600  # its shard held by another replica meanwhile
    assert await lookups.cache_lags(sim.flow, []) == 1.0
    await waits(lookups, sim, clock, until=clock[0] + CACHE_LAG_WARN_SECONDS - 20)
    assert api.events == []  # its wait counts afresh
