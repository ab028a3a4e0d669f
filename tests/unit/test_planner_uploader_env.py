"""Planner: an output artifact on a template's volume mount with `subPathExpr` is read by the uploader
through the same directory the step's container wrote to: the uploader gets the env vars the expression
names, defined as the container defines them (planner/uploader_env.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.transfer import PLAN_ENV, UPLOADER
from zen_flow.planner import CreateJob
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.uploader_env import uploader_env
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
S3 = {"endpoint": "http://storage.example:9000", "bucket": "builds"}

# What a kubelet would find in the cluster and in the pod: pod fields, resources, ConfigMaps, Secrets.
WORLD: dict[str, Any] = {
    "fields": {"metadata.name": "flow-a-pod", "metadata.namespace": "team", "spec.nodeName": "node-1"},
    "resources": {"main": {"limits.memory": "1073741824"}, UPLOADER: {"limits.memory": "268435456"}},
    "configMaps": {"settings": {"REGION": "eu", "TIER": "gold"}},
    "secrets": {"tokens": {"TENANT": "acme"}},
}


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: `$$` is `$`, an unknown variable stays as written."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i)) > 0:
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def kubelet_env(container: Mapping[str, Any], world: Mapping[str, Any] = WORLD) -> dict[str, str]:
    """A container's env as the kubelet makes it: `envFrom` in order (under its prefix), then `env` in
    order, each value expanded against what is defined so far; an optional reference finding nothing
    sets nothing."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        kind, ref = (
            ("configMaps", source["configMapRef"])
            if "configMapRef" in source
            else ("secrets", source["secretRef"])
        )
        for key, value in world[kind].get(ref["name"], {}).items():
            env[source.get("prefix", "") + key] = value
    for entry in container.get("env") or ():
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            env[entry["name"]] = world["fields"][source["fieldRef"]["fieldPath"]]
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            whose = ref.get("containerName") or container["name"]
            env[entry["name"]] = world["resources"][whose][ref["resource"]]
        else:
            kind, ref = (
                ("configMaps", source["configMapKeyRef"])
                if "configMapKeyRef" in source
                else ("secrets", source["secretKeyRef"])
            )
            found = world[kind].get(ref["name"], {})
            if ref["key"] in found:
                env[entry["name"]] = found[ref["key"]]
            else:
                assert ref.get("optional"), f"{entry['name']}: a required reference finds nothing"
    return env


def producer(container: dict[str, Any], expression: str) -> dict[str, Any]:
    """Step `a` storing /logs/run.txt, on a volume its container mounts with `expression`."""
    step = job_step("a", outputs={"artifacts": [{"name": "run", "path": "/logs/run.txt", "s3": S3}]})
    spec = step["template"]["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "logs", "emptyDir": {}}]
    main = spec["containers"][0]
    main.update(container)
    main["name"] = "main"
    main["volumeMounts"] = [{"name": "logs", "mountPath": "/logs", "subPathExpr": expression}]
    return step


def built(step: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The created Job's step container and uploader."""
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    [body] = [a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob)]
    pod = body["spec"]["template"]["spec"]
    uploader = next(c for c in pod["initContainers"] if c["name"] == UPLOADER)
    return pod["containers"][0], uploader


def sub_path(container: Mapping[str, Any]) -> str:
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "logs"]
    return expand(mount["subPathExpr"], kubelet_env(container))


def test_the_uploader_mounts_the_directory_a_downward_api_subpathexpr_names_in_the_step() -> None:
    main, uploader = built(
        producer(
            {"env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            "runs/$(POD)",
        )
    )
    assert sub_path(main) == "runs/flow-a-pod"
    assert sub_path(uploader) == "runs/flow-a-pod"


def test_values_referring_to_others_envfrom_and_resources_resolve_alike_and_nothing_else_is_copied() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"secretRef": {"name": "tokens"}, "prefix": "T_"},
        ],
        "env": [
            {"name": "AWS_ACCESS_KEY_ID", "value": "the step's own"},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "WHERE", "value": "$(REGION)-$(NODE)"},
        ],
    }
    main, uploader = built(producer(container, "$(WHERE)/$(T_TENANT)/$(MEM)/$$(NODE)"))
    assert sub_path(main) == "eu-node-1/acme/1073741824/$(NODE)"
    assert sub_path(uploader) == sub_path(main)
    names = {e["name"] for e in uploader["env"]}
    assert "AWS_ACCESS_KEY_ID" not in names  # it would change where the uploader's S3 client goes
    assert "TIER" not in names
    assert "envFrom" not in uploader


