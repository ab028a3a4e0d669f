"""`zen-flow cron backfill` when runs go away or things go wrong (cron_cli_rig): what a second backfill of
a range makes once the history limits deleted runs, and the summary and the commands that make the rest
after a failed create, a status check that keeps failing, or Ctrl-C; which active runs a backfill run
waits for under each concurrencyPolicy, and what it says they wait for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from backfill_rig import finish_oldest
from cron_cli_rig import NOW, FakeCluster, a_run, add, cron_manifest, manual, planned, posted, zen_flow
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.meta import format_time
from zen_flow.kube.errors import TransportError
from zen_flow.planner.cron import DeleteRun, run_name

PROG = "zen-flow cron backfill"
RESUME = f"{PROG}: to make the rest: {PROG} nightly-report -n default"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def night(day: int) -> datetime:
    return utc(2026, 3, day, 1, 30)  # 02:30 CET


def name_of(day: int) -> str:
    return run_name("nightly-report", night(day))


def backfill(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return zen_flow(capsys, "cron", "backfill", "nightly-report", *argv)


def made(cluster: FakeCluster) -> list[str]:
    return [b["metadata"]["name"] for b in posted(cluster)]


def controller(cluster: FakeCluster, report: dict[str, Any]) -> None:
    """Between two LISTs every run succeeds and the controller applies the history limits (plan_cron), then
    writes the status (a run is deleted only once a stored status records its run time)."""

    def act() -> None:
        for flow in cluster.flows.values():
            flow["metadata"].setdefault("uid", f"uid-{flow['metadata']['name']}")
            flow["status"] = {"phase": "Succeeded"}
        plan = planned(report, list(cluster.flows.values()), NOW)
        for action in plan.actions:
            if isinstance(action, DeleteRun):
                del cluster.flows[("default", action.name)]
        report["status"] = plan.status.to_wire()

    cluster.on_list = act


def bounded(cluster: FakeCluster, lists: int = 50) -> None:
    """A backfill that would wait for ever ends instead: from the `lists`-th LIST on, the apiserver is gone
    (the backfill gives up, exit 1)."""
    seen = iter(range(lists))

    def count() -> None:
        if next(seen, None) is None:
            raise TransportError("the test's apiserver is gone: the backfill was still waiting")

    cluster.on_list = count


# --- a second backfill of the range (docs: API.md "Backfill") ---------------------------------------------


@pytest.mark.parametrize(("limit", "again"), [(None, 6), (10, 0)])
def test_a_second_backfill_skips_a_night_only_while_its_run_exists(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], limit: int | None, again: int
) -> None:
    # Normal operation: the three newest nights succeeded. The outage was on the 20th to the 25th.
    spec = {} if limit is None else {"successfulJobsHistoryLimit": limit}
    report = add(cluster, cron_manifest(**spec))
    for day in (26, 27, 28):
        add(cluster, a_run(report, night(day), {"phase": "Succeeded"}))
    controller(cluster, report)
    code, _, err = backfill(capsys, "--from", "2026-03-20", "--to", "2026-03-25")
    assert (code, len(made(cluster))) == (0, 6), err
    warned = (
        f"{PROG}: warning: successfulJobsHistoryLimit 3 keeps the 3 newest such runs; 3 newer than the "
        "backfill's exist and it makes 6: the controller deletes a backfill run once 3 newer ones "
        "succeeded: running this backfill again would run those nights again\n"
    )
    assert (warned in err) == (limit is None)
    if limit is None:
        assert err.index(warned) < err.index("created")  # said before the first run is made
    assert cluster.on_list is not None
    cluster.on_list()  # the last run ends too
    kept = {name_of(day) for day in range(20, 26)} & {key[1] for key in cluster.flows}
    # Run again: a night whose run exists is skipped; one whose run was deleted is run again.
    code, out, _ = backfill(capsys, "--from", "2026-03-20", "--to", "2026-03-25")
    assert code == 0
    assert len(made(cluster)) - 6 == again == 6 - len(kept)
    assert sum("already exists, skipped" in line for line in out.splitlines()) == len(kept)


def test_a_backfill_after_a_suspension_warns_that_its_own_newer_runs_delete_its_older_ones(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Suspended from the 20th: every run older than the range. Six nights, three kept (the default).
    report = add(cluster, cron_manifest())
    for day in (17, 18, 19):
        add(cluster, a_run(report, night(day), {"phase": "Succeeded"}))
    controller(cluster, report)
    code, _, err = backfill(capsys, "--from", "2026-03-20", "--to", "2026-03-25")
    assert (code, len(made(cluster))) == (0, 6), err
    warned = (
        f"{PROG}: warning: successfulJobsHistoryLimit 3 keeps the 3 newest such runs; 0 newer than the "
        "backfill's exist and it makes 6: the controller deletes a backfill run once 3 newer ones "
        "succeeded: running this backfill again would run those nights again\n"
    )
    assert warned in err
    assert err.index(warned) < err.index("created")
    assert cluster.on_list is not None
    cluster.on_list()  # the last run ends too
    assert {key[1] for key in cluster.flows} == {name_of(day) for day in (23, 24, 25)}


@pytest.mark.parametrize(
    ("nights", "limit", "warned"), [(3, 3, False), (4, 3, True), (1, 1, False), (2, 1, True)]
)
def test_the_history_warning_comes_when_the_backfills_runs_are_more_than_the_limit_keeps(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], nights: int, limit: int, warned: bool
) -> None:
    # No newer run: the backfill's own runs are all there is; as many as the limit are all kept.
    report = add(cluster, cron_manifest(successfulJobsHistoryLimit=limit))
    controller(cluster, report)
    code, _, err = backfill(capsys, "--from", "2026-03-20", "--to", f"2026-03-{19 + nights}")
    assert (code, len(made(cluster))) == (0, nights), err
    assert ("warning: successfulJobsHistoryLimit" in err) == warned
    assert cluster.on_list is not None
    cluster.on_list()
    assert len(cluster.flows) == min(nights, limit)


# --- stopped half-way: the summary and the commands that make the rest ------------------------------------


def test_ctrl_c_prints_the_summary_and_the_command_that_makes_the_rest(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    lists = iter(range(100))

    def interrupted() -> None:
        if next(lists) == 3:  # the first run made, the backfill waits for it: Ctrl-C
            raise KeyboardInterrupt

    cluster.on_list = interrupted
    code, _, err = backfill(capsys, "--from", "2026-03-25")
    assert (code, made(cluster)) == (130, [name_of(25)])
    assert err.splitlines()[-2:] == [
        f"{PROG}: cronjobflow default/nightly-report: 4 run times, 1 created, 0 already existed, 0 not "
        "created, 3 not tried (interrupted)",
        f"{RESUME} --from {format_time(night(26))} --to {format_time(night(28))}",
    ]


def test_a_status_check_that_fails_is_tried_again(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    controller(cluster, report)
    finish = cluster.on_list
    assert finish is not None
    failures = iter([False] + [True, True, False] * 10)  # the first look at the runs, then two of three fail

    def flaky() -> None:
        if next(failures):
            raise TransportError("connection reset by peer")
        finish()

    cluster.on_list = flaky
    code, _, err = backfill(capsys, "--from", "2026-03-26")
    assert code == 0, err
    assert made(cluster) == [name_of(26), name_of(27), name_of(28)]


def test_a_status_check_that_keeps_failing_ends_with_the_summary_and_the_rest(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    lists = iter(range(100))

    def down() -> None:
        if next(lists) >= 2:  # the first run made; then the apiserver is gone
            raise TransportError("connection refused")

    cluster.on_list = down
    code, _, err = backfill(capsys, "--from", "2026-03-26")
    assert (code, made(cluster)) == (1, [name_of(26)])
    assert err.splitlines()[-2:] == [
        f"{PROG}: cronjobflow default/nightly-report: 3 run times, 1 created, 0 already existed, 0 not "
        "created, 2 not tried (the runs could not be listed: cannot reach the apiserver: connection "
        "refused)",
        f"{RESUME} --from {format_time(night(27))} --to {format_time(night(28))}",
    ]


@pytest.mark.parametrize("stored", [True, False])
def test_a_create_that_got_no_answer_is_looked_up(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], stored: bool
) -> None:
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    request = cluster.request

    async def lost(method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        answer = None
        if method == "POST" and body["metadata"]["name"] == name_of(27):
            if stored:
                await request(method, path, body, *args, **kwargs)
            raise TransportError("timed out")
        answer = await request(method, path, body, *args, **kwargs)
        return answer

    cluster.request = lost  # type: ignore[method-assign]
    code, out, err = backfill(capsys, "--from", "2026-03-26", "--parallel", "3")
    if stored:  # the apiserver made it: created, and counted active
        assert code == 0, err
        assert f"jobflow default/{name_of(27)} created (run time 2026-03-27 02:30 CET)" in out
        assert "3 created, 0 already existed, 0 not created" in err
    else:
        assert code == 1
        assert "not created: cannot reach the apiserver: timed out" in err
        assert (
            err.splitlines()[-1] == f"{RESUME} --from {format_time(night(27))} --to {format_time(night(27))}"
        )


# --- what a backfill run waits for ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_a_backfill_run_never_starts_beside_an_active_run_of_the_cronjobflow(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    # A manual run, and (newer than every backfill run: Replace would stop them) a scheduled one.
    report = add(cluster, cron_manifest(concurrencyPolicy=policy))
    add(cluster, manual(report, NOW - timedelta(hours=1), "Running"))
    add(cluster, a_run(report, night(28), {"phase": "Running"}))
    seen = finish_oldest(cluster, after=2)
    code, _, err = backfill(capsys, "--from", "2026-03-26", "--to", "2026-03-27")
    assert code == 0, err
    assert seen == [
        f"finished {name_of(28)}", "finished nightly-report-manual-b2c4d",
        f"created {name_of(26)}", f"finished {name_of(26)}", f"created {name_of(27)}",
    ]  # fmt: skip
    assert f"{PROG}: waiting for {name_of(28)}, nightly-report-manual-b2c4d to finish (--parallel 1)\n" in err


def test_under_allow_only_the_ranges_runs_count_and_a_run_being_deleted_is_no_active_run(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    add(cluster, a_run(report, night(28), {"phase": "Running"}))  # not the range's
    going = add(cluster, a_run(report, night(25), {"phase": "Running"}))  # the range's, being deleted
    going["metadata"]["deletionTimestamp"] = format_time(NOW)
    bounded(cluster)
    code, _, err = backfill(capsys, "--from", "2026-03-25", "--to", "2026-03-26")
    assert code == 0, err
    assert made(cluster) == [name_of(26)]
    assert "waiting" not in err


def test_a_run_the_controller_made_meanwhile_is_waited_for(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # The create of the 26th answers 409: the controller made it meanwhile, and it runs.
    report = add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    request = cluster.request

    async def raced(method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if method == "POST" and body["metadata"]["name"] == name_of(26):
            add(cluster, a_run(report, night(26), {"phase": "Running"}))
        return await request(method, path, body, *args, **kwargs)

    cluster.request = raced  # type: ignore[method-assign]
    bounded(cluster, lists=5)
    code, out, err = backfill(capsys, "--from", "2026-03-26", "--to", "2026-03-27")
    assert code == 1  # still waiting for it at the 5th LIST
    assert f"jobflow default/{name_of(26)} already exists, skipped" in out
    assert f"{PROG}: waiting for {name_of(26)} to finish (--parallel 1)\n" in err


def test_the_wait_says_why_a_run_has_not_finished(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    add(cluster, a_run(report, night(27), {"phase": "Suspended"}))
    add(cluster, a_run(report, night(28), {"phase": "Running", "steps": [
        {"name": "collect", "phase": "PendingApproval"}]}))  # fmt: skip
    finish_oldest(cluster, after=3)
    code, _, err = backfill(capsys, "--from", "2026-03-26", "--to", "2026-03-26")
    assert code == 0, err
    assert (
        f"{PROG}: waiting for {name_of(27)} (suspended), {name_of(28)} (waiting for approval of collect: "
        f"zen-flow approve {name_of(28)} collect -n default) to finish (--parallel 1)\n"
    ) in err


def test_a_flow_of_the_name_owned_by_an_earlier_cronjobflow_of_that_name_is_no_run(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    old = a_run(report, night(28), {"phase": "Succeeded"})
    old["metadata"]["ownerReferences"][0]["uid"] = "uid-deleted-and-recreated"
    add(cluster, old)
    code, out, err = backfill(capsys, "--from", "2026-03-28")
    assert (code, out) == (1, "")
    assert "is no run of cronjobflow nightly-report" in err
    assert err.splitlines()[-1] == f"{RESUME} --from {format_time(night(28))} --to {format_time(night(28))}"


# --- the warnings' filters --------------------------------------------------------------------------------


def test_only_newer_runs_make_the_replace_note_and_the_history_warning(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Runs older than the backfill's: no newer run stops them, none pushes them out of the history.
    report = add(cluster, cron_manifest(concurrencyPolicy="Replace", successfulJobsHistoryLimit=1,
                                        failedJobsHistoryLimit=1))  # fmt: skip
    add(cluster, a_run(report, night(24), {"phase": "Running"}))
    add(cluster, a_run(report, night(23), {"phase": "Succeeded"}))
    add(cluster, a_run(report, night(22), {"phase": "Failed"}))
    code, _, err = backfill(capsys, "--from", "2026-03-25", "--to", "2026-03-25", "--dry-run")
    assert code == 0
    assert "is active now" not in err
    assert "warning" not in err
    # Newer ones: named, and warned of.
    add(cluster, a_run(report, night(27), {"phase": "Failed"}))
    add(cluster, a_run(report, night(28), {"phase": "Succeeded"}))
    code, _, err = backfill(capsys, "--from", "2026-03-25", "--to", "2026-03-25", "--dry-run")
    assert "successfulJobsHistoryLimit 1 keeps the 1 newest such runs; 1 newer" in err
    assert "failedJobsHistoryLimit 1 keeps the 1 newest such runs; 1 newer" in err
    assert "deletes a backfill run once 1 newer one failed" in err


def test_a_history_limit_of_zero_is_warned_of(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(successfulJobsHistoryLimit=0))
    code, _, err = backfill(capsys, "--from", "2026-03-28", "--dry-run")
    assert code == 0
    assert (
        f"{PROG}: warning: successfulJobsHistoryLimit 0: the controller deletes each run as soon as it "
        "succeeds: running this backfill again would run those nights again\n"
    ) in err
