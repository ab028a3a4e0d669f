"""What `zen-flow get` and `zen-flow list` print, rendered from real status objects (the planner simulator
ran the flow) at a fixed instant."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from textwrap import dedent
from types import SimpleNamespace

import pytest

from zen_flow.cli.render import dependency_order, flow_detail, flow_list, span
from zen_flow.cli.watcher import EffectiveFlows, _show
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(seconds=50)


def release() -> Simulator:
    steps = [
        job_step("build"),
        job_step("lint"),
        manual_step("gate", "build", "lint"),
        job_step("ship", "gate"),
    ]
    sim = Simulator(make_flow(steps, name="release", namespace="team-a", created=T0), T0)
    sim.reconcile()
    sim.advance(30)
    sim.complete(sim.running()[0])  # build
    sim.reconcile()
    sim.advance(12)
    sim.complete(sim.running()[0])  # lint
    sim.reconcile()
    return sim


def test_get_shows_the_steps_in_dependency_order_with_what_each_is_doing() -> None:
    # Job names are the controller's deterministic ones (flow, step, attempt).
    assert flow_detail(release().flow, NOW) == dedent("""\
        Name:       team-a/release
        Phase:      Paused
        Progress:   2/4
        Started:    2025-01-01T00:00:00Z
        Duration:   50s
        Message:    waiting for approval of gate

        STEP       PHASE             ATTEMPT   STARTED   DURATION   AFTER         JOB                      MESSAGE
        build      Succeeded         1         50s ago   30s        -             release-build-bd282ae1
        lint       Succeeded         1         50s ago   42s        -             release-lint-d20baedc
          gate     PendingApproval   -         8s ago    8s         build, lint   -                        waiting for manual approval of step gate
            ship   Pending           -         -         -          gate          -
        """)  # noqa: E501 - the table is as wide as it is


def test_get_shows_a_priority_only_when_it_is_set() -> None:
    def detail(**policy: int) -> list[str]:
        flow = make_flow([job_step("a")], name="f", namespace="ns", created=T0, execution_policy=policy)
        return flow_detail(flow, NOW).splitlines()[:4]

    assert detail(priority=100)[2:] == ["Progress:   -", "Priority:   100"]
    assert detail(priority=-5)[3] == "Priority:   -5"
    assert "Priority" not in "\n".join(detail(priority=0) + detail())


def test_get_names_the_condition_that_needs_attention() -> None:
    sim = Simulator(
        make_flow([job_step("train")], name="slow", namespace="ml", created=T0), T0, progress_deadline=60
    )
    sim.reconcile()
    sim.advance(90)
    sim.reconcile()
    text = flow_detail(sim.flow, T0 + timedelta(seconds=90))
    assert (
        "Condition:  Progressing=False ProgressDeadlineExceeded: no step changed phase for 1m "
        "(last change 2025-01-01T00:00:00Z); still running: train" in text
    )


def test_get_says_when_a_retrying_step_tries_again() -> None:
    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "30s"}}
    sim = Simulator(make_flow([job_step("build", retryPolicy=retry)], name="rel", created=T0), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()  # the next attempt at T0 + 31 s
    row = flow_detail(sim.flow, T0 + timedelta(seconds=6)).splitlines()[-1]
    assert row.split("   ")[0:2] == ["build", "Retrying"]
    assert row.endswith(
        "next attempt 2 of 3 in 25s; attempt 1 failed: Job failed: BackoffLimitExceeded: Job has failed"
    )
    late = flow_detail(sim.flow, T0 + timedelta(seconds=40)).splitlines()[-1]  # the controller is behind
    assert "next attempt 2 of 3 due now; attempt 1 failed" in late
    assert "Message:    step build retrying at 2025-01-01T00:00:31Z (attempt 2 of 3)" in flow_detail(
        sim.flow, NOW
    )


def test_list_shows_one_line_per_flow_and_the_namespace_with_all_namespaces() -> None:
    sim = release()
    other = make_flow([job_step("a")], name="nightly", namespace="team-b", created=T0 - timedelta(hours=3))
    assert flow_list([other, sim.flow], NOW, all_namespaces=True) == dedent("""\
        NAMESPACE   NAME      PHASE     PROGRESS   AGE   MESSAGE
        team-a      release   Paused    2/4        50s   waiting for approval of gate
        team-b      nightly   Pending   -          3h
        """)
    assert flow_list([sim.flow], NOW, all_namespaces=False).splitlines()[0].split() == [
        "NAME", "PHASE", "PROGRESS", "AGE", "MESSAGE",
    ]  # fmt: skip


def test_an_invalid_graph_is_still_shown_in_spec_order() -> None:
    looped = make_flow([job_step("a", "b"), job_step("b", "a")])
    assert dependency_order(looped) == [("a", 0), ("b", 0)]
    diamond = make_flow([job_step("d", "b", "c"), job_step("b", "a"), job_step("c", "a"), job_step("a")])
    assert dependency_order(diamond) == [("a", 0), ("b", 1), ("c", 1), ("d", 2)]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59, "59s"),
        (61, "1m1s"),
        (600, "10m"),
        (725, "12m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (90000, "1d1h"),
    ],
)
def test_durations_read_like_kubectl_ages(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


def test_get_wide_shows_what_each_step_produced() -> None:
    outputs = {"parameters": [{"name": "digest", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    sim = Simulator(
        make_flow([job_step("build", outputs=outputs), job_step("ship", "build")], name="rel"), T0
    )
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    rows = flow_detail(sim.flow, NOW, wide=True).split("\n\n")[1].splitlines()
    assert rows[0].split() == [
        "STEP",
        "PHASE",
        "ATTEMPT",
        "STARTED",
        "DURATION",
        "AFTER",
        "JOB",
        "OUTPUTS",
        "MESSAGE",
    ]
    assert rows[1].split()[-1] == "digest=1"  # the Job's status.succeeded, captured as the step's output
    assert "OUTPUTS" not in flow_detail(sim.flow, NOW)


def test_control_characters_from_tenants_reach_the_terminal_escaped() -> None:
    # A Manual step's message is the tenant's text: OSC 52 would write the reader's clipboard, and a bidi
    # override would show `exe.png` for `gnp.exe`.
    hostile = "ok\x1b]52;c;ZXZpbA==\x07 \u202egnp.exe\nnext"
    sim = Simulator(make_flow([manual_step("gate", message=hostile)], name="f", created=T0), T0)
    sim.reconcile()
    for text in (flow_detail(sim.flow, NOW), flow_list([sim.flow], NOW, all_namespaces=True)):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\x07" not in text
    assert r"ok\x1b]52;c;ZXZpbA==\x07 \u202egnp.exe" in flow_detail(sim.flow, NOW)


def test_watch_piped_prints_tenant_messages_escaped_too() -> None:
    sim = Simulator(make_flow([job_step("a")], name="f", created=T0), T0)
    sim.reconcile()
    status = sim.flow.status.model_copy(update={"message": "stopped by \x1b]52;c;ZXZpbA==\x07"})
    flow = sim.flow.model_copy(update={"status": status})
    out = io.StringIO()
    session = SimpleNamespace(out=out, show=out.write)
    _show(session, {"f": flow}, {}, "f", False, EffectiveFlows())  # type: ignore[arg-type]
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().endswith(r"f Running 0/1 stopped by \x1b]52;c;ZXZpbA==\x07" + "\n")


def test_get_shows_a_matrix_steps_items_with_the_values_each_runs_with() -> None:
    from zen_flow.core.matrix import effective_flow

    params = [{"name": "os", "values": ["linux", "darwin"]}, {"name": "region", "values": ["eu"]}]
    steps = [job_step("build", matrix={"parameters": params}), job_step("publish", "build")]
    sim = Simulator(effective_flow(make_flow(steps, name="m", created=T0)), T0)
    sim.reconcile()
    rows = flow_detail(sim.flow, NOW).splitlines()
    header = next(r for r in rows if r.startswith("STEP"))
    assert "VALUES" in header.split()
    build = {r.split()[0]: r for r in rows if r.startswith("build-")}
    assert "os=linux, region=eu" in build["build-0"]
    assert "os=darwin, region=eu" in build["build-1"]
    publish = next(r for r in rows if "publish" in r)
    assert "build-0, build-1" in publish
    # A flow without a matrix has no such column.
    assert "VALUES" not in flow_detail(release().flow, NOW)


def test_watch_on_a_terminal_draws_a_matrix_steps_items_as_get_does() -> None:
    from zen_flow.core.matrix import effective_flow

    params = [{"name": "os", "values": ["linux", "darwin"]}]
    steps = [job_step("build", matrix={"parameters": params}), job_step("publish", "build")]
    stored = make_flow(steps, name="m", created=T0)
    sim = Simulator(effective_flow(stored), T0)
    sim.reconcile()
    sim.complete(next(j for j in sim.running() if "build-0" in j))
    sim.reconcile()
    # The watch sees the stored spec (with `matrix`) and the controller's status (of the items).
    flow = stored.model_copy(update={"status": sim.flow.status})
    out = io.StringIO()
    session = SimpleNamespace(out=out, show=out.write, isatty=lambda: True)
    effective = EffectiveFlows()
    _show(session, {"m": flow}, {}, "m", True, effective)  # type: ignore[arg-type]
    rows = out.getvalue().splitlines()
    assert "VALUES" in next(r for r in rows if r.startswith("STEP")).split()
    build = {r.split()[0]: r.split()[1] for r in rows if r.startswith("build")}
    assert build == {"build-0": "Succeeded", "build-1": "Running"}
    # Redrawn at every event: the spec is expanded once per generation, not once per event.
    status = flow.status.model_copy(update={"message": "next"})
    again = effective(flow.model_copy(update={"status": status}))
    assert again.spec is effective(flow).spec
    assert again.status.message == "next"


def test_get_and_watch_show_a_matrix_step_waiting_for_an_output_then_its_items() -> None:
    gen = job_step(
        "gen",
        outputs={
            "parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]
        },
    )
    source = {"jsonPath": "gen:$.outputs.parameters.list"}
    steps = [gen, job_step("build", "gen", matrix={"parameters": [{"name": "x", "valueFrom": source}]})]
    sim = Simulator(make_flow(steps, name="m", created=T0), T0, expand=True)
    sim.reconcile()
    effective = EffectiveFlows()

    def drawn() -> dict[str, str]:
        out = io.StringIO()
        session = SimpleNamespace(out=out, show=out.write, isatty=lambda: True)
        _show(session, {"m": sim.flow}, {}, "m", True, effective)  # type: ignore[arg-type]
        rows = out.getvalue().splitlines()
        assert "VALUES" in next(r for r in rows if r.startswith("STEP")).split()
        return {r.split()[0]: r for r in rows if r.strip().startswith("build")}

    assert "(from gen)" in drawn()["build"]
    sim.complete(next(j for j in sim.running() if "gen" in j), {"main": '["a","b"]'})
    for _ in range(3):
        sim.reconcile()
    rows = drawn()  # the same watch: expanded again once the output landed
    assert sorted(rows) == ["build-0", "build-1"]
    assert "x=b" in rows["build-1"]


def test_get_says_which_failures_allow_failure_tolerated_in_a_flow_that_succeeded() -> None:
    steps = [job_step("build"), job_step("lint", "build", allowFailure=True), job_step("ship", "lint")]
    sim = Simulator(make_flow(steps, name="release", namespace="team-a", created=T0), T0)
    run(sim, lambda job: "fail" if sim.steps[job] == "lint" else "complete")
    text = flow_detail(sim.flow, NOW)
    said = "2 steps succeeded, 1 failed with allowFailure: lint"
    assert "Phase:      Succeeded" in text
    assert f"Message:    {said}" in text
    assert f"Condition:  Complete=True SucceededWithFailures: {said}" in text
    rows = {line.split()[0]: line for line in text.splitlines()[-3:]}
    assert "  Failed (allowed)  " in rows["lint"]
    assert "  Succeeded  " in rows["ship"]
