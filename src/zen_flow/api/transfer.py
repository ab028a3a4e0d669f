"""The transfer plan: what a step's pod downloads before its containers start and uploads after they
exit (`inputs.artifacts`, `outputs.artifacts`), and the uploader's report.

The planner writes the plan into the step's Job (env `ZF_ARTIFACTS`, JSON) and `zen-flow artifact`
reads it inside the pod, from the zen-flow image. The controller and that image may be different
versions during an upgrade, so fields are only ever added, with defaults. No credential is in here:
`*_env` names environment variables the kubelet fills from the flow's Secrets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from zen_flow import __version__
from zen_flow.api.meta import Model

PLAN_ENV = "ZF_ARTIFACTS"
# The image the transfer containers run by default: the controller's own release (--artifact-image).
DEFAULT_IMAGE = f"ghcr.io/kube-zen/zen-flow:{__version__}"
# What zen-flow adds to the pod of a step that moves artifacts (zen_flow.planner.artifacts); a template
# may not use these names.
VOLUME = "zf-artifacts"
DOWNLOADER = "zf-artifacts-in"
UPLOADER = "zf-artifacts-out"
TRANSFER_NAMES = frozenset({VOLUME, DOWNLOADER, UPLOADER})
# How a stored object relates to the file or directory at the artifact's path: "none", the file as it
# is; otherwise an archive holding the path's last component (a file or a whole directory).
Archive = Literal["none", "tar", "tar+gzip", "zip", "zip+deflate"]
ARCHIVES: tuple[Archive, ...] = ("none", "tar", "tar+gzip", "zip", "zip+deflate")


class S3Location(Model):
    endpoint: str  # scheme://host[:port]; https unless the flow says http://
    bucket: str
    key: str
    region: str | None = None
    insecure: bool = False  # skip TLS certificate verification
    access_key_env: str | None = None  # unset: the S3 client's own chain (env vars, instance role)
    secret_key_env: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class HttpLocation(Model):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    # header -> the env var holding its value (`http.headersFrom`: a Secret's key, set by the kubelet)
    header_env: dict[str, str] = Field(default_factory=dict)


class Download(Model):
    name: str
    dest: str  # where the file or directory must appear, in the transfer container
    s3: S3Location | None = None
    http: HttpLocation | None = None
    archive: Archive = "none"
    digest: str | None = None  # "sha256:<hex>" of the stored object, checked before it is used


class Upload(Model):
    name: str
    source: str  # the file or directory to store, in the transfer container
    path: str = ""  # the same, as the step's containers see it (for messages)
    s3: S3Location
    optional: bool = False
    archive: Archive | None = None  # None: a file as it is, a directory as tar+gzip


class TransferPlan(Model):
    downloads: tuple[Download, ...] = ()
    uploads: tuple[Upload, ...] = ()


class Stored(Model):
    """One uploaded artifact: what the next steps need to fetch and check it."""

    size: int
    digest: str
    archive: Archive = "none"


class UploadReport(Model):
    """What the uploader writes to its termination message (4 KiB at most, see `transfer.report`)."""

    stored: dict[str, Stored] = Field(default_factory=dict)
    missing: tuple[str, ...] = ()  # optional artifacts whose path did not exist
    errors: dict[str, str] = Field(default_factory=dict)  # artifact name -> why it was not stored
