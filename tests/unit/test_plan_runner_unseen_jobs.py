"""A Running step's Job the controller's Job cache lacks while the apiserver has it (ours, not being
deleted) is the cache's fault, however old the Job: a Job watch that lags or hangs (its watchdog fires
after 150 s), a new leader's or shard holder's that is behind, or a Job whose managed-by label was removed
(the Job informer is label-selected). The flow is not planned from that cache, which would fail the
attempt as "deleted outside zen-flow" and run a retry beside the Job still running: it waits, by the
controller's own clock from when it first found the Job missing, longer than a hung watch takes to heal.
A Job the cache still lacks then is deleted by its uid, and its attempt fails saying why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow import planner
from zen_flow.api import Job
from zen_flow.api.constants import LABEL_MANAGED_BY
from zen_flow.api.job import JOB
from zen_flow.controller.plan_runner import PlanRunner
from zen_flow.controller.unseen_jobs import (
    CACHE_LAG_LOOKUPS,
    CACHE_LAG_RETRY_MAX_SECONDS,
    CACHE_LAG_WAIT_SECONDS,
)
from zen_flow.informer.reflector import ReflectorOptions
from zen_flow.kube.errors import NotFound
from zen_flow.planner import CreateJob, plan
from zen_flow_dev.testing.apiserver_fake import with_labels
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRIES: dict[str, Any] = {"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}


class Apiserver:
    """The apiserver as the runner's lookups see it: its Jobs by name; the GETs and deletes it served."""

    def __init__(self, jobs: Mapping[str, Job]) -> None:
        self.jobs = dict(jobs)
        self.gets: list[str] = []
        self.deletes: list[tuple[str, str]] = []

    async def get_job(self, namespace: str, name: str) -> Job:
        self.gets.append(name)
        if name not in self.jobs:
            raise NotFound(404, "NotFound", name)
        return self.jobs[name]

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        self.deletes.append((name, uid))
        if name not in self.jobs:
            raise NotFound(404, "NotFound", name)
        del self.jobs[name]


def runner(api: Apiserver, clock: list[float]) -> PlanRunner:
    return PlanRunner(
        api=api,  # type: ignore[arg-type]
        evaluate=None,
        transfers=planner.ArtifactOptions(),
        progress_deadline=0.0,
        monotonic=lambda: clock[0],
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


def test_the_wait_outlasts_what_heals_a_hung_job_watch() -> None:
    # informer/reflector.py: the watchdog reopens a silent watch; a rewatch that fails backs off (at its
    # cap, with its jitter) before the relist: the wait leaves time for the relist itself on top.
    options = ReflectorOptions()
    heals = options.inactivity_timeout + options.backoff_max * (1 + options.backoff_jitter)
    assert heals + 60 <= CACHE_LAG_WAIT_SECONDS


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
    assert api.deletes == []


async def test_the_wait_counts_on_the_controllers_clock_and_a_job_never_shown_is_deleted_first() -> None:
    sim = running(retryPolicy=RETRIES)
    (name,) = sim.running()
    uid = sim.jobs[name].metadata.uid
    api = Apiserver(sim.jobs)
    clock = [1000.0]
    lookups = runner(api, clock)
    asked = await waits(lookups, sim, clock, until=2000.0)
    assert sum(asked) == pytest.approx(CACHE_LAG_WAIT_SECONDS)  # then it asked for no more
    assert asked[0] == 1.0  # a watch event moments late is not waited for long
    assert max(asked) == CACHE_LAG_RETRY_MAX_SECONDS
    assert len(api.gets) == len(asked) + 1 < 40  # one GET a look, the looks spread out
    assert api.deletes == [(name, uid)]  # by its uid: never another Job given that name since
    # The plan that follows fails the attempt saying so; its retry comes once the Job is gone.
    made = await lookups.plan(sim.flow, [], sim.now, {}, (), None)
    assert made is not None
    a = made.status.step("s0")
    assert a is not None
    assert (a.phase, a.message) == (
        "Retrying",
        f"attempt 1 failed: Job {name} deleted: it ran but the controller could not see it "
        f"(not in its Job watch for {CACHE_LAG_WAIT_SECONDS:.0f}s)",
    )
    retried = plan(sim.flow.model_copy(update={"status": made.status}), [], sim.now + timedelta(seconds=11))
    assert [a.name for a in retried.actions if isinstance(a, CreateJob)] == [f"{name}-r1"]
    assert api.jobs == {}  # nothing runs beside it


@pytest.mark.parametrize("label", [None, "someone-else"], ids=["label-removed", "label-changed"])
async def test_a_job_whose_managed_by_label_was_removed_fails_its_attempt_naming_the_label(
    label: str | None,
) -> None:
    sim = running()
    (name,) = sim.running()
    api = Apiserver({name: with_labels(sim.jobs[name], {LABEL_MANAGED_BY: label} if label else {})})
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WAIT_SECONDS + 60)
    made = await lookups.plan(sim.flow, [], sim.now, {}, (), None)
    assert made is not None
    a = made.status.step("s0")
    assert a is not None
    assert (a.phase, a.message) == (
        "Failed",
        f"Job {name} deleted: it ran but the controller could not see it "
        f"(label {LABEL_MANAGED_BY} is not zen-flow)",
    )
    assert made.status.phase == "Failed"


