"""zen-flow's admission webhooks registered with the real kube-apiserver, exercised with kubectl.

The webhook server runs in this process, in a thread with its own event loop (a test blocked in a
kubectl subprocess must not stop it from answering the apiserver), on 127.0.0.1 with a serving
certificate from a throwaway CA. The webhook configurations are the shipped config/webhook/*.yaml with
`clientConfig.service` replaced by a URL, the CA as `caBundle`, and a namespaceSelector for the test
namespaces (label zenflow.test/namespace=true), so the shipped rules, failure policy and timeouts are
what the apiserver applies.

Order matters for what can be tested here: the apiserver runs mutating webhooks, then the CRD's schema
and CEL rules, then validating webhooks. An input the CRD already rejects never reaches the validating
webhook, so the denial cases below are ones only the webhook catches, and they assert its field errors.
kubectl prints an Invalid status from its details alone (`The JobFlow "x" is invalid:` and one line per
cause), without the apiserver's `admission webhook "..." denied the request` message; API clients get
that message too (checked once, through the Python client).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import patch

import pytest
import yaml
from cryptography import x509
from jobflow_objects import DEFAULT_POLICY, Kubectl, flow, job
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

import zen_flow.validation.flow as flow_rules
import zen_flow.webhook.review as review_module
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    APPROVE_PREFIX,
    GROUP,
    LABEL_CLUSTER_TEMPLATE,
    LABEL_TEMPLATE,
    PLURAL,
    VERSION,
)
from zen_flow.kube.access_reviews import AccessReviews
from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.flow_templates import FlowTemplateClient
from zen_flow.kube.transport import ClientOptions
from zen_flow.validation import AcceptedSpecs
from zen_flow.webhook.approvers import ApprovalAuthorizer
from zen_flow.webhook.server import WebhookServer
from zen_flow_dev.cluster import (
    CertificateAuthority,
    LocalCluster,
    create_ca,
    find_kubectl,
    issue_serving_cert,
)
from zen_flow_dev.cluster.adminclient import WaitTimeout, wait_until
from zen_flow_dev.testing.crd import REPO
from zen_flow_dev.testing.examples import (
    all_flow_params,
    load,
    original_forms,
    project_examples,
    upstream_examples,
)
from zen_flow_dev.testing.kubectl import kubectl_runner
from zen_flow_dev.webhooks import url_configurations

pytestmark = pytest.mark.integration

WEBHOOK_MANIFESTS = REPO / "config" / "webhook"
CONFIGURATIONS = {
    "validatingwebhookconfiguration": WEBHOOK_MANIFESTS / "validating-webhook.yaml",
    "mutatingwebhookconfiguration": WEBHOOK_MANIFESTS / "mutating-webhook.yaml",
}
TEST_NAMESPACE_LABEL = {"zenflow.test/namespace": "true"}  # what the `namespace` fixture sets
DENIED = 'admission webhook "validate.jobflows.workflow.kube-zen.io" denied the request'
ZZZ = 'spec.steps[1].dependencies[0]: Not found: "zzz"'
# Short, so a rotation is picked up quickly; checking is a hash of two small files.
RELOAD_INTERVAL = 0.1
DEADLINE = 30.0
# The apiserver calls https://127.0.0.1:<port> and so sends no SNI; our own probes send this name.
PROBE_NAME = "localhost"

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run` a coroutine on it from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="webhook-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEADLINE) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.run(self.loop.shutdown_default_executor())  # the review worker threads
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(DEADLINE)
        self.loop.close()


def serial_of(cert_path: Path) -> int:
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number


@dataclass
class Webhook:
    """The running server, its certificate directory and CA, and the user kubectl acts as."""

    server: WebhookServer
    cert_dir: Path
    ca: CertificateAuthority
    user: str
    versions: int = 0

    def publish_cert(self) -> int:
        """Write a new serving cert from the same CA the way the kubelet updates a Secret volume: files
        in a fresh `..<version>` directory, then one atomic rename of the `..data` symlink (tls.crt and
        tls.key are symlinks through it). Returns the new certificate's serial."""
        self.versions += 1
        stage = self.cert_dir / f"..v{self.versions}"
        cert, _ = issue_serving_cert(self.ca, stage, ["127.0.0.1", PROBE_NAME], name="tls")
        swap = self.cert_dir / "..data_tmp"
        swap.symlink_to(stage.name)
        os.replace(swap, self.cert_dir / "..data")
        for name in ("tls.crt", "tls.key"):
            link = self.cert_dir / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        return serial_of(cert)

    def presented_serial(self) -> int:
        """The serial of the certificate a new TLS handshake gets, verified against the CA. Sends SNI
        `PROBE_NAME`, so the server side can tell these handshakes from the apiserver's (no SNI)."""
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        with (
            socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=PROBE_NAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def registered(port: int, ca: CertificateAuthority) -> list[dict[str, Any]]:
    """The shipped webhook configurations pointed at this process (what `zen-flow-dev webhooks` prints),
    for the tests' namespaces only."""
    configs = url_configurations(f"https://127.0.0.1:{port}", ca.cert_path.read_bytes())
    for config in configs:
        for hook in config["webhooks"]:
            hook["namespaceSelector"] = {"matchLabels": TEST_NAMESPACE_LABEL}
    return configs


def admin_kubectl(cluster: Any, cache_dir: Path) -> Kubectl:
    """The `kubectl` fixture's runner, for module-scoped fixtures (that fixture is per test)."""
    return kubectl_runner(
        find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig, cache_dir=cache_dir
    )


def unknown_dependency_flow(name: str, namespace: str) -> dict[str, Any]:
    return flow(name, namespace, [{"name": "a", "template": job()}, {"name": "b", "dependencies": ["zzz"]}])


@pytest.fixture(scope="module")
def webhook(
    cluster: Any, jobflow_crd: Any, tmp_path_factory: pytest.TempPathFactory, _kubectl_cache_dir: Path
) -> Iterator[Webhook]:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("the apiserver must reach a webhook on this machine's 127.0.0.1 (a local cluster)")
    kubectl = admin_kubectl(cluster, _kubectl_cache_dir)
    workdir = tmp_path_factory.mktemp("webhook")
    cert_dir = workdir / "certs"
    cert_dir.mkdir()
    user = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    loop = LoopThread()
    # Who may decide Manual steps: asked of this apiserver with the admin's client, as the controller
    # asks with its own (the admin may create LocalSubjectAccessReviews).
    kube = loop.run(_client(cluster.kubeconfig))
    # The templates a flow names, read with the same client, as the controller's webhook reads them.
    server = WebhookServer(
        cert_dir,
        reload_interval=RELOAD_INTERVAL,
        authorize=ApprovalAuthorizer(AccessReviews(kube)),
        templates=FlowTemplateClient(kube),
    )
    hook = Webhook(server, cert_dir, create_ca(workdir / "ca"), user)
    hook.publish_cert()
    probe_namespace = f"zf-admission-{secrets.token_hex(4)}"
    try:
        loop.run(hook.server.start("127.0.0.1", 0))
        assert hook.server.not_ready_reason() is None
        for config in registered(hook.server.port, hook.ca):
            kubectl("apply", "-f", "-", input=json.dumps(config))
        namespace = {"metadata": {"name": probe_namespace, "labels": TEST_NAMESPACE_LABEL}}
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", **namespace}))
        wait_until_webhooks_answer(kubectl, probe_namespace, user)
        yield hook
    finally:
        for kind, path in CONFIGURATIONS.items():
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            kubectl("delete", kind, name, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", probe_namespace, "--wait=false", "--ignore-not-found", check=False)
        try:
            loop.run(hook.server.stop())
            loop.run(kube.close())
        finally:
            loop.close()


async def _client(kubeconfig: Path) -> KubeClient:
    return KubeClient(await load_config(str(kubeconfig)), ClientOptions(user_agent="zen-flow-tests"))


def wait_until_webhooks_answer(kubectl: Kubectl, namespace: str, user: str) -> None:
    """Registration is eventually consistent: dry-run requests until both webhooks act on them."""
    last: list[str] = []

    def both_called() -> bool:
        bad = json.dumps(unknown_dependency_flow("probe", namespace))
        denied = kubectl("create", "--dry-run=server", "-f", "-", input=bad, check=False)
        good = json.dumps(flow("probe", namespace, [{"name": "a", "template": job()}]))
        mutated = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=good, check=False)
        last[:] = [denied.stderr, mutated.stderr, mutated.stdout[:1500]]
        return (
            ZZZ in denied.stderr
            and mutated.returncode == 0
            and annotations_of(json.loads(mutated.stdout)).get(ANNOTATION_CREATED_BY) == user
        )

    try:
        wait_until(both_called, timeout=DEADLINE, what="the apiserver to call both webhooks")
    except WaitTimeout as exc:
        pytest.fail(f"{exc}; last kubectl errors: {last}")


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("annotations") or {}
    return found


def apply(kubectl: Kubectl, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", input=json.dumps(body), check=False)


def get_flow(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(kubectl("get", "jobflow", name, "-n", namespace, "-o", "json").stdout)
    return got


def field_errors(stderr: str, name: str) -> list[str]:
    """What kubectl prints for an Invalid JobFlow: a heading with one error, or one `* ` line each."""
    heading = f'The JobFlow "{name}" is invalid: '
    assert stderr.startswith(heading), stderr
    lines = stderr[len(heading) :].strip().splitlines()
    return lines if len(lines) == 1 else [line.removeprefix("* ") for line in lines]


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "spec", "error"),
    [
        pytest.param(
            [{"name": "a", "template": job()}, {"name": "b", "template": job(), "dependencies": ["zzz"]}],
            {},
            'spec.steps[1].dependencies[0]: Not found: "zzz"',
            id="unknown-dependency",
        ),
        pytest.param(
            [
                {"name": "a", "template": job(), "dependencies": ["c"]},
                {"name": "b", "template": job(), "dependencies": ["a"]},
                {"name": "c", "template": job(), "dependencies": ["b"]},
            ],
            {},
            'spec.steps[0].dependencies: Invalid value: "a -> c -> b -> a": the dependencies form a cycle',
            id="cycle",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "when": "steps.a.phase == "}],
            {},
            'spec.steps[0].when: Invalid value: "steps.a.phase == ": does not compile',
            id="when-does-not-compile",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {
                    "name": "b",
                    "template": job(),
                    "dependencies": ["a"],
                    "inputs": {"parameters": [{"name": "p", "valueFrom": {"jsonPath": "nope:$.status"}}]},
                },
            ],
            {},
            'spec.steps[1].inputs.parameters[0].valueFrom.jsonPath: Not found: "nope:$.status"',
            id="jsonpath-to-unknown-step",
        ),
        pytest.param(
            [{"name": "a", "template": {**job(), "apiVersion": "batch/v2"}}],
            {},
            'spec.steps[0].template.apiVersion: Unsupported value: "batch/v2"',
            id="template-not-a-batch-v1-job",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "resourceTemplates": {
                    "configMapTemplates": [
                        {"metadata": {"name": "cache", "labels": {"workflow.kube-zen.io/memo-cache": "true"}}}
                    ]
                }
            },
            "spec.resourceTemplates.configMapTemplates[0].metadata.labels[workflow.kube-zen.io/memo-cache]: "
            "Forbidden: a key of zen-flow's own",
            id="resource-template-with-zen-flows-own-label",
        ),
    ],
)
def test_kubectl_apply_of_an_invalid_flow_is_refused_with_the_field_error(
    webhook: Webhook,
    kubectl: Kubectl,
    namespace: str,
    steps: list[dict[str, Any]],
    spec: dict[str, Any],
    error: str,
) -> None:
    done = apply(kubectl, flow("bad", namespace, steps, **spec))
    assert done.returncode != 0
    [printed] = field_errors(done.stderr, "bad")
    assert printed.startswith(error)
    assert kubectl("get", "jobflow", "bad", "-n", namespace, check=False).returncode != 0


