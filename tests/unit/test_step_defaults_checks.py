"""`spec.stepDefaults` beyond its merge: the pod securityContext and affinity checked field by field at
admission (validation/pod_schema.py), the warning for a container that asks for root under a default
`runAsNonRoot: true`, and a Job the apiserver refuses for a field the step took from the defaults naming
that field (docs/API.md, "Defaults for every step")."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripted_controller_rig import Fake, controller
from test_webhook_review import review

from zen_flow.api.constants import API_VERSION, CLUSTER_TEMPLATE_KIND, CRON_KIND, TEMPLATE_KIND
from zen_flow.cli.validate import validate_paths
from zen_flow.kube.errors import from_status
from zen_flow.validation import validate_jobflow
from zen_flow.validation.warnings import flow_warnings
from zen_flow.webhook.cron_review import validate_cron_review
from zen_flow.webhook.review import validate_review
from zen_flow.webhook.templates import validate_cluster_template_review, validate_template_review
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import flow_manifest, job_step, make_flow

CONTEXT = "spec.stepDefaults.podSpec.securityContext"
AFFINITY = "spec.stepDefaults.podSpec.affinity"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def errors_of(pod_defaults: dict[str, Any]) -> list[str]:
    flow = flow_manifest("f", "ns", [job_step("a")], stepDefaults={"podSpec": pod_defaults})
    return [str(e) for e in validate_jobflow(flow)]


def test_a_full_security_context_and_affinity_pass() -> None:
    term = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}
    pod_term = {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"flow": "{{.JobFlow.Name}}"}},
        "namespaces": ["data"],
        "matchLabelKeys": ["workflow.kube-zen.io/step"],
    }
    assert (
        errors_of(
            {
                "securityContext": {
                    "runAsUser": 1000,
                    "runAsGroup": 1000,
                    "runAsNonRoot": True,
                    "fsGroup": 2000,
                    "fsGroupChangePolicy": "OnRootMismatch",
                    "supplementalGroups": [3000],
                    "supplementalGroupsPolicy": "Strict",
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/batch.json"},
                    "appArmorProfile": {"type": "RuntimeDefault"},
                    "seLinuxOptions": {"level": "s0:c123,c456"},
                    "seLinuxChangePolicy": "MountOption",
                    "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
                    "windowsOptions": {"runAsUserName": "ContainerUser", "hostProcess": False},
                },
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 10, "preference": term}
                        ],
                    },
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 100, "podAffinityTerm": pod_term}
                        ]
                    },
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term]},
                },
            }
        )
        == []
    )


@pytest.mark.parametrize(
    ("pod_defaults", "says"),
    [
        ({"securityContext": {"runAsUsr": 1000}}, f'{CONTEXT}.runAsUsr: Unsupported value: "runAsUsr"'),
        (
            {"securityContext": {"runAsUser": "root"}},
            f'{CONTEXT}.runAsUser: Invalid value: "root": must be an integer, not string',
        ),
        (
            {"securityContext": {"runAsUser": -1}},
            f"{CONTEXT}.runAsUser: Invalid value: -1: must be between 0",
        ),
        ({"securityContext": {"runAsNonRoot": "yes"}}, f"{CONTEXT}.runAsNonRoot: Invalid value"),
        ({"securityContext": {"supplementalGroups": [1, "x"]}}, f"{CONTEXT}.supplementalGroups[1]: Invalid"),
        (
            {"securityContext": {"fsGroupChangePolicy": "Never"}},
            f'{CONTEXT}.fsGroupChangePolicy: Unsupported value: "Never"',
        ),
        (
            {"securityContext": {"supplementalGroupsPolicy": "Union"}},
            f"{CONTEXT}.supplementalGroupsPolicy: Unsupported value",
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Default"}}},
            f"{CONTEXT}.seccompProfile.type: Unsupported value",
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Localhost"}}},
            f"{CONTEXT}.seccompProfile.localhostProfile: Required value",
        ),
        ({"securityContext": {"sysctls": [{"value": "1"}]}}, f"{CONTEXT}.sysctls[0].name: Required value"),
        (
            {"securityContext": {"seLinuxOptions": {"lvl": "s0"}}},
            f"{CONTEXT}.seLinuxOptions.lvl: Unsupported",
        ),
        ({"securityContext": "restricted"}, f"{CONTEXT}: Invalid value"),
        ({"affinity": {"nodeAfinity": {}}}, f'{AFFINITY}.nodeAfinity: Unsupported value: "nodeAfinity"'),
        (
            {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
            f"{AFFINITY}.nodeAffinity.{REQUIRED}.nodeSelectorTerms: Required",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                    }
                }
            },
            f"{AFFINITY}.nodeAffinity.{REQUIRED}.nodeSelectorTerms: Required",
        ),
        (
            {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}},
            f"{AFFINITY}.podAntiAffinity.{REQUIRED}[0].topologyKey: Required",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}
                        ]
                    }
                }
            },
            f"{AFFINITY}.podAffinity.{PREFERRED}[0].weight: Invalid value: 0",
        ),
        (
            {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"x": 1}}}},
            f"{AFFINITY}.podAffinity.{REQUIRED}: Invalid value",
        ),
    ],
)
def test_a_bad_security_context_or_affinity_is_refused_naming_the_field(
    pod_defaults: dict[str, Any], says: str
) -> None:
    found = errors_of(pod_defaults)
    assert any(e.startswith(says) for e in found), found


@pytest.mark.parametrize(
    "field", ["allowPrivilegeEscalation", "capabilities", "privileged", "readOnlyRootFilesystem"]
)
def test_a_containers_field_in_the_pods_security_context_says_where_it_belongs(field: str) -> None:
    (error,) = errors_of({"securityContext": {field: False}})
    assert error.startswith(f"{CONTEXT}.{field}: Forbidden: ")
    assert "set it in the container's securityContext" in error


# --- the warning -------------------------------------------------------------------------------------


def root_step(name: str, **pod: Any) -> dict[str, Any]:
    step = job_step(name)
    spec = step["template"]["spec"]["template"]["spec"]
    spec["containers"][0]["securityContext"] = {"runAsUser": 0}
    spec.update(pod)
    return step


NON_ROOT = {"podSpec": {"securityContext": {"runAsNonRoot": True}}}


def test_a_container_running_as_root_under_a_default_run_as_non_root_draws_a_warning() -> None:
    steps = [
        job_step("plain"),
        root_step("root"),
        root_step("own", securityContext={"runAsUser": 0}),  # its own pod context: the default is not used
    ]
    flow = flow_manifest("f", "ns", steps, stepDefaults=NON_ROOT)
    assert validate_jobflow(flow) == []  # a warning, never a refusal
    (warning,) = flow_warnings(flow)
    assert warning.startswith(
        "spec.steps[1].template.spec.template.spec.containers[0].securityContext.runAsUser: 0 (root), but "
    )
    assert "kubelet will refuse to start the container (CreateContainerConfigError); " in warning
    answer = validate_review(review(flow))["response"]
    assert (answer["allowed"], answer["warnings"]) == (True, [warning])  # what kubectl prints


def holders(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """What holds a flow's spec besides a JobFlow, each with the path of that spec."""
    meta = {"name": "build", "namespace": "ns"}
    template = {"apiVersion": API_VERSION, "metadata": meta, "spec": spec}
    cron = {
        "apiVersion": API_VERSION,
        "kind": CRON_KIND,
        "metadata": meta,
        "spec": {"schedule": "0 2 * * *", "jobFlowTemplate": {"spec": spec}},
    }
    return {
        TEMPLATE_KIND: ({**template, "kind": TEMPLATE_KIND}, "spec"),
        CLUSTER_TEMPLATE_KIND: (
            {**template, "kind": CLUSTER_TEMPLATE_KIND, "metadata": {"name": "build"}},
            "spec",
        ),
        CRON_KIND: (cron, "spec.jobFlowTemplate.spec"),
    }