async def test_a_lost_write_of_that_failure_says_the_same_and_nothing_is_kept_once_it_lands() -> None:
    sim = running(retryPolicy=RETRIES)
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WAIT_SECONDS + 60)
    first = await lookups.plan(sim.flow, [], sim.now, {}, (), None)
    # Its write lost: the step still runs the deleted Job, as stored; the next plan says the same.
    looked = len(api.gets)
    assert await lookups.cache_lags(sim.flow, []) is None
    again = await lookups.plan(sim.flow, [], sim.now, {}, (), None)
    assert first is not None
    assert again is not None
    assert again.status.step("s0") == first.status.step("s0")
    assert len(api.gets) == looked  # not looked up again: it deleted that Job
    assert lookups.unseen.kept() == 1
    stored = sim.flow.model_copy(update={"status": first.status})
    assert await lookups.cache_lags(stored, []) is None
    assert lookups.unseen.kept() == 0


async def test_a_job_the_cache_shows_again_is_forgotten_and_a_later_miss_waits_afresh() -> None:
    sim = running()
    (name,) = sim.running()
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WAIT_SECONDS - 10)
    assert await lookups.cache_lags(sim.flow, [sim.jobs[name]]) is None  # the watch healed
    assert lookups.unseen.kept() == 0
    clock[0] += 5
    asked = await waits(lookups, sim, clock, until=clock[0] + CACHE_LAG_WAIT_SECONDS - 1)
    assert sum(asked) >= CACHE_LAG_WAIT_SECONDS - 1
    assert api.deletes == []


@pytest.mark.parametrize("how", ["forgotten", "not looked at"])
async def test_a_flow_deleted_or_long_unseen_by_this_process_waits_afresh(how: str) -> None:
    sim = running()
    api = Apiserver(sim.jobs)
    clock = [0.0]
    lookups = runner(api, clock)
    await waits(lookups, sim, clock, until=CACHE_LAG_WAIT_SECONDS - 10)
    if how == "forgotten":
        lookups.unseen.forget(sim.flow.metadata.uid)  # the flow was deleted (then one of its name came back)
        assert lookups.unseen.kept() == 0
    else:
        clock[0] += 600  # its shard held by another replica meanwhile
    assert await lookups.cache_lags(sim.flow, []) == 1.0
    assert api.deletes == []


async def test_at_most_a_few_jobs_are_looked_up_per_reconcile_and_one_gone_is_no_wait() -> None:
    sim = running(steps=20)
    names = sim.running()
    api = Apiserver({n: j for n, j in sim.jobs.items() if n != names[0]})  # the first is really gone
    lookups = runner(api, [0.0])
    assert await lookups.cache_lags(sim.flow, []) == 1.0
    assert api.gets == names[:CACHE_LAG_LOOKUPS]
    # A Job someone deleted (gone, or going), or one of another flow's now: nothing to wait for.
    for n in names[1:]:
        api.jobs[n] = JOB.validate_python({"metadata": {"name": n, "uid": "other"}})
    assert await lookups.cache_lags(sim.flow, []) is None
