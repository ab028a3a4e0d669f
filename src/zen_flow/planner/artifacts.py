"""Artifacts: the volume and the two transfer containers zen-flow adds to a step's Job.

Files move between steps through S3-compatible storage, and only the step's own pod touches them (the
controller never reads a Secret nor opens a connection to storage or to a URL; JOBFLOW_API.md
decision 11). For a step with artifacts the Job's pod gets:

- the volume `zf-artifacts` (an emptyDir);
- inputs: the init container `zf-artifacts-in` (`zen-flow artifact download`, the zen-flow image)
  fetches each input into the volume; each of the step's containers mounts it at the input's `path`;
- outputs: the native sidecar `zf-artifacts-out` (an init container with restartPolicy Always; it runs
  beside the step's containers and is stopped after they exit) stores each output and reports sizes and
  digests in its termination message, which the controller reads with the step's other outputs.
  An output's path must be on a volume the uploader can mount too: a volume of the template that covers
  it, or else zen-flow mounts an empty directory of `zf-artifacts` at the path's parent directory.
  A template's mount with `subPathExpr` gets, in the uploader, the env vars it names, defined as the
  step's container defines them (planner.uploader_env), so that it resolves to the same directory.

An output is stored where its own `s3` says, or, without one, in the flow's `spec.artifactRepository`
(`stored_in`); a flow without either stores it nowhere.

Credentials are env vars of the transfer containers only, filled by the kubelet from the Secrets the
flow names (`valueFrom.secretKeyRef`). The transfer plan itself is JSON in env `ZF_ARTIFACTS`.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from typing import Any

from zen_flow.api.flow_status import ArtifactRef
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.api.meta import Model
from zen_flow.api.step_io import ArchiveSpec, InputArtifact, KeyRef, OutputArtifact, S3Target
from zen_flow.api.transfer import (
    DEFAULT_IMAGE,
    DOWNLOADER,
    PLAN_ENV,
    TRANSFER_NAMES,
    UPLOADER,
    VOLUME,
    Archive,
    Download,
    HttpLocation,
    S3Location,
    TransferPlan,
    Upload,
)
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.uploader_env import uploader_env

MOUNT = "/zf-artifacts"
READY_FILE = f"{MOUNT}/.uploader-ready"
SCRATCH = f"{MOUNT}/.scratch"
DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
DEFAULT_PREFIX = "zen-flow"  # the keys' first part, unless the flow's artifact repository names its own
DEFAULT_KEYS = {"access": "accessKeyID", "secret": "secretAccessKey"}  # Secret keys when a ref names none

# step name, artifact name -> what that step stored (None: nothing, e.g. an optional one was missing)
StoredLookup = Callable[[str, str], ArtifactRef | None]


class ArtifactOptions(Model):
    """Controller settings that shape the transfer containers."""

    image: str = DEFAULT_IMAGE
    pull_policy: str = "IfNotPresent"


def stored_in(flow: JobFlow, artifact: OutputArtifact) -> S3Target | None:
    """Where an output is stored: its own `s3`, whole (a field it leaves out is never the repository's),
    else the flow's `spec.artifactRepository.s3` (its key the default one under the repository's prefix:
    `_output_key`); None: nowhere."""
    if artifact.s3 is not None:
        return artifact.s3
    repository = flow.spec.artifact_repository
    s3 = repository.s3 if repository is not None else None
    if s3 is None:
        return None
    return S3Target(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        region=s3.region,
        insecure=s3.insecure,
        access_key_id_secret_ref=s3.access_key_id_secret_ref,
        secret_access_key_secret_ref=s3.secret_access_key_secret_ref,
    )


def uploads(flow: JobFlow, step: Step) -> tuple[OutputArtifact, ...]:
    """The output artifacts that are stored: those with `s3`, and in a flow with an artifact repository
    every one (without either there is nowhere to put them)."""
    artifacts = step.outputs.artifacts if step.outputs else ()
    if flow.spec.artifact_repository is not None and flow.spec.artifact_repository.s3 is not None:
        return artifacts
    return tuple(a for a in artifacts if a.s3 is not None)


def downloads(step: Step) -> tuple[InputArtifact, ...]:
    return step.inputs.artifacts if step.inputs is not None else ()


def input_path(artifact: InputArtifact) -> str:
    """Where an input appears in the step's containers (the original's default without `path`)."""
    return artifact.path or f"/tmp/artifacts/{artifact.name}"


def storage_key(flow: JobFlow, step: str, artifact: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Where an output without `s3.key` is stored: unique per flow object (the uid), stable across its
    attempts (a retry overwrites the failed attempt's object)."""
    meta = flow.metadata
    return f"{prefix}/{meta.namespace}/{meta.name}/{meta.uid[:8]}/{step}/{artifact}"


