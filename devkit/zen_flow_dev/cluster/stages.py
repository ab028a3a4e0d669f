"""zen-flow's own kwok configuration: the fake node and the pod lifecycle a real kubelet would drive.

Written for zen-flow (not copied from kwok's kustomize/stage). Pod lifecycle, all stages mutually
exclusive so kwok never has to pick one at random:

  Pending --start--> Running --succeed--> Succeeded        (pods owned by a Job, no exit-code annotation)
                             --fail-----> Failed           (annotation zenflow.test/exit-code: "<n>")
  Pending|Running with deletionTimestamp --terminate--> Failed (exit 137) --remove--> deleted

The `remove` stage deletes with grace period 0, like a kubelet that has stopped the containers; the
apiserver then drops the pod as soon as its finalizers (the Job controller's job-tracking one) are gone.
Without `terminate`, deleting a Job's running pod would never make it terminal and (k8s >= 1.31) the
Job would never get its Complete/Failed condition.

Per-pod knobs (pod annotations, e.g. on a Job's pod template):
  zenflow.test/exit-code:     "<n>"   end Failed with exit code n (use n != 0); any owner, not only Jobs
  zenflow.test/reason:        "<s>"   terminated.reason for the failure (default "Error")
  zenflow.test/message:       "<s>"   terminated.message for the failure (default "exit code <n>")
  zenflow.test/termination-message: "<s>"  terminated.message of every container on success (what a
                                      real container would write to /dev/termination-log)
  zenflow.test/init-termination-message: "<s>"  the same for every init container (e.g. the report of
                                      zen-flow's artifact uploader)
  zenflow.test/run-seconds:   "<x>"   stay Running x seconds (decimal allowed) before succeeding/failing
  zenflow.test/start-seconds: "<x>"   stay Pending x seconds after binding before Running
"""

from __future__ import annotations

from typing import Any

import yaml

NODE_NAME = "kwok-node-0"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_ANNOTATION_VALUE = "fake"

EXIT_CODE_ANNOTATION = "zenflow.test/exit-code"
REASON_ANNOTATION = "zenflow.test/reason"
MESSAGE_ANNOTATION = "zenflow.test/message"
TERMINATION_MESSAGE_ANNOTATION = "zenflow.test/termination-message"
INIT_TERMINATION_MESSAGE_ANNOTATION = "zenflow.test/init-termination-message"
RUN_SECONDS_ANNOTATION = "zenflow.test/run-seconds"
START_SECONDS_ANNOTATION = "zenflow.test/start-seconds"
# With an exit code: fail only the first N attempts of a zen-flow step (its pods carry the attempt label),
# so a test can watch a retry succeed.
FAIL_ATTEMPTS_ANNOTATION = "zenflow.test/fail-attempts"
ATTEMPT_LABEL = "workflow.kube-zen.io/attempt"

TERMINATED_EXIT_CODE = 137