REVIEWS = {
    TEMPLATE_KIND: validate_template_review,
    CLUSTER_TEMPLATE_KIND: validate_cluster_template_review,
    CRON_KIND: validate_cron_review,
}


@pytest.mark.parametrize("kind", REVIEWS)
def test_a_template_or_a_cronjobflow_draws_the_warning_at_its_own_path(kind: str, tmp_path: Path) -> None:
    # A CronJobFlow's runs are created by the controller: its run would draw the warning where nobody
    # sees it. Said when the CronJobFlow (or the template a flow is made from) is written instead.
    spec = flow_manifest("f", "ns", [job_step("plain"), root_step("root")], stepDefaults=NON_ROOT)["spec"]
    obj, at = holders(spec)[kind]
    (warning,) = flow_warnings(obj)
    assert warning.startswith(
        f"{at}.steps[1].template.spec.template.spec.containers[0].securityContext.runAsUser: 0 (root), but "
    )
    assert f"it gets {at}.stepDefaults.podSpec.securityContext with runAsNonRoot: true" in warning
    # A flow made from a template replaces the template's pod securityContext whole with its own: the
    # container may start after all. A CronJobFlow's runs take its spec as it is.
    spared = "unless the flow made from this template sets its own stepDefaults.podSpec.securityContext"
    assert (spared in warning) == (kind != CRON_KIND)
    answer = REVIEWS[kind](review(obj))["response"]
    assert (answer["allowed"], answer["warnings"]) == (True, [warning])  # what kubectl prints
    path = tmp_path / "obj.yaml"
    path.write_text(yaml.safe_dump(obj))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 0
    assert f"{path}: Warning: {warning}\n" in err.getvalue()
    # Without the default, none; and a label on the stored one says nothing again.
    (plain, _) = holders(flow_manifest("f", "ns", [root_step("root")])["spec"])[kind]
    assert "warnings" not in REVIEWS[kind](review(plain))["response"]
    labelled = copy.deepcopy(obj)
    labelled["metadata"]["labels"] = {"team": "a"}
    assert "warnings" not in REVIEWS[kind](review(labelled, "UPDATE", old=obj))["response"]