def repository_prefix(flow: JobFlow) -> str:
    """The first part of the keys of the outputs the flow's repository stores: its `keyPrefix` without the
    slashes around it (admission refuses one that is nothing else), else DEFAULT_PREFIX."""
    repository = flow.spec.artifact_repository
    given = repository.s3.key_prefix if repository is not None and repository.s3 is not None else None
    return (given or "").strip("/") or DEFAULT_PREFIX


def archive_of(spec: ArchiveSpec | None) -> Archive | None:
    """The stored form an output asks for; None: a file as it is, a directory as tar+gzip."""
    if spec is None:
        return None
    gzip = spec.compression != "none"  # gzip unless told otherwise
    if spec.format == "zip":
        return "zip+deflate" if gzip else "zip"
    return "tar+gzip" if gzip else "tar"


class Credentials:
    """Env vars of the transfer containers, one per (Secret, key) pair."""

    def __init__(self) -> None:
        self.env: list[dict[str, Any]] = []
        self._names: dict[tuple[str, str], str] = {}

    def variable(self, ref: KeyRef | None, kind: str) -> str | None:
        """The env var of an S3 credential's Secret key (None without a ref: the client's own chain)."""
        if ref is None or not ref.name:
            return None
        return self._env(ref.name, ref.key or DEFAULT_KEYS[kind], f"ZF_S3_{kind.upper()}_KEY")

    def header(self, ref: KeyRef) -> str:
        """The env var of a header's Secret key (`http.headersFrom`)."""
        return self._env(ref.name, ref.key, "ZF_HTTP_HEADER")

    def _env(self, secret: str, key: str, prefix: str) -> str:
        pair = (secret, key)
        if pair not in self._names:
            name = f"{prefix}_{len(self._names)}"
            self._names[pair] = name
            self.env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        return self._names[pair]


def _location(target: S3Target, key: str, credentials: Credentials) -> S3Location:
    return S3Location(
        endpoint=target.endpoint or DEFAULT_ENDPOINT,
        bucket=target.bucket or "",
        key=key,
        region=target.region,
        insecure=bool(target.insecure),
        access_key_env=credentials.variable(target.access_key_id_secret_ref, "access"),
        secret_key_env=credentials.variable(target.secret_access_key_secret_ref, "secret"),
    )


def _output_key(flow: JobFlow, step: str, artifact: OutputArtifact) -> str:
    if artifact.s3 is not None:  # its own s3, whole: the repository's prefix is not its
        return artifact.s3.key or storage_key(flow, step, artifact.name)
    return storage_key(flow, step, artifact.name, repository_prefix(flow))


def output_url(flow: JobFlow, step: str, artifact: OutputArtifact) -> str:
    """Where a stored output is, as status shows it (s3://bucket/key)."""
    target = stored_in(flow, artifact)
    bucket = target.bucket if target is not None else ""
    return f"s3://{bucket}/{_output_key(flow, step, artifact)}"


def output_location(
    flow: JobFlow, step: str, artifact: OutputArtifact, credentials: Credentials
) -> S3Location:
    target = stored_in(flow, artifact)
    assert target is not None  # `uploads` returns only outputs stored somewhere
    return _location(target, _output_key(flow, step, artifact), credentials)