def test_a_subpathexpr_naming_a_variable_of_the_uploader_fails_the_step_saying_so() -> None:
    step = producer({"env": [{"name": PLAN_ENV, "value": "x"}]}, f"runs/$({PLAN_ENV})")
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    [status] = sim.flow.status.steps
    assert status.phase == "Failed"
    assert (status.message or "").startswith("cannot create Job: container main's volume mount subPathExpr")
    assert PLAN_ENV in (status.message or "")


def test_two_containers_defining_a_variable_differently_are_refused() -> None:
    one = {"name": "one", "env": [{"name": "X", "value": "1"}]}
    two = {"name": "two", "env": [{"name": "X", "value": "2"}]}
    with pytest.raises(JobBuildError, match="define it alike"):
        uploader_env([(one, "$(X)"), (two, "b/$(X)")], ())
    assert uploader_env([(one, "$(X)"), (dict(one), "b/$(X)")], ()) == [{"name": "X", "value": "1"}]


NAMES = ["A", "B", "C", "P_A", "P_B"]
values = st.one_of(
    st.builds(
        lambda parts: "-".join(parts),
        st.lists(st.sampled_from([*(f"$({n})" for n in NAMES), "x", "$$(A)"]), max_size=3),
    ),
)
entries = st.one_of(
    st.builds(lambda n, v: {"name": n, "value": v}, st.sampled_from(NAMES), values),
    st.builds(
        lambda n, f: {"name": n, "valueFrom": {"fieldRef": {"fieldPath": f}}},
        st.sampled_from(NAMES),
        st.sampled_from(sorted(WORLD["fields"])),
    ),
    st.builds(
        lambda n: {"name": n, "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
        st.sampled_from(NAMES),
    ),
)
sources = st.builds(
    lambda kind, prefix: {kind: {"name": "settings" if kind == "configMapRef" else "tokens"}, **prefix},
    st.sampled_from(["configMapRef", "secretRef"]),
    st.sampled_from([{}, {"prefix": "P_"}]),
)
PROPERTY_WORLD = {
    **WORLD,
    "configMaps": {"settings": {"A": "cm-a", "B": "cm-b"}},
    "secrets": {"tokens": {"A": "s-a", "C": "s-c"}},
}


@settings(max_examples=300, deadline=None)
@given(
    env=st.lists(entries, max_size=6),
    env_from=st.lists(sources, max_size=3),
    expression=values,
)
def test_any_env_gives_the_uploader_the_containers_expansion(
    env: list[dict[str, Any]], env_from: list[dict[str, Any]], expression: str
) -> None:
    container = {"name": "main", "env": env, "envFrom": env_from}
    own = [{"name": PLAN_ENV, "value": "{}"}]
    uploader = {"name": UPLOADER, "env": [*uploader_env([(container, expression)], [PLAN_ENV]), *own]}
    assert expand(expression, kubelet_env(uploader, PROPERTY_WORLD)) == expand(
        expression, kubelet_env(container, PROPERTY_WORLD)
    )


def test_the_uploaders_own_values_are_not_expanded_by_the_copied_variables() -> None:
    # The kubelet expands `$(VAR)` in a value against the entries before it: the uploader's plan holds an
    # output's key as the controller records it in status, `$(POD)` and all, and must reach it so.
    step = producer(
        {"env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}, "runs/$(POD)"
    )
    step["outputs"]["artifacts"][0]["s3"] = {**S3, "key": "logs/$(POD)/run.txt"}
    main, uploader = built(step)
    assert sub_path(uploader) == sub_path(main) == "runs/flow-a-pod"
    [written] = [e["value"] for e in uploader["env"] if e["name"] == PLAN_ENV]
    assert "logs/$(POD)/run.txt" in written
    assert kubelet_env(uploader)[PLAN_ENV] == written


@pytest.mark.parametrize(
    "name", ["AWS_ENDPOINT_URL", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "PATH", "HOME", "PYTHONPATH"]
)
@pytest.mark.parametrize("through_another", [False, True])
def test_a_subpathexpr_naming_a_variable_the_uploader_depends_on_fails_the_step(
    name: str, through_another: bool
) -> None:
    # Copied into the uploader, it would change where it stores, as whom, or how it runs.
    env = [{"name": name, "value": "x"}]
    if through_another:
        env.append({"name": "DIR", "value": f"d-$({name})"})
    sim = Simulator(
        make_flow([producer({"env": env}, "runs/$(DIR)" if through_another else f"$({name})")]), T0
    )
    sim.reconcile()
    [status] = sim.flow.status.steps
    assert status.phase == "Failed"
    assert (status.message or "").startswith("cannot create Job: container main's volume mount subPathExpr")
    assert f"names {name}, an env var zen-flow's artifact uploader depends on" in (status.message or "")