async def test_every_error_of_a_flow_is_reported_at_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str, api_client: Any
) -> None:
    steps = [
        {"name": "a", "template": job(), "dependencies": ["b"]},
        {"name": "b", "template": job(), "dependencies": ["a"]},
        {"name": "c", "template": job(), "dependencies": ["zzz"], "when": "=="},
    ]
    body = flow("many", namespace, steps)
    done = apply(kubectl, body)
    assert done.returncode != 0
    printed = field_errors(done.stderr, "many")
    expected = [
        'spec.steps[0].dependencies: Invalid value: "a -> b -> a"',
        'spec.steps[2].dependencies[0]: Not found: "zzz"',
        'spec.steps[2].when: Invalid value: "==": does not compile',
    ]
    assert len(printed) == len(expected)
    for start in expected:
        assert any(line.startswith(start) for line in printed), (start, printed)

    # What API clients get: the webhook named in the message, and one cause per error.
    objects = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as raised:
        await objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert raised.value.status == 422
    status = json.loads(raised.value.body or "{}")
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'{DENIED}: JobFlow "many" is invalid:')
    assert status["details"]["kind"] == "JobFlow"
    assert status["details"]["name"] == "many"
    assert [f"{c['field']}: {c['message']}" for c in status["details"]["causes"]] == printed


