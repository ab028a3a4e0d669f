"""Controller: a parent's archive record names the child flow each attempt of its Flow steps ran (name
and UID), a superseded attempt's child too, though `jobRetention: LastAttempt` deleted it before the
parent ended: how `zen-flow archive logs PARENT --step STEP` finds the child's logs once both are gone."""

from __future__ import annotations

import asyncio
import json

from test_controller_archive_holds import NS, family_rig, finish, spin
from test_controller_child_flows import flow_step

from zen_flow.core.naming import job_name
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import make_flow


async def test_a_parents_record_names_every_attempts_child_flow_also_one_deleted_before_it_ended() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _ = family_rig(clock, max_delay=3600.0)
    writers = asyncio.create_task(archive.run())
    try:
        retries = {"limit": 1, "backoff": {"duration": "1s"}}
        policy = {"jobRetention": "LastAttempt"}
        api.create_flow(make_flow([flow_step("sub", retryPolicy=retries)], name="p", namespace=NS,
                                  execution_policy=policy))  # fmt: skip
        api.sync()
        first, second = job_name("p", "sub", 0), job_name("p", "sub", 1)
        await spin(api, ctrl, clock, rounds=3, step=0)
        uids = {first: api.flows[f"{NS}/{first}"].metadata.uid}
        finish(api, first, succeeded=False)
        await spin(api, ctrl, clock, rounds=6, step=2)
        assert f"{NS}/{first}" not in api.flows  # superseded, archived, deleted
        uids[second] = api.flows[f"{NS}/{second}"].metadata.uid
        finish(api, second, succeeded=True)
        await spin(api, ctrl, clock, rounds=6, step=2)
        assert api.flows[f"{NS}/p"].status.phase == "Succeeded"
        (key,) = [k for k in store.objects if k.startswith(f"jobflows/{NS}/p/")]
        record = json.loads(store.objects[key])
        assert record["children"] == [
            {"step": "sub", "attempt": 1, "name": first, "uid": uids[first]},
            {"step": "sub", "attempt": 2, "name": second, "uid": uids[second]},
        ]
        assert all(uids.values())
    finally:
        writers.cancel()
