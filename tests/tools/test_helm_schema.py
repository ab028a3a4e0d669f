"""What the chart accepts as values (values.schema.json, checked by the real helm): a misspelt key or a
value of the wrong type or range fails the install naming it, where helm would otherwise ignore it and
install the defaults; the values an operator sets for a production install still render. And the image
pinned by digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helm_rig import RenderError, deployment, render

from deploy_manifests import container, settings_of


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicas": 3}, r"'replicas' not allowed"),
        ({"controller": {"worker": 16}}, r"/controller': additional properties 'worker'"),
        ({"webhook": {"certmanager": {"enabled": False}}}, r"/webhook': additional properties 'certmanager'"),
        ({"leaderElection": {"enable": False}}, r"/leaderElection': additional properties 'enable'"),
        ({"image": {"digests": "sha256:" + "a" * 64}}, r"/image': additional properties 'digests'"),
        # The apiserver allows 1 to 30 s: the webhook configuration would be refused mid-install.
        ({"webhook": {"timeoutSeconds": 60}}, r"/webhook/timeoutSeconds"),
        # The controller refuses these at start-up: the pods would crash-loop.
        ({"webhook": {"failurePolicy": "fail"}}, r"/webhook/failurePolicy"),
        ({"controller": {"logFormat": "JSON"}}, r"/controller/logFormat"),
        ({"controller": {"stepEvents": "All"}}, r"/controller/stepEvents"),
        ({"controller": {"workers": 0}}, r"/controller/workers"),
        ({"replicaCount": "2"}, r"/replicaCount"),
        ({"watchNamespaces": ["Team_A"]}, r"/watchNamespaces/0"),
        ({"image": {"digest": "sha256:abc"}}, r"/image/digest"),
    ],
)
def test_a_misspelt_or_invalid_value_is_refused_naming_it(
    helm: str, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(RenderError, match=named):
        render(helm, tmp_path, values)


def test_the_values_of_a_production_install_render(helm: str, tmp_path: Path) -> None:
    # Kubernetes objects passed through are the apiserver's to check: any field of theirs is accepted.
    values: dict[str, Any] = {
        "global": {"imageRegistry": "mirror.example"},  # set by a parent chart
        "replicaCount": 3,
        "imagePullSecrets": [{"name": "regcred"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"node-role.kubernetes.io/infra": ""},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "podSecurityContext": {"runAsNonRoot": True, "fsGroupChangePolicy": "OnRootMismatch"},
        "podDisruptionBudget": {"minAvailable": "50%"},
        "controller": {
            "extraArgs": ["--expression-workers=4"],
            "extraEnv": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "logLevel": "debug",
            # What `--set controller.qps=0.5` gives: helm parses integers only, a fraction stays a string.
            "qps": "0.5",
        },
        "webhook": {"certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}},
        "leaderElection": {"shards": 3},
        "archive": {"logs": True},
        "vpa": {"enabled": True, "updateMode": "Initial"},
    }
    dep = deployment(render(helm, tmp_path, values))
    assert settings_of(dep).qps == 0.5
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]


def _image_and_artifact_image(docs: list[dict[str, Any]]) -> tuple[str, str]:
    controller = container(deployment(docs))
    env = {e["name"]: e.get("value") for e in controller["env"]}
    return controller["image"], env["ZEN_FLOW_ARTIFACT_IMAGE"]


def test_an_image_digest_pins_the_controller_and_the_artifact_steps(helm: str, tmp_path: Path) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    pinned = render(helm, tmp_path, {"image": {"digest": digest}})
    # By digest alone: the tag (appVersion) would be ignored by the runtime anyway, and a mirror that
    # keeps digests only has no tags to resolve.
    assert _image_and_artifact_image(pinned) == (f"ghcr.io/kube-zen/zen-flow@{digest}",) * 2
    # A tag given as well is kept for the reader; the digest decides what is pulled.
    both = render(helm, tmp_path, {"image": {"tag": "0.1.0", "digest": digest}})
    assert _image_and_artifact_image(both) == (f"ghcr.io/kube-zen/zen-flow:0.1.0@{digest}",) * 2
    assert _image_and_artifact_image(render(helm, tmp_path)) == ("ghcr.io/kube-zen/zen-flow:0.1.0",) * 2