def test_an_update_is_validated_too(webhook: Webhook, kubectl: Kubectl, namespace: str) -> None:
    body = flow("upd", namespace, [{"name": "a", "template": job()}, {"name": "b", "template": job()}])
    assert apply(kubectl, body).returncode == 0
    body["spec"]["steps"][1]["dependencies"] = ["zzz"]
    done = apply(kubectl, body)
    assert done.returncode != 0
    assert field_errors(done.stderr, "upd") == [ZZZ]
    assert "dependencies" not in get_flow(kubectl, namespace, "upd")["spec"]["steps"][1]


def test_steps_cannot_change_once_the_flow_started(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    body = flow("started", namespace, [{"name": "a", "template": job("echo 1")}])
    assert apply(kubectl, body).returncode == 0
    body["spec"]["steps"][0]["template"] = job("echo 2")
    assert apply(kubectl, body).returncode == 0  # not started: editable
    status = json.dumps({"status": {"phase": "Running", "startTime": "2026-01-02T03:04:05Z"}})
    kubectl(
        "patch", "jobflow", "started", "-n", namespace, "--subresource=status", "--type=merge", "-p", status
    )
    body["spec"]["steps"][0]["template"] = job("echo 3")
    done = apply(kubectl, body)
    assert done.returncode != 0
    # The admission policy that ships with the CRD (config/crd/admission-policies.yaml) runs before the
    # validating webhook and refuses first; the webhook's own check ("spec.steps: Forbidden: steps cannot
    # change after the flow started") stands behind it for a cluster without that policy.
    assert "spec.steps cannot change once the flow has started" in done.stderr
    assert get_flow(kubectl, namespace, "started")["spec"]["steps"][0]["template"] == job("echo 2")
    # Suspending stays possible, and goes through both webhooks.
    kubectl("patch", "jobflow", "started", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    # The scheduled time its Jobs render as {{.JobFlow.ScheduledTime}} is refused by the policy too (added
    # here), so a cluster without the webhook cannot mis-key a memoized result; other annotations are not.
    night = "workflow.kube-zen.io/scheduled-time=2026-12-08T02:30:00Z"
    done = kubectl("annotate", "jobflow", "started", "-n", namespace, night, check=False)
    assert done.returncode != 0
    assert (
        "metadata.annotations[workflow.kube-zen.io/scheduled-time] cannot change once the flow has started"
        in done.stderr
    )
    kubectl("annotate", "jobflow", "started", "-n", namespace, "note=late")
    assert "workflow.kube-zen.io/scheduled-time" not in annotations_of(
        get_flow(kubectl, namespace, "started")
    )


def test_flows_created_from_one_manifest_with_generate_name_have_their_spec_checked_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # The validating webhook sees the name the apiserver generated, a new one for every flow, and a
    # pipeline that creates flows from one manifest must not pay a 500-step spec's checks each time.
    body = flow("unused", namespace, [{"name": "a", "template": job()}, {"name": "b", "template": job()}])
    body["metadata"] = {"generateName": "nightly-", "namespace": namespace}
    # The apiserver is real; the webhook runs in this process, so its own work is counted in place: a
    # memory of its own for this test, and a spy that lets every check run unchanged.
    with (
        patch.object(review_module, "ACCEPTED", AcceptedSpecs()),
        patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec,
    ):
        created = [
            json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body)).stdout)
            for _ in range(3)
        ]
    assert len({c["metadata"]["name"] for c in created}) == 3
    assert check_spec.call_count == 1


