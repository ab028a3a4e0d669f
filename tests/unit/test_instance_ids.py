"""Several controllers in one cluster: `--instance-id`, the selector of the flows a controller runs, and
the instance label on what it makes for them (docs/OPERATOR_GUIDE.md, "Several controllers in one
cluster")."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from zen_flow import config
from zen_flow.api.constants import LABEL_CRON, LABEL_INSTANCE
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.core.instances import instance_labels, instance_selector
from zen_flow.planner.cron_runs import build_run, manual_run
from zen_flow.planner.jobs import build_job
from zen_flow.planner.resources import build_resource
from zen_flow_dev.testing.flows import job_step, make_flow


def settings(*argv: str, env: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), env=env or {})


# --- settings ------------------------------------------------------------------------------------------


def test_the_instance_id_comes_from_the_flag_or_the_environment() -> None:
    assert settings().instance_id == ""
    assert settings("--instance-id", "team-a").instance_id == "team-a"
    assert settings(env={"ZEN_FLOW_INSTANCE_ID": "team-b.2"}).instance_id == "team-b.2"
    assert settings("--instance-id", "a", env={"ZEN_FLOW_INSTANCE_ID": "b"}).instance_id == "a"


@pytest.mark.parametrize("bad", ["team a", "-team", "team-", "x" * 64, "a/b"])
def test_an_instance_id_that_is_no_label_value_is_refused_naming_the_flag(bad: str) -> None:
    with pytest.raises(ValueError, match=r"--instance-id: .* is not a valid label value") as err:
        settings(f"--instance-id={bad}")
    assert repr(bad) in str(err.value)


def test_each_instance_elects_its_leader_on_a_lease_of_its_own_unless_one_is_named() -> None:
    assert settings().lease_name == "zen-flow-controller"
    assert settings("--instance-id", "team-a").lease_name == "zen-flow-controller-team-a"
    assert settings("--instance-id", "team-a", "--leader-election-name", "mine").lease_name == "mine"
    assert settings("--leader-election-name", "mine").lease_name == "mine"


def test_an_instance_id_that_makes_no_lease_name_asks_for_one() -> None:
    # A label value may hold capitals and underscores, a Lease's name may not.
    with pytest.raises(ValueError, match="set --leader-election-name") as err:
        settings("--instance-id", "Team_A")
    assert "'zen-flow-controller-Team_A' (made from --instance-id 'Team_A')" in str(err.value)
    assert settings("--instance-id", "Team_A", "--leader-election-name", "team-a").lease_name == "team-a"
    assert settings("--instance-id", "Team_A", "--leader-elect", "false").instance_id == "Team_A"


# --- what a controller selects --------------------------------------------------------------------------


def test_a_controller_selects_its_instances_flows_or_without_one_the_unlabelled_ones() -> None:
    assert instance_selector("team-a") == "workflow.kube-zen.io/controller-instance=team-a"
    assert instance_selector("") == "!workflow.kube-zen.io/controller-instance"


# --- the label on what it makes -------------------------------------------------------------------------

A = {LABEL_INSTANCE: "team-a"}


@pytest.mark.parametrize(("labels", "expected"), [(A, A), ({"team": "data"}, {})])
def test_a_flows_jobs_and_pods_carry_its_instance_label(
    labels: dict[str, str], expected: dict[str, str]
) -> None:
    flow = make_flow([job_step("a")], labels=labels)
    job = build_job(flow, flow.spec.steps[0], "flow-a", 1)
    for where in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert instance_labels(where) == expected
        assert where["app.kubernetes.io/managed-by"] == "zen-flow"


def test_a_flows_resource_templates_carry_its_instance_label() -> None:
    flow = make_flow([job_step("a")], labels=A)
    pvc = build_resource(flow, "PersistentVolumeClaim", {"metadata": {"name": "scratch"}, "spec": {}})
    assert pvc["metadata"]["labels"][LABEL_INSTANCE] == "team-a"


@pytest.mark.parametrize(("labels", "expected"), [(A, "team-a"), ({}, None)])
def test_only_the_flows_own_label_names_the_instance_on_what_is_made_for_it(
    labels: dict[str, str], expected: str | None
) -> None:
    # A step's, Job template's, pod template's or resource template's labels naming another instance
    # (copied from a template, say) never mark the objects as that instance's: the flow's own label wins,
    # and a flow without one makes objects without one.
    other = {LABEL_INSTANCE: "team-b"}
    step = job_step("a", metadata={"labels": other})
    step["template"]["metadata"] = {"labels": other}
    step["template"]["spec"]["template"].setdefault("metadata", {})["labels"] = other
    flow = make_flow([step], labels=labels)
    job = build_job(flow, flow.spec.steps[0], "flow-a", 1)
    cm = build_resource(flow, "ConfigMap", {"metadata": {"name": "cfg", "labels": other}, "data": {}})
    for where in (
        job["metadata"]["labels"],
        job["spec"]["template"]["metadata"]["labels"],
        cm["metadata"]["labels"],
    ):
        assert where.get(LABEL_INSTANCE) == expected


def cron(labels: dict[str, str], template_labels: dict[str, str]) -> CronJobFlow:
    manifest: dict[str, Any] = {
        "metadata": {"name": "nightly", "namespace": "team", "uid": "cron-uid", "labels": labels},
        "spec": {
            "schedule": "0 2 * * *",
            "jobFlowTemplate": {"metadata": {"labels": template_labels}, "spec": {"steps": []}},
        },
    }
    return CronJobFlow.model_validate(manifest)


@pytest.mark.parametrize(
    ("cron_labels", "template_labels", "expected"),
    [
        (A, {"team": "data"}, {"team": "data", **A}),
        # A template with the label makes no runs at all: admission refuses it, and one stored without
        # the webhook is marked Valid=False by the controller, which makes no runs of it, and refused by
        # `zen-flow cron trigger` (both validate it first). Were a run built anyway, it would still go
        # to the CronJobFlow's own instance: build_run drops the template's label.
        (A, {LABEL_INSTANCE: "team-b"}, A),
        ({}, {LABEL_INSTANCE: "team-b"}, {}),
    ],
)
def test_cronjobflow_runs_scheduled_or_triggered_go_to_the_cronjobflows_instance(
    cron_labels: dict[str, str], template_labels: dict[str, str], expected: dict[str, str]
) -> None:
    from datetime import UTC, datetime

    made = cron(cron_labels, template_labels)
    for body in (build_run(made, datetime(2026, 5, 1, 2, tzinfo=UTC)), manual_run(made, "b2c4d")):
        labels: dict[str, str] = body["metadata"]["labels"]  # type: ignore[index]
        assert labels.pop(LABEL_CRON) == "nightly"
        assert labels == expected
