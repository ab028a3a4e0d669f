"""The step logs' keys in the archive, how a long log is cut, and which Job deletes wait for their logs
(planner/archive_logs.py)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from zen_flow import config
from zen_flow.api.constants import ANNOTATION_ARCHIVE_LOGS
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import DeleteFlow, DeleteJob, Plan
from zen_flow.planner.archive_logs import (
    TRUNCATED_MARK,
    LogKey,
    UnloggedJob,
    capped,
    job_step,
    log_key,
    logs_hold,
    logs_prefix,
    logs_wanted,
    parse_log_key,
)
from zen_flow.planner.archive_records import list_prefix, parse_key
from zen_flow_dev.testing.flows import job_step as a_step
from zen_flow_dev.testing.flows import make_flow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_logs_key_names_flow_step_attempt_pod_and_container_and_reads_back() -> None:
    key = log_key("jobflows/", "team-a", "nightly", "u-1", "load", 2, "nightly-load-1234-r1-xyz", "main")
    assert key == "jobflows/~logs/team-a/nightly/u-1/load/2/nightly-load-1234-r1-xyz/main.log"
    assert parse_log_key("jobflows/", "team-a", "nightly", "u-1", key) == LogKey(
        "load", 2, "nightly-load-1234-r1-xyz", "main"
    )
    assert parse_key("jobflows/", key) is None  # `zen-flow archive list` takes it for no record
    assert (
        parse_log_key("jobflows/", "team-a", "nightly", "u-1", "jobflows/team-a/nightly/u-1/x.json") is None
    )
    assert logs_prefix("p/", "ns", "f", "u", "load") == "p/~logs/ns/f/u/load/"
    # Digits Python's isdigit() takes but int() refuses (a superscript) or reads (another script's): no
    # attempt of ours, which are written in ASCII.
    for attempt in ("\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}"):
        other = f"jobflows/~logs/team-a/nightly/u-1/load/{attempt}/pod/main.log"
        assert parse_log_key("jobflows/", "team-a", "nightly", "u-1", other) is None
    # Not under the records' `<prefix><namespace>/`: listing a namespace's records meets no log.
    assert not key.startswith(list_prefix("jobflows/", "team-a"))


def test_a_jobs_step_and_attempt_come_from_its_name() -> None:
    flow = make_flow([a_step("load"), a_step("report", "load")], name="nightly")
    assert job_step(flow, job_name("nightly", "load", 0)) == ("load", 1)
    assert job_step(flow, job_name("nightly", "report", 2)) == ("report", 3)
    assert job_step(flow, "someone-elses") == ("someone-elses", 1)


def test_a_log_over_the_limit_keeps_its_beginning_and_says_it_was_cut() -> None:
    assert capped(b"0123456789", 10) == (b"0123456789", False)
    kept, cut = capped(b"0123456789A", 10)
    assert cut
    assert kept == b"0123456789\n" + f"{TRUNCATED_MARK} 10 bytes are kept]\n".encode()
    assert capped(b"01234\n6789A", 6)[0].startswith(b"01234\n[zen-flow")


def test_the_annotation_counts_only_in_the_opt_in_and_opt_out_modes() -> None:
    on = make_flow([a_step("a")], annotations={ANNOTATION_ARCHIVE_LOGS: "TRUE"})
    off = make_flow([a_step("a")], annotations={ANNOTATION_ARCHIVE_LOGS: "false"})
    other = make_flow([a_step("a")], annotations={ANNOTATION_ARCHIVE_LOGS: "maybe"})
    plain = make_flow([a_step("a")])
    assert [logs_wanted(f, "off") for f in (on, off, other, plain)] == [False] * 4
    assert [logs_wanted(f, "on") for f in (on, off, other, plain)] == [True] * 4
    assert [logs_wanted(f, "opt-in") for f in (on, off, other, plain)] == [True, False, False, False]
    assert [logs_wanted(f, "opt-out") for f in (on, off, other, plain)] == [True, False, True, True]


def test_a_delete_of_a_finished_jobs_waits_for_its_logs_bounded_by_the_max_delay() -> None:
    deletes = (DeleteJob("j-0", "s", "superseded"), DeleteJob("j-9", "s", "superseded"), DeleteFlow("ttl"))
    plan = Plan(actions=deletes, status=JobFlowStatus(), events=(), requeue_after=None)
    # Being written: held, the writer wakes the flow; other deletes go on.
    held = logs_hold(plan, {"j-0": UnloggedJob()}, NOW, max_delay=600).plan
    assert [getattr(a, "name", "") for a in held.actions] == ["j-9", ""]
    assert held.requeue_after is not None
    assert held.events == ()
    # Failing for less than the max delay: held until it is reached.
    failing = UnloggedJob(failed_since=NOW - timedelta(seconds=500), cause="down")
    held = logs_hold(plan, {"j-0": failing}, NOW, max_delay=600).plan
    assert len(held.actions) == 2
    assert held.requeue_after == 100
    # Overdue: it goes, with a Warning naming it.
    verdict = logs_hold(plan, {"j-0": failing}, NOW + timedelta(seconds=100), max_delay=600)
    assert verdict.plan.actions == plan.actions
    assert verdict.unlogged_deletes == ("j-0",)
    ((reason, message),) = [(e.reason, e.message) for e in verdict.plan.events]
    assert reason == "NotArchived"
    assert "j-0" in message
    assert logs_hold(plan, {}, NOW, max_delay=600).plan is plan


def _settings(*argv: str) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), env={})


def test_an_unknown_archive_logs_mode_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--archive-logs must be off, on, opt-in or opt-out"):
        _settings("--archive-logs=true")
    assert _settings().archive_logs == "off"
    assert _settings("--archive-logs=opt-out").archive_logs == "opt-out"