def test_flows_submitted_with_other_argument_values_have_their_spec_checked_once_and_each_value_checked(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # `zen-flow submit flow.yaml -p env=...`: the same spec with other values; only the values are new.
    body = flow("unused", namespace, [{"name": "a", "template": job()}])
    body["metadata"] = {"generateName": "deploy-", "namespace": namespace}
    env = {"name": "env", "value": "dev", "enum": ["dev", "prod"]}
    with (
        patch.object(review_module, "ACCEPTED", AcceptedSpecs()),
        patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec,
    ):
        outcomes = []
        for value in ("dev", "prod", "staging"):
            body["spec"]["arguments"] = {"parameters": [{**env, "value": value}]}
            outcomes.append(kubectl("create", "-f", "-", input=json.dumps(body), check=False))
    assert [done.returncode for done in outcomes[:2]] == [0, 0]
    assert check_spec.call_count == 1
    assert outcomes[2].returncode != 0
    assert 'spec.arguments.parameters[0].value: Unsupported value: "staging"' in outcomes[2].stderr


# --- mutation -------------------------------------------------------------------------------------------


def test_a_created_flow_gets_its_defaults_and_its_creator(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    body = flow(
        "defaults", namespace, [{"name": "a", "template": job()}], executionPolicy={"backoffLimit": 2}
    )
    body["metadata"]["annotations"] = {
        ANNOTATION_CREATED_BY: "mallory",  # forged: overwritten
        ANNOTATION_APPROVED_BY_PREFIX + "a": "mallory",  # forged: dropped
    }
    done = apply(kubectl, body)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "defaults")
    assert stored["spec"]["executionPolicy"] == {**DEFAULT_POLICY, "backoffLimit": 2}
    assert annotations_of(stored)[ANNOTATION_CREATED_BY] == webhook.user
    assert ANNOTATION_APPROVED_BY_PREFIX + "a" not in annotations_of(stored)

    # An UPDATE cannot rewrite who created the flow either.
    kubectl(
        "annotate", "jobflow", "defaults", "-n", namespace, "--overwrite", f"{ANNOTATION_CREATED_BY}=mallory"
    )
    assert annotations_of(get_flow(kubectl, namespace, "defaults"))[ANNOTATION_CREATED_BY] == webhook.user


def test_an_approval_records_the_approver(webhook: Webhook, kubectl: Kubectl, namespace: str) -> None:
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual"},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    done = kubectl("create", "-f", "-", input=json.dumps(flow("gated", namespace, steps)))
    assert done.returncode == 0

    kubectl("annotate", "jobflow", "gated", "-n", namespace, f"{APPROVE_PREFIX}gate=true")
    stored = annotations_of(get_flow(kubectl, namespace, "gated"))
    assert stored[APPROVE_PREFIX + "gate"] == "true"
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == webhook.user

    typo = kubectl("annotate", "jobflow", "gated", "-n", namespace, f"{APPROVE_PREFIX}gaet=true", check=False)
    assert typo.returncode != 0
    [printed] = field_errors(typo.stderr, "gated")
    assert printed.startswith(f'metadata.annotations[{APPROVE_PREFIX}gaet]: Not found: "gaet"')


def test_only_a_user_with_the_approve_verb_decides_a_manual_step(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # bob may read and patch flows (so he may write the annotation) but not `approve` them: the validating
    # webhook asks this apiserver's RBAC and refuses his decision; once a Role grants the verb, it is his.
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual"},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    kubectl("create", "-f", "-", input=json.dumps(flow("guarded", namespace, steps)))
    rule = {"apiGroups": ["workflow.kube-zen.io"], "resources": ["jobflows"], "verbs": ["get", "patch"]}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "flow-deciders", "namespace": namespace}, "rules": [rule]}  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "flow-deciders", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flow-deciders"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
    }
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )
    decide = ("annotate", "jobflow", "guarded", "-n", namespace, f"{APPROVE_PREFIX}gate=true", "--as=bob")

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = kubectl(*decide, check=False)
        return done if 'needs the verb "approve"' in done.stderr else None  # once bob's patch is allowed

    said = wait_until(refused, timeout=DEADLINE, what="bob's decision refused for want of approve")
    assert "user 'bob' may not decide step gate of jobflow" in said.stderr
    assert APPROVE_PREFIX + "gate" not in annotations_of(get_flow(kubectl, namespace, "guarded"))

    rule["verbs"].append("approve")
    kubectl("apply", "-f", "-", input=json.dumps(role))
    wait_until(
        lambda: kubectl(*decide, check=False).returncode == 0, timeout=DEADLINE, what="bob's decision taken"
    )
    stored = annotations_of(get_flow(kubectl, namespace, "guarded"))
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == "bob"