def _download(
    flow: JobFlow, artifact: InputArtifact, stored: StoredLookup, credentials: Credentials
) -> Download:
    what = f"input artifact {artifact.name}"
    dest = f"{MOUNT}/in/{artifact.name}"
    if artifact.http is not None:
        return Download(
            name=artifact.name,
            dest=dest,
            http=HttpLocation(
                url=artifact.http.url,
                headers=artifact.http.headers,
                header_env={
                    h.name: credentials.header(h.secret_key_ref)
                    for h in artifact.http.headers_from
                    if h.secret_key_ref is not None
                },
            ),
        )
    if artifact.s3 is not None:
        location = _location(artifact.s3, artifact.s3.key or "", credentials)
        return Download(name=artifact.name, dest=dest, s3=location)
    step_name, _, name = (artifact.from_ or "").partition("/")
    producer = next((s for s in flow.spec.steps if s.name == step_name), None)
    candidates = uploads(flow, producer) if producer is not None else ()
    if not name and len(candidates) == 1:
        name = candidates[0].name  # the original's bare "<step>": its one stored artifact
    declared = next((a for a in candidates if a.name == name), None)
    if declared is None:
        raise JobBuildError(
            f"{what}: step {step_name} stores no artifact {name or '(unnamed)'} (outputs.artifacts[].s3, "
            "or spec.artifactRepository)"
        )
    ref = stored(step_name, name)
    if ref is None:
        detail = " (an optional artifact its step did not write)" if declared.optional else ""
        raise JobBuildError(f"{what}: step {step_name} stored no artifact {name}{detail}")
    location = output_location(flow, step_name, declared, credentials)
    return Download(
        name=artifact.name, dest=dest, s3=location, archive=ref.archive or "none", digest=ref.digest
    )


