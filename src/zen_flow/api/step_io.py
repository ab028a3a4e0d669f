"""pydantic models of a JobFlow step's `inputs` and `outputs` (workflow.kube-zen.io/v1alpha1): the
parameters it reads (a flow argument, an earlier step's output, a ConfigMap's or a Secret's key) and
writes (from a JSON path, its termination message, a value supplied at an approval), and the artifacts it
downloads (from an earlier step, HTTP or S3) and uploads (to S3). planner/parameters.py, planner/outputs.py
and planner/artifacts.py read them; api.jobflow's Step holds them. As there, enumerated fields are plain
strings and `zen_flow.validation` owns the rules.
"""

from __future__ import annotations

from pydantic import Field

from zen_flow.api.meta import SpecModel


class KeyRef(SpecModel):
    name: str = ""
    key: str = ""


class ParameterSource(SpecModel):
    json_path: str | None = None
    argument: str | None = None
    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None


class InputParameter(SpecModel):
    name: str = ""
    value: str | None = None
    value_from: ParameterSource | None = None


class HeaderFrom(SpecModel):
    """A request header whose value is a Secret's key: the kubelet puts it in the transfer container's
    environment; the controller never reads it."""

    name: str = ""
    secret_key_ref: KeyRef | None = None


class HTTPSource(SpecModel):
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from: tuple[HeaderFrom, ...] = ()


class S3Target(SpecModel):
    endpoint: str | None = None
    bucket: str | None = None
    key: str | None = None
    region: str | None = None
    insecure: bool | None = None
    access_key_id_secret_ref: KeyRef | None = Field(default=None, alias="accessKeyIDSecretRef")
    secret_access_key_secret_ref: KeyRef | None = None


class S3Repository(SpecModel):
    """`spec.artifactRepository.s3`: where a flow stores its output artifacts that name no `s3` of their
    own, each under `<key_prefix>/<namespace>/<flow>/<uid prefix>/<step>/<artifact>` (planner/artifacts.py);
    the fields S3Target's, with a key prefix in place of a key."""

    endpoint: str | None = None
    bucket: str | None = None
    key_prefix: str | None = None
    region: str | None = None
    insecure: bool | None = None
    access_key_id_secret_ref: KeyRef | None = Field(default=None, alias="accessKeyIDSecretRef")
    secret_access_key_secret_ref: KeyRef | None = None


class ArtifactRepository(SpecModel):
    """`spec.artifactRepository`, as Argo's default artifact repository (S3-compatible storage only)."""

    s3: S3Repository | None = None


class InputArtifact(SpecModel):
    name: str = ""
    from_: str | None = Field(default=None, alias="from")
    path: str | None = None
    http: HTTPSource | None = None
    s3: S3Target | None = None


class StepInputs(SpecModel):
    artifacts: tuple[InputArtifact, ...] = ()
    parameters: tuple[InputParameter, ...] = ()


class TerminationMessageSource(SpecModel):
    container: str | None = None
    key: str | None = None


class SuppliedSource(SpecModel):
    """A value given when a Manual gate is approved (annotation values.workflow.kube-zen.io/<step>), as
    Argo's suspend step's `valueFrom.supplied`: `default` when none is given, `enum` the values allowed."""

    default: str | None = None
    enum: tuple[str, ...] = ()
    description: str | None = None


class OutputParameterSource(SpecModel):
    json_path: str | None = None
    termination_message: TerminationMessageSource | None = None
    supplied: SuppliedSource | None = None


class OutputParameter(SpecModel):
    name: str = ""
    value_from: OutputParameterSource | None = None


class ArchiveSpec(SpecModel):
    format: str | None = None
    compression: str | None = None


class OutputArtifact(SpecModel):
    name: str = ""
    path: str | None = None
    optional: bool | None = None
    archive: ArchiveSpec | None = None
    s3: S3Target | None = None


class StepOutputs(SpecModel):
    artifacts: tuple[OutputArtifact, ...] = ()
    parameters: tuple[OutputParameter, ...] = ()