def test_a_gate_with_approvers_counts_each_named_approver_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Everyone here has RBAC's approve; the gate itself names alice and the group release-managers and
    # needs two of them: carol is refused by the gate's list, alice and bob (by his group) are counted.
    approval = {
        "approvers": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "release-managers"}],
        "required": 2,
    }
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual", "approval": approval},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    kubectl("create", "-f", "-", input=json.dumps(flow("counted", namespace, steps)))
    rule = {
        "apiGroups": ["workflow.kube-zen.io"],
        "resources": ["jobflows"],
        "verbs": ["get", "patch", "approve"],
    }
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "gate-deciders", "namespace": namespace}, "rules": [rule]}  # fmt: skip
    subjects = [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
        for user in ("alice", "bob", "carol")
    ]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "gate-deciders", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": subjects,
    }
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )

    def decide(value: str, *who: str) -> subprocess.CompletedProcess[str]:
        key = f"{APPROVE_PREFIX}gate={value}"
        return kubectl(
            "annotate", "--overwrite", "jobflow", "counted", "-n", namespace, key, *who, check=False
        )

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = decide("true-1", "--as=carol")
        return done if "only its approvers may" in done.stderr else None  # once carol's patch is allowed

    said = wait_until(refused, timeout=DEADLINE, what="carol's decision refused by the gate's approvers")
    assert "user 'carol' may not decide step gate of jobflow" in said.stderr
    assert "(User alice, Group release-managers; spec.steps[].approval.approvers)" in said.stderr
    assert APPROVE_PREFIX + "gate" not in annotations_of(get_flow(kubectl, namespace, "counted"))

    done = decide("true-1", "--as=alice")
    assert done.returncode == 0, done.stderr
    assert (
        annotations_of(get_flow(kubectl, namespace, "counted"))[ANNOTATION_APPROVED_BY_PREFIX + "gate"]
        == "alice"
    )
    # The same value again is no change: bob must write a new one to be counted.
    done = decide("true-2", "--as=bob", "--as-group=release-managers")
    assert done.returncode == 0, done.stderr
    decide("true-3", "--as=alice")  # alice again: counted once
    stored = annotations_of(get_flow(kubectl, namespace, "counted"))
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == "alice,bob"
    # Nobody writes the record by hand.
    kubectl(
        "annotate", "--overwrite", "jobflow", "counted", "-n", namespace,
        f"{ANNOTATION_APPROVED_BY_PREFIX}gate=alice,bob,mallory",
    )  # fmt: skip
    assert (
        annotations_of(get_flow(kubectl, namespace, "counted"))[ANNOTATION_APPROVED_BY_PREFIX + "gate"]
        == "alice,bob"
    )
    # Taking the approvals back is left to RBAC: carol, not named, may (it cannot open the gate).
    done = kubectl("annotate", "jobflow", "counted", "-n", namespace, f"{APPROVE_PREFIX}gate-", "--as=carol")
    assert done.returncode == 0, done.stderr
    stored = annotations_of(get_flow(kubectl, namespace, "counted"))
    assert APPROVE_PREFIX + "gate" not in stored
    assert ANNOTATION_APPROVED_BY_PREFIX + "gate" not in stored


