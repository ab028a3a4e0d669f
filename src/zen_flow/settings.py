"""The controller's settings: each option's type, default and help, and what follows from them (the
Lease's name and namespace, the workers that may start flows). `zen_flow.config` reads them from the
flags and the environment (`ZEN_FLOW_<NAME>`), checks them, and makes `zen-flow run`'s flags and the
settings table of docs/OPERATOR_GUIDE.md (tools/settings-table.py) from these fields, in their order.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from zen_flow.api.transfer import DEFAULT_IMAGE as DEFAULT_ARTIFACT_IMAGE
from zen_flow.core.shards import MAX_SHARDS
from zen_flow.planner.archive_logs import DEFAULT_LIMIT_BYTES as DEFAULT_LOG_LIMIT_BYTES
from zen_flow.planner.archive_records import DEFAULT_PREFIX as DEFAULT_ARCHIVE_PREFIX
from zen_flow.planner.archiving import DEFAULT_MAX_DELAY_SECONDS as DEFAULT_ARCHIVE_MAX_DELAY

DEFAULT_LEASE_NAME = "zen-flow-controller"


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None = field(
        default=None,
        metadata={"help": "kubeconfig path (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)"},
    )
    namespaces: tuple[str, ...] = field(
        default=(), metadata={"help": "namespaces to watch, comma-separated (default: all)"}
    )
    instance_id: str = field(
        default="",
        metadata={
            "help": "run only the JobFlows and CronJobFlows labelled "
            "workflow.kube-zen.io/controller-instance with this value (a label value); empty: only those "
            "without that label, so several controllers share a cluster (docs/OPERATOR_GUIDE.md, "
            "'Several controllers in one cluster')"
        },
    )
    workers: int = field(
        default=8,
        metadata={
            "help": "concurrent reconciles of one namespace; twice as many workers run, so that one "
            "namespace's slow reconciles (Job creates held by a slow admission webhook) leave as many to "
            "the others, and a namespace already holding one never takes the last quarter of them"
        },
    )
    start_workers: int = field(
        default=0,
        metadata={
            "help": "workers of one namespace that may start new flows at once; the others stay free for "
            "the next steps of flows already running (0: a quarter of --workers, at least one, stays free "
            "for them)"
        },
    )
    max_running_flows: int = field(
        default=0,
        metadata={
            "help": "flows this controller runs at once in all its namespaces; a flow past it waits Pending "
            "(condition Queued, reason WaitingForSlot) and starts, by priority within a namespace, then "
            "oldest first, when a slot is free for it (0: no limit; docs/OPERATOR_GUIDE.md, 'Limits on "
            "running flows')"
        },
    )
    namespace_max_running_flows: int = field(
        default=0,
        metadata={
            "help": "flows this controller runs at once in each namespace; a flow past it waits as with "
            "--max-running-flows (0: no limit)"
        },
    )
    qps: float = field(
        default=0.0,
        metadata={
            "help": "client-side API requests per second; 0: no client-side limit, the apiserver's priority "
            "and fairness paces the controller"
        },
    )
    burst: int = field(default=200, metadata={"help": "client-side API burst (with --qps > 0)"})
    event_qps: float = field(
        default=50.0,
        metadata={"help": "Events per second, a budget apart from --qps so Events never delay Job creates"},
    )
    event_burst: int = field(default=100, metadata={"help": "Event burst"})
    step_events: str = field(
        default="notable",
        metadata={
            "help": "notable: Warnings, the flow's own Events and steps' retries, approvals and skips; all: "
            "also StepStarted and StepSucceeded for every step (status.steps records those either way)"
        },
    )
    leader_elect: bool = field(
        default=True, metadata={"help": "elect a leader on a Lease before reconciling"}
    )
    leader_election_namespace: str = field(
        default="", metadata={"help": "namespace of the Lease (default: the pod's namespace, else default)"}
    )
    leader_election_name: str = field(
        default="",
        metadata={
            "help": f"name of the Lease (default: {DEFAULT_LEASE_NAME}, or {DEFAULT_LEASE_NAME}-<instance "
            "id> with --instance-id, so each instance elects its own leader)"
        },
    )
    identity: str = field(
        default="", metadata={"help": "leader-election identity (default: <hostname>_<random>)"}
    )
    lease_duration: float = field(default=15.0, metadata={"help": "seconds a lease is valid"})
    renew_deadline: float = field(
        default=10.0, metadata={"help": "seconds the leader retries renewing before giving up"}
    )
    retry_period: float = field(default=2.0, metadata={"help": "seconds between lease attempts"})
    shards: int = field(
        default=1,
        metadata={
            "help": f"split the flows into this many shards (1 to {MAX_SHARDS}), each held by one replica on "
            "a Lease <lease name>-shard-<i>, so every replica reconciles at once (docs/OPERATOR_GUIDE.md, "
            "'Sharding across replicas'); 1: one leader reconciles everything"
        },
    )
    metrics_addr: str = field(
        default="0.0.0.0:8080", metadata={"help": "host:port for /metrics, /healthz, /readyz ('' disables)"}
    )
    webhook_addr: str = field(
        default="0.0.0.0:9443", metadata={"help": "host:port of the HTTPS admission webhooks ('' disables)"}
    )
    webhook_cert_dir: str = field(
        default="/etc/webhook/certs",
        metadata={"help": "directory holding tls.crt and tls.key (reloaded on change)"},
    )
    webhook_client_ca: str = field(
        default="",
        metadata={
            "help": "PEM file of the CA(s) whose client certificates the webhook server requires (mutual "
            "TLS, TLS 1.3 only; reloaded on change): only a client presenting one, the apiserver given a "
            "kubeconfig in its AdmissionConfiguration, completes a TLS handshake; empty: any client that "
            "reaches the port is served (docs/WEBHOOKS.md, 'Client authentication')"
        },
    )
    webhook_client_names: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "with --webhook-client-ca: accept only client certificates whose subject CN or a DNS or "
            "URI subjectAltName is one of these, comma-separated; empty: any certificate the CA signed"
        },
    )
    webhook_max_connections: int = field(
        default=128,
        metadata={
            "help": "connections the webhook server keeps open at once; a new one past it closes the "
            "connection that has waited on its client longest (idle, or still sending its request), and is "
            "refused only when every connection has a request under review"
        },
    )
    webhook_max_connections_per_ip: int = field(
        default=96,
        metadata={
            "help": "connections from one address at once (0: no cap); a new one past it closes that "
            "address's longest-waiting connection, or is refused. The apiserver calls from one address or a "
            "few, and opens a connection per call in flight: keep it well above its busiest moment"
        },
    )
    webhook_body_budget_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={
            "help": "bytes of admission request bodies held at once, from their first byte to the answer; "
            "a request past it is answered 503 with Retry-After: 1, unread (at least 3211264, one "
            "largest body)"
        },
    )
    webhook_review_threads: int = field(
        default=2,
        metadata={
            "help": "threads the admission reviews' work runs in, shared by namespaces in turns (one "
            "interpreter lock: more threads bound the waits, they do not review faster)"
        },
    )
    webhook_namespace_review_threads: int = field(
        default=1,
        metadata={"help": "of --webhook-review-threads, how many one namespace's reviews may hold at once"},
    )
    webhook_queue_wait_seconds: float = field(
        default=3.0,
        metadata={
            "help": "seconds from a review's arrival within which it must get a review thread; past them "
            "it is denied with code 429 (TooManyRequests, retry after 1 s) instead of running into the "
            "webhooks' timeoutSeconds (5)"
        },
    )
    authorize_approvals: bool = field(
        default=True,
        metadata={
            "help": "the validating webhook lets a user decide a Manual step only with the RBAC verb "
            "approve on the flow (a LocalSubjectAccessReview); false: whoever may patch (or create) the flow "
            "may decide"
        },
    )
    expression_budget: float = field(
        default=2.0,
        metadata={
            "help": "seconds one `when` (any but the constants and phase tests) may evaluate (in a worker "
            "process) before its step fails"
        },
    )
    expression_workers: int = field(
        default=2,
        metadata={
            "help": "worker processes for `when` expressions other than the constants and phase tests; as "
            "many plans evaluate with them at once, and a flow that finds them all taken is looked at "
            "again a second later"
        },
    )
    artifact_image: str = field(
        default=DEFAULT_ARTIFACT_IMAGE,
        metadata={
            "help": "image of the containers that move a step's artifacts (`zen-flow artifact`); the "
            "controller's own image, so both are one version"
        },
    )
    progress_deadline_seconds: float = field(
        default=7200.0,
        metadata={
            "help": "seconds a Running flow may go without any step changing phase before its condition "
            "Progressing turns False (an Event and zen_flow_jobflows_not_progressing say so; 0 disables)"
        },
    )
    cloudevents_sink: str = field(
        default="",
        metadata={
            "help": "http(s) URL to POST a CloudEvent to for every flow and step transition (started, "
            "succeeded, failed, ...; docs/OPERATOR_GUIDE.md, 'CloudEvents'), sent by the replica that "
            "reconciles the flow, best effort; empty: none are sent"
        },
    )
    cloudevents_timeout: float = field(
        default=5.0,
        metadata={"help": "seconds one POST to --cloudevents-sink may take before it is retried"},
    )
    cloudevents_step_events: bool = field(
        default=True,
        metadata={
            "help": "send the dev.kube-zen.jobflow.step.* CloudEvents too (two a step, and two an item of "
            "a matrix step); false: only the flow's own and the approval gates' are sent"
        },
    )
    cloudevents_ca_file: str = field(
        default="",
        metadata={
            "help": "PEM bundle of the CAs that may sign an https --cloudevents-sink's certificate "
            "(default: the system's)"
        },
    )
    archive_s3_endpoint: str = field(
        default="",
        metadata={
            "help": "http(s)://host[:port] of an S3-compatible store to archive ended flows in, one JSON "
            "record each (docs/OPERATOR_GUIDE.md, 'The flow archive'); with --archive-s3-bucket, turns "
            "the archive on; credentials from $ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID and "
            "$ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY, or files named by $..._FILE (read again: rotated "
            "keys); empty: no archive"
        },
    )
    archive_s3_bucket: str = field(
        default="", metadata={"help": "the archive's bucket (it must exist; the controller only writes)"}
    )
    archive_s3_prefix: str = field(
        default=DEFAULT_ARCHIVE_PREFIX,
        metadata={
            "help": "key prefix of the records, <prefix><namespace>/<name>/<uid>/<finished>[-<run>].json, "
            "and of the step logs (--archive-logs), <prefix>~logs/<namespace>/<name>/<uid>/<step>/"
            "<attempt>/<pod>/<container>.log"
        },
    )
    archive_s3_region: str = field(
        default="us-east-1", metadata={"help": "the region the requests are signed for (SigV4)"}
    )
    archive_s3_ca_file: str = field(
        default="",
        metadata={
            "help": "PEM bundle of the CAs that may sign an https --archive-s3-endpoint's certificate "
            "(default: the system's)"
        },
    )
    archive_s3_timeout: float = field(
        default=10.0, metadata={"help": "seconds one request to the archive store may take"}
    )
    archive_max_delay_seconds: float = field(
        default=DEFAULT_ARCHIVE_MAX_DELAY,
        metadata={
            "help": "how long past its TTL (or a CronJobFlow's history limit) an ended flow waits for its "
            "archive record while the store fails; then, after a failed write, it is deleted anyway, with a "
            "Warning event NotArchived (0: it waits for one write only)"
        },
    )
    archive_logs: str = field(
        default="off",
        metadata={
            "help": "with the archive on, which flows' finished step attempts' pod logs are written to it "
            "too: off (none), on (every flow), opt-in (flows annotated workflow.kube-zen.io/archive-logs: "
            '"true"), opt-out (every flow but those annotated "false"); off and on ignore the annotation; '
            "deletions that wait for a flow's record wait for its logs"
        },
    )
    archive_log_limit_bytes: int = field(
        default=DEFAULT_LOG_LIMIT_BYTES,
        metadata={
            "help": "bytes of a container's log archived at most (its beginning; a cut log says so in "
            "its last line), 1 to 8388608"
        },
    )
    resync_seconds: float = field(
        default=0.0, metadata={"help": "re-enqueue every cached flow this often (0 disables)"}
    )
    log_format: str = field(
        default="auto", metadata={"help": "json | console | auto (console on a terminal)"}
    )
    log_level: str = field(default="info", metadata={"help": "debug | info | warning | error"})

    @property
    def archive_enabled(self) -> bool:
        return bool(self.archive_s3_endpoint and self.archive_s3_bucket)

    @property
    def start_limit(self) -> int:
        """How many workers may reconcile flows that have not started yet, at once (`--start-workers`)."""
        return self.start_workers or max(1, self.workers - max(1, self.workers // 4))

    @property
    def lease_name(self) -> str:
        """The Lease's name: `--leader-election-name`, else one per instance (two instances must not
        contend for one Lease: only one of them would reconcile)."""
        if self.leader_election_name:
            return self.leader_election_name
        return f"{DEFAULT_LEASE_NAME}-{self.instance_id}" if self.instance_id else DEFAULT_LEASE_NAME

    @property
    def lease_namespace(self) -> str:
        if self.leader_election_namespace:
            return self.leader_election_namespace
        return _pod_namespace() or "default"

    @property
    def elector_identity(self) -> str:
        if self.identity:
            return self.identity
        base = os.environ.get("POD_NAME") or socket.gethostname()
        return f"{base}_{uuid.uuid4().hex[:8]}"


def _pod_namespace() -> str:
    if ns := os.environ.get("POD_NAMESPACE"):
        return ns
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""
