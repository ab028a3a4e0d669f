"""Limits shared by the validator, the CRD schema (config/crd) and the docs; keep them in step."""

from __future__ import annotations

MAX_STEPS = 500  # CRD spec.steps maxItems
MAX_MESSAGE = 1024  # CRD steps[].message maxLength
MAX_WHEN = 1024  # CRD steps[].when maxLength
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600  # 2,592,000: the original's cap on timeoutSeconds
MAX_POD_PENDING_TIMEOUT_SECONDS = 24 * 3600  # podPendingTimeoutSeconds: a day; a pod waits minutes
MAX_BACKOFF_SECONDS = 30 * 24 * 3600  # the original's cap on retryPolicy.backoff.duration
# Object and status sizes (etcd's 1.5 MiB): validation/size.py.
MAX_FLOW_NAME = 63  # the flow name is the value of the workflow.kube-zen.io/flow label
# generateName gets 5 random characters appended by the apiserver.
MAX_GENERATE_NAME = MAX_FLOW_NAME - 5
# S3 refuses a key over 1,024 bytes of UTF-8: refused at admission rather than by the uploader after the
# step's work ran.
MAX_S3_KEY_BYTES = 1024
# CRD inputs/outputs.parameters[].valueFrom.jsonPath maxLength, as the matrix's: a step name and a path
# fit many times over, and the webhook does not parse (or keep) megabyte-long paths.
MAX_JSON_PATH = 512
# batch/v1 Job API limits on podFailurePolicy.
MAX_POD_FAILURE_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_POD_CONDITION_PATTERNS = 20