@pytest.mark.parametrize("path", all_flow_params())
def test_the_examples_are_admitted(webhook: Webhook, kubectl: Kubectl, namespace: str, path: Path) -> None:
    example = load(path)
    example["metadata"]["namespace"] = namespace
    done = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(example), check=False)
    assert done.returncode == 0, f"{path.name}: {done.stderr}"
    created = json.loads(done.stdout)
    assert annotations_of(created)[ANNOTATION_CREATED_BY] == webhook.user
    assert created["spec"]["steps"] == example["spec"]["steps"]


# --- JobFlowTemplates -----------------------------------------------------------------------------------

TEMPLATES = REPO / "examples" / "templates"
CLUSTER_TEMPLATES = REPO / "examples" / "cluster-templates"


def test_a_flow_naming_a_template_is_stored_expanded_and_applied_again_is_refused(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    [template] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    made = flow("made", namespace, [])
    made["spec"] = {
        "templateRef": {"name": template["metadata"]["name"]},
        "arguments": {"parameters": [{"name": "ref", "value": "v2"}]},
    }
    done = apply(kubectl, made)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "made")
    assert stored["spec"]["steps"] == template["spec"]["steps"]
    assert "templateRef" not in stored["spec"]
    assert stored["metadata"]["labels"][LABEL_TEMPLATE] == template["metadata"]["name"]
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("ref", "v2"),
        ("suite", "unit"),
    ]
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 2  # the template's, over the default
    # The same manifest applied again is refused, not expanded again: client-side and server-side apply
    # both give templateRef back beside the steps, and the CRD's rule refuses both (before the webhook).
    both = "spec.templateRef naming a JobFlowTemplate to take them from, not both"
    again = apply(kubectl, made)
    assert again.returncode != 0
    assert both in again.stderr
    server_side = kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(made), check=False
    )
    assert server_side.returncode != 0
    assert both in server_side.stderr
    assert get_flow(kubectl, namespace, "made")["spec"] == stored["spec"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param(
            {
                "templateRef": {"name": "build-and-test"},
                "arguments": {"parameters": [{"name": "colour", "value": "red"}]},
            },
            'spec.arguments.parameters[0].name: Not found: "colour": JobFlowTemplate "build-and-test" '
            "declares no such argument (it declares: ref, suite)",
            id="undeclared-argument",
        ),
        pytest.param(
            {"templateRef": {"name": "ghost"}},
            'spec.templateRef.name: Not found: "ghost": JobFlowTemplate "ghost" not found in namespace',
            id="missing-template",
        ),
        pytest.param(
            {"templateRef": {"name": "ghost", "clusterScope": True}},
            'spec.templateRef.name: Not found: "ghost": ClusterJobFlowTemplate "ghost" not found',
            id="missing-cluster-template",
        ),
        pytest.param(  # refused before any read: `..` in the read's path was the API group's listing
            {"templateRef": {"name": "..", "clusterScope": True}},
            'spec.templateRef.name: Invalid value: "..": a lowercase RFC 1123 subdomain',
            id="not-a-template-name",
        ),
    ],
)
def test_a_flow_the_template_cannot_make_is_refused_naming_the_field(
    webhook: Webhook, kubectl: Kubectl, namespace: str, spec: dict[str, Any], error: str
) -> None:
    [template] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    bad = flow("bad", namespace, [])
    bad["spec"] = spec
    done = apply(kubectl, bad)
    assert done.returncode != 0
    [printed] = field_errors(done.stderr, "bad")
    assert printed.startswith(error), printed


CHILD_FLOWS = REPO / "examples" / "child-flows"


