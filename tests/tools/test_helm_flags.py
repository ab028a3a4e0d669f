"""The Helm chart's values that become the controller's flags, rendered by the real helm (helm_rig): the
instance id, controller settings, CloudEvents, the flow archive and its logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helm_rig import RenderError, deployment, render

from deploy_manifests import container, find, objects, settings_of
from zen_flow import config
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.cli import build_parser
from zen_flow_dev.testing.rbac import rules_allow


@pytest.mark.parametrize("number", [0, 1234567, True])
def test_an_instance_id_that_is_no_string_is_refused_naming_the_field(
    helm: str, tmp_path: Path, number: object
) -> None:
    # Unquoted, 0 would drop the flag (two releases running the same unlabelled flows, each leading on a
    # Lease of its own) and 1234567 would become --instance-id=1.234567e+06.
    with pytest.raises(RenderError, match=r"controller\.instanceId must be a string"):
        render(helm, tmp_path, {"controller": {"instanceId": number}})


@pytest.mark.parametrize("quoted", ["0", "1234567", "team-a.2"])
def test_a_quoted_instance_id_becomes_the_flag_verbatim(helm: str, tmp_path: Path, quoted: str) -> None:
    docs = render(helm, tmp_path, {"controller": {"instanceId": quoted}})
    assert settings_of(deployment(docs)).instance_id == quoted


def test_controller_values_become_flags(helm: str, tmp_path: Path) -> None:
    values = {
        "controller": {
            "workers": 3,
            "startWorkers": 2,
            "qps": 20,
            "burst": 40,
            "resyncSeconds": 600,
            "progressDeadlineSeconds": 900,
            "logLevel": "debug",
            "instanceId": "team-a",
        },
        "leaderElection": {"leaseName": "custom-lease"},
    }
    docs = render(helm, tmp_path, values)
    settings = settings_of(deployment(docs))
    assert (settings.workers, settings.qps, settings.burst) == (3, 20.0, 40)
    assert settings.start_workers == 2
    assert settings.resync_seconds == 600.0
    assert settings.progress_deadline_seconds == 900.0
    assert settings.log_level == "debug"
    assert settings.instance_id == "team-a"
    assert settings.lease_name == "custom-lease"
    assert rules_allow(find(docs, "Role")["rules"], "coordination.k8s.io", "leases", "get", "custom-lease")


def test_cloudevents_values_become_flags_and_the_ca_a_mount(helm: str, tmp_path: Path) -> None:
    default = deployment(render(helm, tmp_path, {}))["spec"]["template"]["spec"]
    assert not [a for a in default["containers"][0]["args"] if "cloudevents" in a]  # no sink, no flags
    assert "ZEN_FLOW_CLOUDEVENTS_SINK" not in {e["name"] for e in default["containers"][0]["env"]}
    sink = "https://hooks.example/ce?token=a&b=c"
    values = {"controller": {"cloudEvents": {"sink": sink, "timeoutSeconds": 2}}}
    settings = settings_of(deployment(render(helm, tmp_path, values)))
    assert (settings.cloudevents_sink, settings.cloudevents_timeout) == (sink, 2.0)
    assert settings.cloudevents_ca_file == ""
    values["controller"]["cloudEvents"]["caConfigMap"] = "hooks-ca"
    pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
    # Not through settings_of: the file it names exists only in the pod.
    assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in pod["containers"][0]["args"]
    assert {v["name"]: v for v in pod["volumes"]}["cloudevents-ca"]["configMap"] == {"name": "hooks-ca"}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["cloudevents-ca"]["mountPath"] == "/etc/zen-flow/cloudevents-ca"


def test_webhook_client_auth_becomes_the_flags_and_the_ca_a_mount(helm: str, tmp_path: Path) -> None:
    default = container(deployment(render(helm, tmp_path, {})))
    assert not [a for a in default["args"] if a.startswith("--webhook-client")]  # no mutual TLS by default
    values = {"webhook": {"clientAuth": {"caConfigMap": "apiserver-ca", "names": ["kube-apiserver", "a.b"]}}}
    dep = deployment(render(helm, tmp_path, values))
    pod = dep["spec"]["template"]["spec"]
    settings = settings_of(dep)  # a missing CA file is the server's to report (unready), not start-up's
    assert settings.webhook_client_ca == "/etc/zen-flow/webhook-client-ca/ca.crt"
    assert settings.webhook_client_names == ("kube-apiserver", "a.b")
    volume = {v["name"]: v for v in pod["volumes"]}["webhook-client-ca"]
    assert volume["configMap"] == {"name": "apiserver-ca", "optional": True}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["webhook-client-ca"]["mountPath"] == "/etc/zen-flow/webhook-client-ca"
    with pytest.raises(
        RenderError, match=r"webhook\.clientAuth\.names needs webhook\.clientAuth\.caConfigMap"
    ):
        render(helm, tmp_path, {"webhook": {"clientAuth": {"names": ["kube-apiserver"]}}})


def test_the_cloudevents_sink_from_a_secret_keeps_its_timeout_and_ca(helm: str, tmp_path: Path) -> None:
    ce = {"sinkSecret": {"name": "hook", "key": "endpoint"}, "timeoutSeconds": 2, "caConfigMap": "hooks-ca"}
    pod = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": ce}}))["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ZEN_FLOW_CLOUDEVENTS_SINK"]["valueFrom"] == {
        "secretKeyRef": {"name": "hook", "key": "endpoint"}
    }
    args = pod["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--cloudevents-sink")]  # the flag would win over the Secret
    assert "--cloudevents-timeout=2" in args
    assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in args
    assert {v["name"]: v for v in pod["volumes"]}["cloudevents-ca"]["configMap"] == {"name": "hooks-ca"}
    assert "cloudevents-ca" in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    # As the controller starts with it (the Secret's value stands in for the environment variable).
    settings = settings_of(deployment(render(helm, tmp_path, {"controller": {"cloudEvents": {
        "sinkSecret": {"name": "hook"}, "timeoutSeconds": 2}}})))  # fmt: skip
    assert settings.cloudevents_timeout == 2.0
    with pytest.raises(RenderError, match="set sink or sinkSecret, not both"):
        render(
            helm,
            tmp_path,
            {"controller": {"cloudEvents": {"sink": "http://h/", "sinkSecret": {"name": "x"}}}},
        )


def test_cloudevents_step_events_become_the_flag_with_a_sink_only(helm: str, tmp_path: Path) -> None:
    def args(cloud_events: dict[str, Any]) -> list[str]:
        pod = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": cloud_events}}))
        return list(pod["spec"]["template"]["spec"]["containers"][0]["args"])

    sink = "http://hooks.example/"
    off = deployment(
        render(helm, tmp_path, {"controller": {"cloudEvents": {"sink": sink, "stepEvents": False}}})
    )
    assert settings_of(off).cloudevents_step_events is False  # as the controller starts with it
    assert "--cloudevents-step-events=true" in args({"sink": sink})  # the default
    # A sink from a Secret takes it too; no sink, no flag (as the timeout).
    assert "--cloudevents-step-events=false" in args({"sinkSecret": {"name": "hook"}, "stepEvents": False})
    assert not [a for a in args({"sink": "", "stepEvents": False}) if "cloudevents" in a]
    # Quoted, "false" is a string, not a boolean: refused naming the value, not silently left out.
    with pytest.raises(RenderError, match=r"controller\.cloudEvents\.stepEvents must be true or false"):
        args({"sink": sink, "stepEvents": "false"})


def test_a_ca_without_a_sink_renders_nothing_the_controller_refuses(helm: str, tmp_path: Path) -> None:
    # An operator turns the sink off by clearing it, leaving caConfigMap and timeoutSeconds as they were:
    # the controller refuses a CA file without an https sink, so rendering it would crash-loop the pod.
    ce = {"sink": "", "timeoutSeconds": 2, "caConfigMap": "hooks-ca"}
    chart = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": ce}}))
    pod = chart["spec"]["template"]["spec"]
    assert not [a for a in pod["containers"][0]["args"] if "cloudevents" in a]
    assert "cloudevents-ca" not in {v["name"] for v in pod["volumes"]}
    assert "cloudevents-ca" not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert settings_of(chart).cloudevents_sink == ""  # starts: config.load raised before
    # A sink given another way (the environment, a flag of extraArgs) still gets its CA and timeout.
    for other in (
        {"extraEnv": [{"name": "ZEN_FLOW_CLOUDEVENTS_SINK", "value": "https://hooks.example/"}]},
        {"extraArgs": ["--cloudevents-sink=https://hooks.example/"]},
    ):
        values = {"controller": {"cloudEvents": ce, **other}}
        pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in args, other
        assert "--cloudevents-timeout=2" in args, other
        assert "cloudevents-ca" in {v["name"] for v in pod["volumes"]}, other


def test_archive_values_become_flags_and_the_keys_are_files_of_a_mounted_secret(
    helm: str, tmp_path: Path
) -> None:
    default = container(deployment(render(helm, tmp_path, {})))
    assert not [a for a in default["args"] if "archive" in a]  # off by default: no flags, no keys
    assert not [e for e in default["env"] if e["name"].startswith("ZEN_FLOW_ARCHIVE")]
    archive = {
        "endpoint": "https://s3.eu-west-1.amazonaws.com",
        "bucket": "team-flows",
        "credentialsSecret": {"name": "archive-keys", "sessionTokenKey": "sessionToken"},
        "maxDelaySeconds": 3600,
        "caConfigMap": "store-ca",
        "logs": True,  # a YAML boolean (`logs: on` unquoted): on
        "logLimitBytes": 65536,
    }
    pod = deployment(render(helm, tmp_path, {"archive": archive}))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # Files of the mounted Secret (read again: rotated keys), not values fixed at the pod's start.
    assert env["ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID_FILE"] == "/etc/zen-flow/archive-keys/accessKeyId"
    assert env["ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY_FILE"] == "/etc/zen-flow/archive-keys/secretAccessKey"
    assert env["ZEN_FLOW_ARCHIVE_SESSION_TOKEN_FILE"] == "/etc/zen-flow/archive-keys/sessionToken"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["archive-keys"]["secret"] == {"secretName": "archive-keys"}
    assert {"name": "archive-keys", "mountPath": "/etc/zen-flow/archive-keys", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert "--archive-s3-ca-file=/etc/zen-flow/archive-ca/ca.crt" in c["args"]
    assert volumes["archive-ca"]["configMap"] == {"name": "store-ca"}
    # As the controller starts with it (files standing in for the Secret's; the CA file exists only in
    # the pod).
    args = [a for a in c["args"] if not a.startswith("--archive-s3-ca-file")]
    for name in ("accessKeyId", "secretAccessKey", "sessionToken"):
        (tmp_path / name).write_text(f"{name}-value\n")
    keys = {
        k: v.replace("/etc/zen-flow/archive-keys", str(tmp_path)) for k, v in env.items() if "ARCHIVE" in k
    }
    assert ArchiveKeys(keys).current().access_key == "accessKeyId-value"
    settings = config.load(build_parser().parse_args(args), env=keys)
    assert settings.archive_enabled
    assert (settings.archive_s3_bucket, settings.archive_s3_prefix) == ("team-flows", "jobflows/")
    assert settings.archive_max_delay_seconds == 3600.0
    assert (settings.archive_logs, settings.archive_log_limit_bytes) == ("on", 65536)
    with pytest.raises(RenderError, match=r"archive\.credentialsSecret\.name"):
        render(helm, tmp_path, {"archive": {"endpoint": "http://minio:9000", "bucket": "b"}})
    with pytest.raises(RenderError, match=r"both archive\.endpoint and archive\.bucket"):
        render(helm, tmp_path, {"archive": {"endpoint": "http://minio:9000"}})


def test_archive_logs_takes_the_controllers_modes_and_pods_log_is_granted_only_when_not_off(
    helm: str, tmp_path: Path
) -> None:
    store = {"endpoint": "http://minio:9000", "bucket": "b", "credentialsSecret": {"name": "keys"}}
    full = find(objects("rbac"), "ClusterRole")["rules"]
    for logs, flag in (
        ("off", None),
        ("opt-in", "--archive-logs=opt-in"),
        ("opt-out", "--archive-logs=opt-out"),
    ):
        docs = render(helm, tmp_path, {"archive": {**store, "logs": logs}})
        args = container(deployment(docs))["args"]
        assert [a for a in args if a.startswith("--archive-logs=")] == ([flag] if flag else [])
        rules = find(docs, "ClusterRole", "zen-flow-controller")["rules"]
        assert rules_allow(rules, "", "pods/log", "get") == (flag is not None), logs
        if flag:
            assert rules == full  # the same rules as config/rbac
    # Without an archive no log is read, whatever archive.logs says: no flag, no pods/log.
    docs = render(helm, tmp_path, {"archive": {"logs": "on"}})
    assert not rules_allow(find(docs, "ClusterRole", "zen-flow-controller")["rules"], "", "pods/log", "get")
    with pytest.raises(RenderError, match=r"archive\.logs must be off, on, opt-in or opt-out"):
        render(helm, tmp_path, {"archive": {**store, "logs": "sometimes"}})
    # archive.logs off but the controller told to read logs all the same (extraArgs, extraEnv): granted.
    for controller in (
        {"extraArgs": ["--archive-logs=on"]},
        {"extraEnv": [{"name": "ZEN_FLOW_ARCHIVE_LOGS", "value": "opt-in"}]},
    ):
        docs = render(helm, tmp_path, {"archive": {**store, "logs": "off"}, "controller": controller})
        assert rules_allow(
            find(docs, "ClusterRole", "zen-flow-controller")["rules"], "", "pods/log", "get"
        ), controller
    docs = render(helm, tmp_path, {"archive": store, "controller": {"extraArgs": ["--archive-logs=off"]}})
    assert not rules_allow(find(docs, "ClusterRole", "zen-flow-controller")["rules"], "", "pods/log", "get")