def _covering_mount(
    containers: list[dict[str, Any]], path: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The template's volume mount (in any container) under which `path` lies, the deepest one, with
    its container."""
    best: tuple[dict[str, Any], dict[str, Any]] | None = None
    depth = -1
    for container in containers:
        for mount in container.get("volumeMounts") or ():
            base = str(mount.get("mountPath", "")).rstrip("/") if isinstance(mount, dict) else ""
            if base and (path == base or path.startswith(base + "/")) and len(base) > depth:
                best, depth = (container, mount), len(base)
    return best


def _security_context() -> dict[str, Any]:
    # What a "restricted" namespace demands; the user is the pod's (or the image's, 65532), so files
    # the downloader writes belong to the step's own user when the pod sets one.
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(
    name: str, args: list[str], plan: TransferPlan, credentials: Credentials, options: ArtifactOptions
) -> dict[str, Any]:
    return {
        "name": name,
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "command": ["zen-flow", "artifact", *args],
        "env": [{"name": PLAN_ENV, "value": plan.model_dump_json(exclude_defaults=True)}, *credentials.env],
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": _security_context(),
        "terminationMessagePolicy": "File",
    }


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        value = parent[key] = []
    if not isinstance(value, list):
        raise JobBuildError(f"{where}.{key} must be a list")
    return value


def add_transfers(
    body: dict[str, Any], flow: JobFlow, step: Step, stored: StoredLookup, options: ArtifactOptions
) -> dict[str, Any]:
    """Add the volume, the transfer containers and the mounts to the Job `body` (changed in place and
    returned); a Job without artifacts to move is returned as it is."""
    inputs, outputs = downloads(step), uploads(flow, step)
    if not inputs and not outputs:
        return body
    try:
        pod = body["spec"]["template"]["spec"]
        containers = [c for c in pod["containers"] if isinstance(c, dict)]
    except (KeyError, TypeError):
        raise JobBuildError("template.spec.template.spec.containers is missing") from None
    volumes = _list(pod, "volumes", "template.spec.template.spec")
    init = _list(pod, "initContainers", "template.spec.template.spec")
    taken = {v.get("name") for v in volumes if isinstance(v, dict)}
    taken |= {c.get("name") for c in [*containers, *init] if isinstance(c, dict)}
    if clash := sorted(str(n) for n in taken & TRANSFER_NAMES):
        raise JobBuildError(
            f"the names {', '.join(clash)} are zen-flow's own (artifact transfer): rename yours"
        )

    credentials = Credentials()
    plan_in = TransferPlan(downloads=tuple(_download(flow, a, stored, credentials) for a in inputs))
    users = [*containers, *(c for c in init if isinstance(c, dict))]
    for artifact in inputs:
        mount = {"name": VOLUME, "mountPath": input_path(artifact), "subPath": f"in/{artifact.name}"}
        for container in users:
            _list(container, "volumeMounts", f"container {container.get('name')}").append(dict(mount))
    ours: list[dict[str, Any]] = []
    if inputs:
        ours.append(_container(DOWNLOADER, ["download"], plan_in, credentials, options))

    if outputs:
        upload_credentials = Credentials()
        items, uploader_mounts, expressions = _outputs(flow, step, outputs, containers, upload_credentials)
        uploader = _container(
            UPLOADER,
            ["upload", "--scratch", SCRATCH, "--ready-file", READY_FILE],
            TransferPlan(uploads=items),
            upload_credentials,
            options,
        )
        uploader["volumeMounts"] += uploader_mounts
        # A mount's subPathExpr must expand in the uploader as in the container it was copied from. After
        # the uploader's own entries: the kubelet expands `$(VAR)` in a value against the entries before
        # it, and the plan's keys must stay the literal text the controller records.
        uploader["env"] += uploader_env(expressions, (e["name"] for e in uploader["env"]))
        uploader["restartPolicy"] = "Always"
        # The step's containers start only once the uploader listens for SIGTERM (runner.run_upload).
        uploader["startupProbe"] = {
            "exec": {"command": ["test", "-e", READY_FILE]},
            "periodSeconds": 1,
            "failureThreshold": 120,
        }
        ours.append(uploader)
    volumes.append({"name": VOLUME, "emptyDir": {}})
    init[:0] = ours
    return body


def _outputs(
    flow: JobFlow,
    step: Step,
    outputs: tuple[OutputArtifact, ...],
    containers: list[dict[str, Any]],
    credentials: Credentials,
) -> tuple[tuple[Upload, ...], list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """The uploads, the mounts the uploader needs to read them, and the subPathExpr of those that have
    one with the container it comes from (planner.uploader_env)."""
    items: list[Upload] = []
    uploader_mounts: list[dict[str, Any]] = []
    expressions: list[tuple[dict[str, Any], str]] = []
    parents: set[str] = set()
    for artifact in outputs:
        path = artifact.path or ""
        covering = _covering_mount(containers, path)
        if covering is not None:
            owner, found = covering
            mount = {k: v for k, v in found.items() if k in ("name", "mountPath", "subPath", "subPathExpr")}
            mount["readOnly"] = True
            # Once per volume however many outputs lie on it: the apiserver refuses a container with two
            # mounts at one path (`mountPath: must be unique`), so the Job could not be created.
            if mount not in uploader_mounts:
                uploader_mounts.append(mount)
                if isinstance(expression := mount.get("subPathExpr"), str) and expression:
                    expressions.append((owner, expression))
            source = path
        else:
            parent = posixpath.dirname(path)
            if parent in ("", "/"):
                raise JobBuildError(
                    f"output artifact {artifact.name}: {path} is not in a directory; zen-flow mounts a "
                    f"volume at the directory of an output's path, so use e.g. /outputs/{path.lstrip('/')}"
                )
            sub = "out/" + hashlib.sha256(parent.encode()).hexdigest()[:12]
            if parent not in parents:
                parents.add(parent)
                for container in containers:
                    mounts = _list(container, "volumeMounts", f"container {container.get('name')}")
                    mounts.append({"name": VOLUME, "mountPath": parent, "subPath": sub})
            source = f"{MOUNT}/{sub}/{posixpath.basename(path)}"
        items.append(
            Upload(
                name=artifact.name,
                source=source,
                path=path,
                s3=output_location(flow, step.name, artifact, credentials),
                optional=bool(artifact.optional),
                archive=archive_of(artifact.archive),
            )
        )
    return tuple(items), uploader_mounts, expressions