def test_a_flow_step_whose_template_is_not_there_yet_is_refused_and_applying_again_creates_it(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # The flow before its template (the wrong order of `kubectl apply -f dir/`): refused naming the step.
    release = load(CHILD_FLOWS / "b-release.yaml")
    release["metadata"]["namespace"] = namespace
    done = apply(kubectl, release)
    assert done.returncode != 0
    assert field_errors(done.stderr, "release") == [
        f'spec.steps[0].flow.templateRef.name: Not found: "package": JobFlowTemplate "package" not found in '
        f'namespace "{namespace}"'
    ]
    # A template whose Flow step names a template that is not there is admitted, with a warning.
    library = load(CHILD_FLOWS / "a-package.yaml")
    library["metadata"]["name"] = "library"
    library["spec"]["steps"] = release["spec"]["steps"][:1]
    warned = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(library), check=False)
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: spec.steps[0].flow.templateRef.name: Not found: "package"' in warned.stderr
    # Applying the folder again (template first, in name order) creates both; a wrong argument is refused.
    applied = kubectl("apply", "-n", namespace, "-f", str(CHILD_FLOWS), check=False)
    assert applied.returncode == 0, applied.stderr
    assert get_flow(kubectl, namespace, "release")["spec"]["steps"] == release["spec"]["steps"]
    wrong = copy.deepcopy(release)
    wrong["metadata"]["name"] = "wrong"
    wrong["spec"]["steps"][0]["flow"]["arguments"]["parameters"][0]["name"] = "colour"
    refused = apply(kubectl, wrong)
    assert refused.returncode != 0
    assert field_errors(refused.stderr, "wrong") == [
        'spec.steps[0].flow.arguments.parameters[0].name: Not found: "colour": JobFlowTemplate "package" '
        "declares no such argument (it declares: version)"
    ]
    # A run the controller makes of a CronJobFlow (its controller owner) is admitted, with the finding as a
    # warning: refusing it would skip the whole run.
    run = copy.deepcopy(wrong)
    run["metadata"]["name"] = "nightly-29000000"
    run["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "CronJobFlow",
            "name": "nightly",
            "uid": "c0a3d0a8-0000-4000-8000-000000000009",
            "controller": True,
        }
    ]
    admitted = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(run), check=False)
    assert admitted.returncode == 0, admitted.stderr
    assert 'Warning: spec.steps[0].flow.arguments.parameters[0].name: Not found: "colour"' in admitted.stderr
    assert 'admitted as a run of CronJobFlow "nightly"' in admitted.stderr


@pytest.fixture
def cluster_template(kubectl: Kubectl) -> Iterator[dict[str, Any]]:
    """The example ClusterJobFlowTemplate under a name of this test's (cluster-scoped: shared by every
    test of the apiserver), deleted afterwards."""
    [template] = [
        d
        for d in map(load, sorted(CLUSTER_TEMPLATES.glob("*.yaml")))
        if d["kind"] == "ClusterJobFlowTemplate"
    ]
    template["metadata"]["name"] = f"scan-{secrets.token_hex(4)}"
    yield template
    kubectl("delete", "cjft", template["metadata"]["name"], "--ignore-not-found", check=False)


def test_a_flow_naming_a_cluster_template_is_stored_expanded_and_labelled(
    webhook: Webhook, kubectl: Kubectl, namespace: str, cluster_template: dict[str, Any]
) -> None:
    name = cluster_template["metadata"]["name"]
    kubectl("apply", "-f", "-", input=json.dumps(cluster_template))
    assert name in kubectl("get", "cjft").stdout  # the short name, no namespace
    # A JobFlowTemplate of the same name in the flow's namespace is not the one clusterScope names.
    [namespaced] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    namespaced["metadata"]["name"] = name
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(namespaced))
    made = flow("made", namespace, [])
    made["spec"] = {
        "templateRef": {"name": name, "clusterScope": True},
        "arguments": {"parameters": [{"name": "image", "value": "nginx:1.27"}]},
    }
    done = apply(kubectl, made)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "made")
    assert stored["spec"]["steps"] == cluster_template["spec"]["steps"]
    assert "templateRef" not in stored["spec"]
    labels = stored["metadata"]["labels"]
    assert (labels[LABEL_TEMPLATE], labels[LABEL_CLUSTER_TEMPLATE]) == (name, "true")
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("image", "nginx:1.27"),
        ("severity", "HIGH"),
    ]
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 1  # the cluster template's
    listed = kubectl(
        "get",
        "jf",
        "-n",
        namespace,
        "-l",
        f"{LABEL_TEMPLATE}={name},{LABEL_CLUSTER_TEMPLATE}=true",
        "-o",
        "name",
    )
    assert listed.stdout.split() == ["jobflow.workflow.kube-zen.io/made"]


def test_a_cluster_template_is_checked_with_the_jobflow_rules_when_written(
    webhook: Webhook, kubectl: Kubectl, cluster_template: dict[str, Any]
) -> None:
    cluster_template["spec"]["steps"][1]["dependencies"] = ["ghost"]
    done = kubectl("apply", "-f", "-", input=json.dumps(cluster_template), check=False)
    assert done.returncode != 0
    assert 'spec.steps[1].dependencies[0]: Not found: "ghost"' in done.stderr
    assert "ClusterJobFlowTemplate" in done.stderr


# --- certificate rotation -------------------------------------------------------------------------------


