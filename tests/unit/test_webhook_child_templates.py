"""The templates of Flow steps at admission (webhook/child_templates.py): a JobFlow whose Flow step names
a template that does not exist, or passes arguments it does not take, is refused naming the step's field;
a template or a CronJobFlow that does so is admitted with warnings; a template that cannot be read is a
warning, never a refusal."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from zen_flow.kube.errors import Forbidden, TransportError
from zen_flow.validation import child_templates as vct
from zen_flow.validation.child_templates import child_steps
from zen_flow.webhook import child_templates as wct
from zen_flow.webhook.review import Decisions
from zen_flow.webhook.server import create_webhook_app
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

UID = "c0a3d0a8-0000-4000-8000-000000000007"
API = "workflow.kube-zen.io/v1alpha1"
CLUSTER = "<cluster>"


def template(
    name: str, *params: dict[str, Any], kind: str = "JobFlowTemplate", **spec: Any
) -> dict[str, Any]:
    meta = {"name": name} if kind == "ClusterJobFlowTemplate" else {"name": name, "namespace": "team-a"}
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": meta,
        "spec": {
            "steps": [job_step("compile")],
            **({"arguments": {"parameters": list(params)}} if params else {}),
            **spec,
        },
    }


BUILD = template(
    "build",
    {"name": "env", "value": "dev", "enum": ["dev", "prod"]},
    {"name": "ref", "value": "main"},
)


class Templates:
    """JobFlowTemplates by (namespace, name), ClusterJobFlowTemplates by ("<cluster>", name)."""

    def __init__(self, *stored: dict[str, Any], error: Exception | None = None) -> None:
        self.stored = {(t["metadata"].get("namespace", CLUSTER), t["metadata"]["name"]): t for t in stored}
        self.error = error
        self.asked: list[tuple[str, str]] = []

    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        where = CLUSTER if cluster else namespace
        self.asked.append((where, name))
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.stored.get((where, name)))


def flow_step(
    name: str, template_name: str = "build", *args: tuple[str, str], cluster: bool = False
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": template_name, **({"clusterScope": True} if cluster else {})}
    flow: dict[str, Any] = {"templateRef": ref}
    if args:
        flow["arguments"] = {"parameters": [{"name": n, "value": v} for n, v in args]}
    return {"name": name, "type": "Flow", "flow": flow}


def jobflow(*steps: dict[str, Any]) -> dict[str, Any]:
    return flow_manifest("nightly", "team-a", list(steps))


def review(obj: Any, operation: str = "CREATE", old: Any = None, kind: str = "JobFlow") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": kind},
            "operation": operation,
            "name": obj["metadata"].get("name", ""),
            "namespace": "team-a",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
        },
    }


async def post(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(path, json=body)
    assert answer.status == 200
    response: dict[str, Any] = (await answer.json())["response"]
    return response


def causes(response: dict[str, Any]) -> dict[str, str]:
    assert not response["allowed"], response
    assert response["status"]["code"] == 422
    return {c["field"]: c["message"] for c in response["status"]["details"]["causes"]}


def cause_list(response: dict[str, Any]) -> list[tuple[str, str]]:
    assert not response["allowed"], response
    return [(c["field"], c["message"]) for c in response["status"]["details"]["causes"]]


async def test_a_flow_step_naming_a_missing_template_is_refused_naming_the_step(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(BUILD)))
    obj = jobflow(job_step("a"), job_step("b"), job_step("c"), flow_step("sub", "x"))
    response = await post(client, "/validate-jobflow", review(obj))
    assert causes(response) == {
        "spec.steps[3].flow.templateRef.name": (
            'Not found: "x": JobFlowTemplate "x" not found in namespace "team-a"'
        )
    }
    assert 'spec.steps[3].flow.templateRef.name: Not found: "x"' in response["status"]["message"]


async def test_a_missing_cluster_template_is_named_without_a_namespace(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(BUILD)))
    response = await post(client, "/validate-jobflow", review(jobflow(flow_step("sub", cluster=True))))
    assert causes(response) == {
        "spec.steps[0].flow.templateRef.name": 'Not found: "build": ClusterJobFlowTemplate "build" not found'
    }


async def test_arguments_the_template_does_not_take_are_refused_naming_each(aiohttp_client: Any) -> None:
    required = template(
        "deploy",
        {"name": "cluster"},
        {"name": "items", "value": ""},
        steps=[
            {
                **job_step("each"),
                "matrix": {"parameters": [{"name": "i", "valueFrom": {"argument": "items"}}]},
            }
        ],
    )
    client = await aiohttp_client(create_webhook_app(templates=Templates(BUILD, required)))
    obj = jobflow(
        flow_step("sub", "build", ("env", "staging"), ("colour", "red"), ("ref", "{{inputs.parameters.x}}")),
        flow_step("ship", "deploy"),
    )
    obj["spec"]["steps"][0]["inputs"] = {"parameters": [{"name": "x", "value": "v1"}]}
    # A placeholder's value is known only when the step runs; a matrix's empty argument is the flow's to fill.
    params = "spec.steps[1].flow.arguments.parameters"
    assert cause_list(await post(client, "/validate-jobflow", review(obj))) == [
        (
            "spec.steps[0].flow.arguments.parameters[0].value",
            'Unsupported value: "staging": supported values: "dev", "prod"; the enum of JobFlowTemplate '
            '"build"',
        ),
        (
            "spec.steps[0].flow.arguments.parameters[1].name",
            'Not found: "colour": JobFlowTemplate "build" declares no such argument (it declares: env, ref)',
        ),
        (
            params,
            'Required value: JobFlowTemplate "deploy" declares argument "cluster" without a value: the step '
            "must pass one",
        ),
        (
            params,
            'Required value: JobFlowTemplate "deploy" declares argument "items" without a value: the step '
            "must pass one",
        ),
    ]


async def test_a_flow_step_its_template_takes_is_admitted_each_template_read_once(
    aiohttp_client: Any,
) -> None:
    templates = Templates(BUILD, template("build", kind="ClusterJobFlowTemplate"))
    client = await aiohttp_client(create_webhook_app(templates=templates))
    obj = jobflow(
        flow_step("a", "build", ("env", "prod")),
        flow_step("b", "build"),
        flow_step("c", "build", cluster=True),
    )
    response = await post(client, "/validate-jobflow", review(obj))
    assert response["allowed"], response
    assert "warnings" not in response
    assert sorted(templates.asked) == [(CLUSTER, "build"), ("team-a", "build")]


async def test_a_template_that_cannot_be_read_is_a_warning_not_a_refusal(aiohttp_client: Any) -> None:
    for error in (Forbidden("clusterjobflowtemplates is forbidden"), TransportError("no answer within 3s")):
        client = await aiohttp_client(create_webhook_app(templates=Templates(error=error)))
        response = await post(client, "/validate-jobflow", review(jobflow(flow_step("sub", cluster=True))))
        assert response["allowed"], response
        [warning] = response["warnings"]
        assert warning.startswith(
            "spec.steps[0].flow.templateRef.name: could not read ClusterJobFlowTemplate "
            '"build" to check the step'
        )
        assert str(error) in warning
        assert warning.endswith("it is checked when the step runs")


async def test_an_update_checks_only_the_flow_steps_it_changes(aiohttp_client: Any) -> None:
    templates = Templates(BUILD)
    client = await aiohttp_client(create_webhook_app(templates=templates))
    old = jobflow(flow_step("gone", "deleted-since"), flow_step("sub", "build"))
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    assert (await post(client, "/validate-jobflow", review(new, "UPDATE", old)))["allowed"]
    new["spec"]["steps"][1] = flow_step("sub", "build", ("env", "nope"))
    assert list(causes(await post(client, "/validate-jobflow", review(new, "UPDATE", old)))) == [
        "spec.steps[1].flow.arguments.parameters[0].value"
    ]
    assert templates.asked == [("team-a", "build")]  # the unchanged step's template is not read


async def test_without_a_template_reader_flow_steps_are_left_to_run_time(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app())
    assert (await post(client, "/validate-jobflow", review(jobflow(flow_step("sub", "x")))))["allowed"]


async def test_templates_and_cronjobflows_get_warnings_not_refusals(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(BUILD)))
    library = template("release", steps=[flow_step("sub", "x"), flow_step("b", "build", ("colour", "red"))])
    response = await post(client, "/validate-jobflowtemplate", review(library, kind="JobFlowTemplate"))
    assert response["allowed"], response
    after = " (checked again when a flow made from it runs the step)"
    assert response["warnings"] == [
        'spec.steps[0].flow.templateRef.name: Not found: "x": JobFlowTemplate "x" not found in namespace '
        '"team-a"' + after,
        'spec.steps[1].flow.arguments.parameters[0].name: Not found: "colour": JobFlowTemplate "build" '
        "declares no such argument (it declares: env, ref)" + after,
    ]
    cron = {
        "apiVersion": API,
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 3 * * *", "jobFlowTemplate": {"spec": {"steps": [flow_step("sub", "x")]}}},
    }
    response = await post(client, "/validate-cronjobflow", review(cron, kind="CronJobFlow"))
    assert response["allowed"], response
    assert [w.split(":")[0] for w in response["warnings"]] == [
        "spec.jobFlowTemplate.spec.steps[0].flow.templateRef.name"
    ]


async def test_a_cluster_template_checks_only_the_cluster_templates_it_names(aiohttp_client: Any) -> None:
    templates = Templates()
    client = await aiohttp_client(create_webhook_app(templates=templates))
    shared = template(
        "release",
        kind="ClusterJobFlowTemplate",
        steps=[flow_step("own", "x"), flow_step("c", "y", cluster=True)],
    )
    response = await post(
        client, "/validate-clusterjobflowtemplate", review(shared, kind="ClusterJobFlowTemplate")
    )
    assert response["allowed"], response
    assert [w.split(":")[0] for w in response["warnings"]] == ["spec.steps[1].flow.templateRef.name"]
    assert templates.asked == [(CLUSTER, "y")]  # a namespace's template: whose namespace is not known yet


def owned_by(obj: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    ref = {"apiVersion": API, "kind": kind, "name": name, "uid": "u1", "controller": True}
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


async def test_a_flow_the_controller_creates_gets_warnings_not_a_refusal(aiohttp_client: Any) -> None:
    # A CronJobFlow's run and a Flow step's child: refusing them would skip the whole run (its `backup`
    # step never runs) or fail the parent's step, for a problem of one step, which fails when it runs.
    client = await aiohttp_client(create_webhook_app(templates=Templates(BUILD)))
    steps = (job_step("backup"), {**flow_step("notify", "notifier"), "dependencies": ["backup"]})
    for kind, name, made in (
        ("CronJobFlow", "nightly", 'a run of CronJobFlow "nightly"'),
        ("JobFlow", "release", 'a child flow of JobFlow "release"'),
    ):
        response = await post(client, "/validate-jobflow", review(owned_by(jobflow(*steps), kind, name)))
        assert response["allowed"], response
        assert response["warnings"] == [
            'spec.steps[1].flow.templateRef.name: Not found: "notifier": JobFlowTemplate "notifier" not '
            f'found in namespace "team-a" (admitted as {made}: the step fails when it is reached if this '
            "still holds)"
        ]
    # Owned by anything else (another project's CronJobFlow kind, a reference that is not the controller):
    # refused as any flow.
    other = owned_by(jobflow(*steps), "CronJobFlow", "nightly")
    other["metadata"]["ownerReferences"][0]["apiVersion"] = "batch.example.com/v1"
    assert list(causes(await post(client, "/validate-jobflow", review(other)))) == [
        "spec.steps[1].flow.templateRef.name"
    ]
    loose = owned_by(jobflow(*steps), "CronJobFlow", "nightly")
    loose["metadata"]["ownerReferences"][0]["controller"] = False
    assert not (await post(client, "/validate-jobflow", review(loose)))["allowed"]


async def test_template_reads_and_the_approvers_check_run_at_once(aiohttp_client: Any) -> None:
    # Each is bounded by 3 s: one after the other they could outlast the apiserver's 5 s timeout. Here each
    # waits for the other to have started; one after the other, neither would ever end.
    reading, authorizing = asyncio.Event(), asyncio.Event()

    class Reads(Templates):
        async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
            reading.set()
            await authorizing.wait()
            return await super().get(namespace, name, cluster=cluster)

    async def authorize(decisions: Decisions) -> str | None:
        authorizing.set()
        await reading.wait()
        return f"user {decisions.user['username']!r} may not decide step {', '.join(decisions.steps)}"

    client = await aiohttp_client(create_webhook_app(authorize=authorize, templates=Reads(BUILD)))
    obj = jobflow(flow_step("sub", "build"), manual_step("gate", "sub"))
    obj["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    async with asyncio.timeout(10):
        response = await post(client, "/validate-jobflow", review(obj))
    assert (response["allowed"], response["status"]["code"]) == (False, 403)
    assert response["status"]["message"] == "user 'alice' may not decide step gate"
    # A step its template refuses is said first (422), as before: the approver's answer is not needed.
    obj["spec"]["steps"][0] = flow_step("sub", "x")
    async with asyncio.timeout(10):
        assert list(causes(await post(client, "/validate-jobflow", review(obj)))) == [
            "spec.steps[0].flow.templateRef.name"
        ]


async def test_each_template_is_derived_once_and_checked_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 500 Flow steps naming one 500-step template: its arguments are derived once, not per step (500
    # scans of its steps took ~0.5 s with 64 arguments), and the checking runs in a worker thread.
    derived: list[int] = []
    checked_on: set[int] = set()
    real_derive, real_check = vct.matrix_arguments, vct.check_child_arguments

    def derive(spec: Any) -> frozenset[str]:
        derived.append(threading.get_ident())
        return real_derive(spec)

    def check(step: Any, arguments: Any) -> Any:
        checked_on.add(threading.get_ident())
        return real_check(step, arguments)

    monkeypatch.setattr(vct, "matrix_arguments", derive)
    monkeypatch.setattr(wct, "check_child_arguments", check)
    big = template(
        "big",
        *[{"name": f"a{i}", "value": '["x"]'} for i in range(64)],
        steps=[
            {
                **job_step(f"s{i}"),
                "matrix": {"parameters": [{"name": "i", "valueFrom": {"argument": f"a{i % 64}"}}]},
            }
            for i in range(500)
        ],
    )
    steps = [flow_step(f"f{i}", "big", *((f"a{j}", '["y"]') for j in range(64))) for i in range(500)]
    steps[7]["flow"]["arguments"]["parameters"][0]["name"] = "colour"
    found = await wct.check_children(child_steps(steps), "team-a", Templates(big))
    assert [e.path for e in found.errors] == ["spec.steps[7].flow.arguments.parameters[0].name"]
    assert len(derived) == 1
    assert checked_on
    assert threading.get_ident() not in {*derived, *checked_on}