def test_no_warning_without_the_default_or_when_the_container_allows_root() -> None:
    assert flow_warnings(flow_manifest("f", "ns", [root_step("a")])) == []
    allowed = root_step("a")
    allowed["template"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = (
        False
    )
    assert flow_warnings(flow_manifest("f", "ns", [allowed], stepDefaults=NON_ROOT)) == []
    relaxed = copy.deepcopy(NON_ROOT)
    relaxed["podSpec"]["securityContext"]["runAsNonRoot"] = False
    assert flow_warnings(flow_manifest("f", "ns", [root_step("a")], stepDefaults=relaxed)) == []


# --- a refused Job names the default -------------------------------------------------------------------

REFUSED = (
    'Job.batch "x" is invalid: spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnored'
    'DuringExecution.nodeSelectorTerms[0].matchFields[0].key: Invalid value: "zone": not a supported field'
)


async def failure_message(flow: Any) -> str:
    fake, clock = Fake(flow), FakeClock()
    fake.create_errors["a"] = from_status(422, {"reason": "Invalid", "message": REFUSED})
    await controller(fake, clock).reconcile(fake.flow.key)
    failed = next(c for c in fake.patches[-1]["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    message: str = failed["message"]
    return message


async def test_a_job_refused_for_a_field_from_the_defaults_names_the_default() -> None:
    defaults = {"podSpec": {"affinity": {"nodeAffinity": {}}, "serviceAccountName": "runner"}}
    message = await failure_message(make_flow([job_step("a")], step_defaults=defaults))
    assert message.endswith(f"{REFUSED} (from spec.stepDefaults.podSpec.affinity)")
    # The step's own affinity is what the apiserver refused: nothing to add.
    own = job_step("a")
    own["template"]["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {}}
    message = await failure_message(make_flow([own], step_defaults=defaults))
    assert message.endswith(REFUSED)