_NODE_READY = """\
{{ $now := Now }}
conditions:
- type: Ready
  status: "True"
  reason: KubeletReady
  message: zen-flow dev cluster fake kubelet (kwok) is ready
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ range list "MemoryPressure" "DiskPressure" "PIDPressure" "NetworkUnavailable" }}
- type: {{ . }}
  status: "False"
  reason: FakeKubeletHasNo{{ . }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
addresses:
- type: Hostname
  address: {{ .metadata.name | Quote }}
allocatable: {cpu: "1000", memory: 1Ti, pods: "10000", ephemeral-storage: 1Ti}
capacity: {cpu: "1000", memory: 1Ti, pods: "10000", ephemeral-storage: 1Ti}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  osImage: zen-flow dev cluster
  kernelVersion: kwok
  containerRuntimeVersion: kwok
  kubeletVersion: kwok
  kubeProxyVersion: kwok
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""

_POD_RUNNING = """\
{{ $now := Now }}
conditions:
{{ range list "PodReadyToStartContainers" "Initialized" "ContainersReady" "Ready" }}
- type: {{ . }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  restartCount: 0
  {{ if eq ( or .restartPolicy "" ) "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  started: false
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _terminated(code: str, reason: str, message: str) -> str:
    """One `terminated` status per container of the enclosing `range` (Go template variables)."""
    return f"""\
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: {code}
      reason: {reason}
      {{{{ with {message} }}}}message: {{{{ . | Quote }}}}{{{{ end }}}}
      startedAt: {{{{ $started | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
"""


# Shared tail of every "containers have exited" template; $code/$reason/$message (the containers) and
# $initMessage (the init containers, which always completed) are set by the caller.
_POD_TERMINATED_TAIL = (
    """\
{{ $started := or .status.startTime $now }}
conditions:
{{ range list "ContainersReady" "Ready" }}
- type: {{ . }}
  status: "False"
  reason: {{ $podReason | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
"""
    + _terminated("{{ $code }}", "{{ $reason | Quote }}", "$message")
    + """\
{{ end }}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
"""
    + _terminated("0", '"Completed"', "$initMessage")
    + """\
{{ end }}
{{ end }}
phase: {{ $phase }}
"""
)

_POD_SUCCEEDED = (
    f"""\
{{{{ $now := Now }}}}
{{{{ $annotations := or .metadata.annotations dict }}}}
{{{{ $code := 0 }}}}
{{{{ $reason := "Completed" }}}}
{{{{ $message := index $annotations "{TERMINATION_MESSAGE_ANNOTATION}" }}}}
{{{{ $initMessage := index $annotations "{INIT_TERMINATION_MESSAGE_ANNOTATION}" }}}}
{{{{ $phase := "Succeeded" }}}}
{{{{ $podReason := "PodCompleted" }}}}
"""
    + _POD_TERMINATED_TAIL
)

_POD_FAILED = (
    f"""\
{{{{ $now := Now }}}}
{{{{ $annotations := or .metadata.annotations dict }}}}
{{{{ $code := index $annotations "{EXIT_CODE_ANNOTATION}" }}}}
{{{{ $reason := or ( index $annotations "{REASON_ANNOTATION}" ) "Error" }}}}
{{{{ $message := or ( index $annotations "{MESSAGE_ANNOTATION}" ) ( printf "exit code %v" $code ) }}}}
{{{{ $initMessage := "" }}}}
{{{{ $phase := "Failed" }}}}
{{{{ $podReason := "PodFailed" }}}}
"""
    + _POD_TERMINATED_TAIL
)

_POD_KILLED = (
    f"""\
{{{{ $now := Now }}}}
{{{{ $code := {TERMINATED_EXIT_CODE} }}}}
{{{{ $reason := "Error" }}}}
{{{{ $message := "pod deleted: the fake kubelet killed its containers" }}}}
{{{{ $initMessage := "" }}}}
{{{{ $phase := "Failed" }}}}
{{{{ $podReason := "PodFailed" }}}}
"""
    + _POD_TERMINATED_TAIL
)


def _jq(key: str, operator: str, *values: str) -> dict[str, Any]:
    selector: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        selector["values"] = list(values)
    return {"jq": selector}


def _annotation(name: str) -> str:
    return f'.metadata.annotations["{name}"]'


def _seconds_delay(annotation: str) -> dict[str, Any]:
    # kwok parses a string result with Go's time.ParseDuration; no annotation -> no output -> 0 ms.
    return {
        "durationMilliseconds": 0,
        "durationFrom": {"jq": {"expression": f'{_annotation(annotation)} // empty | tostring + "s"'}},
    }


def _stage(
    name: str, kind: str, selectors: list[dict[str, Any]], steps: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selectors},
        **extra,
        "steps": steps,
    }
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def _status(template: str) -> dict[str, Any]:
    return {"patch": {"subresource": "status", "root": "status", "template": template}}


_NOT_DELETING = _jq(".metadata.deletionTimestamp", "DoesNotExist")
# true when the pod must fail: an exit code is set and (if limited) this attempt is one of the first N.
_WILL_FAIL = (
    f"({_annotation(EXIT_CODE_ANNOTATION)} != null) and "
    f'(((.metadata.labels["{ATTEMPT_LABEL}"] // "0") | tonumber) < '
    f'(({_annotation(FAIL_ATTEMPTS_ANNOTATION)} // "1000000000") | tonumber))'
)
_DELETING = _jq(".metadata.deletionTimestamp", "Exists")


def stages() -> list[dict[str, Any]]:
    """Our Stage documents (node first, then the pod lifecycle in order)."""
    phase = ".status.phase"
    return [
        _stage(
            "zenflow-node-ready",
            "Node",
            [_jq('.status.conditions.[] | select( .type == "Ready" ) | .status', "NotIn", "True")],
            [_status(_NODE_READY)],
        ),
        _stage(
            "zenflow-pod-start",
            "Pod",
            [_NOT_DELETING, _jq(phase, "In", "Pending")],
            [_status(_POD_RUNNING)],
            delay=_seconds_delay(START_SECONDS_ANNOTATION),
        ),
        _stage(
            "zenflow-pod-succeed",
            "Pod",
            [
                _NOT_DELETING,
                _jq(phase, "In", "Running"),
                _jq(".metadata.ownerReferences.[].kind", "In", "Job"),
                _jq(_WILL_FAIL, "In", "false"),
            ],
            [_status(_POD_SUCCEEDED)],
            delay=_seconds_delay(RUN_SECONDS_ANNOTATION),
        ),
        _stage(
            "zenflow-pod-fail",
            "Pod",
            [_NOT_DELETING, _jq(phase, "In", "Running"), _jq(_WILL_FAIL, "In", "true")],
            [_status(_POD_FAILED)],
            delay=_seconds_delay(RUN_SECONDS_ANNOTATION),
        ),
        _stage(
            "zenflow-pod-terminate",
            "Pod",
            [_DELETING, _jq(phase, "In", "Pending", "Running")],
            [_status(_POD_KILLED)],
        ),
        _stage(
            "zenflow-pod-remove",
            "Pod",
            [_DELETING, _jq(phase, "In", "Succeeded", "Failed")],
            [{"delete": True}],
        ),
    ]


def kwok_stages_yaml() -> str:
    """The multi-document file for `kwok --config`: our Stages only.

    Options go on kwok's command line instead: a KwokConfiguration document in the file replaces the
    defaults wholesale (kwok v0.8.0 then refuses to start with "playStageParallelism must be greater
    than 0"), while flags override single defaults.
    """
    return yaml.dump_all(stages(), Dumper=_LiteralDumper, sort_keys=False)


def node_manifest(name: str = NODE_NAME) -> dict[str, Any]:
    """The fake Node: no taints (Job pods must schedule), the annotation kwok selects nodes by."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: NODE_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {},
    }


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the templates) as `|` blocks: the generated file reads like hand-written YAML."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)