class FlowCreator:
    """Creates valid flows with kubectl, one after another in a thread, until stopped."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self._kubectl = kubectl
        self._namespace = namespace
        self.done: list[subprocess.CompletedProcess[str]] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow-creator", daemon=True)
        self._thread.start()

    def create(self, name: str) -> subprocess.CompletedProcess[str]:
        body = json.dumps(flow(name, self._namespace, [{"name": "a", "template": job()}]))
        return self._kubectl("create", "-o", "json", "-f", "-", input=body, check=False)

    def _run(self) -> None:
        while not self._stopping.is_set():
            done = self.create(f"loop-{len(self.done)}")
            with self._changed:
                self.done.append(done)
                self._changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.done) >= count, timeout=DEADLINE):
                raise AssertionError(f"only {len(self.done)} of {count} creations finished in time")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(DEADLINE)


def test_a_certificate_rotated_on_disk_is_served_without_restart(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Record the certificate each of the apiserver's TLS handshakes gets: the listener's SNI callback
    # runs for every handshake, and the apiserver's are the ones without a server name.
    context = webhook.server.certs.listening_context()
    select: Any = context.sni_callback  # typeshed types the callback's server_name as str
    assert select is not None
    apiserver_handshakes: list[int] = []

    def recording(conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> Any:
        result = select(conn, server_name, ctx)
        current = webhook.server.certs.current
        if server_name is None and current is not None:
            apiserver_handshakes.append(current.serial)
        return result

    listener = webhook.server.port
    old = webhook.presented_serial()
    context.sni_callback = recording
    creator = FlowCreator(kubectl, namespace)
    burst: list[subprocess.CompletedProcess[str]] = []
    try:
        creator.wait_for(1)  # admission works before the rotation
        new = webhook.publish_cert()
        assert new != old
        # While the background creations go on, every probe is a new handshake.
        wait_until(
            lambda: webhook.presented_serial() == new,
            timeout=DEADLINE,
            what="the new certificate",
            interval=0.02,
        )

        # The apiserver keeps its connections to the webhook alive, and those keep the certificate
        # they negotiated; concurrent requests make it open more, whose handshakes get the new one.
        def apiserver_connected_anew() -> bool:
            with ThreadPoolExecutor(4) as pool:
                burst.extend(pool.map(creator.create, [f"burst-{len(burst) + i}" for i in range(4)]))
            return new in apiserver_handshakes

        wait_until(apiserver_connected_anew, timeout=DEADLINE, what="an apiserver handshake", interval=0)
        creator.wait_for(len(creator.done) + 1)  # and it keeps working after
    finally:
        creator.stop()
        context.sni_callback = select

    for done in [*creator.done, *burst]:
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)  # every one went through the mutating webhook
        assert annotations_of(created)[ANNOTATION_CREATED_BY] == webhook.user, created["metadata"]["name"]
    assert webhook.server.port == listener  # the same listener: no restart
    assert webhook.server.certs.current is not None
    assert webhook.server.certs.current.serial == new
    assert webhook.server.certs.last_error is None


# --- offline validation ---------------------------------------------------------------------------------


def test_make_validate_examples_checks_the_examples_and_the_original_forms() -> None:
    done = subprocess.run(
        ["make", "-s", "validate-examples"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "JobFlow(s)" not in done.stdout  # errors only on stdout; the summary is on stderr
    kinds = [
        yaml.safe_load(p.read_text())["kind"]
        for folder in ("templates", "cluster-templates", "child-flows")
        for p in (REPO / "examples" / folder).glob("*.yaml")
    ]
    expected = len(project_examples()) + len(original_forms()) + len(upstream_examples())
    expected += kinds.count("JobFlow")  # beside the templates they use (made from one, or running one)
    scheduled = len(list((REPO / "examples" / "scheduled").glob("*.yaml")))  # CronJobFlows
    templates, cluster_templates = kinds.count("JobFlowTemplate"), kinds.count("ClusterJobFlowTemplate")
    summary = (
        f"{expected} JobFlow(s), {scheduled} CronJobFlow(s), {templates} JobFlowTemplate(s) and "
        f"{cluster_templates} ClusterJobFlowTemplate(s) checked"
    )
    assert f"{summary}, 0 invalid" in done.stderr


def test_kubectl_prints_the_webhooks_warning_for_an_artifact_stored_nowhere(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Accepted (the original took it), but kept nowhere: the user hears it where they applied it.
    artifact = {"name": "report", "path": "/out/report.txt"}
    body = flow(
        "nowhere", namespace, [{"name": "a", "template": job(), "outputs": {"artifacts": [artifact]}}]
    )
    done = apply(kubectl, body)
    assert done.returncode == 0, done.stderr
    assert "Warning: spec.steps[0].outputs.artifacts[0]: no s3, so report is stored nowhere" in done.stderr, (
        done.stderr
    )
    labelled = kubectl("label", "jobflow", "nowhere", "-n", namespace, "team=a", check=False)
    assert labelled.returncode == 0
    assert "Warning" not in labelled.stderr  # the spec did not change: said once
