"""The only package that talks to the apiserver (over aiohttp): config, typed calls, errors.

`KubeClient` (one per process) carries config, QPS limits, timeouts and retries; the resource modules
add what zen-flow does with Jobs, JobFlows, Events and Leases. Errors are `zen_flow.kube.errors`.
"""

from zen_flow.kube.client import KubeClient
from zen_flow.kube.cluster import Cluster
from zen_flow.kube.config import KubeConfig, load_config
from zen_flow.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Expired,
    Invalid,
    KubeError,
    NotFound,
    TooManyRequests,
    TransportError,
)
from zen_flow.kube.events import EventRecorder
from zen_flow.kube.jobflows import JobFlowClient
from zen_flow.kube.jobs import JobClient
from zen_flow.kube.leases import LeaseClient
from zen_flow.kube.objects import ObjectClient
from zen_flow.kube.resource import Resource, ResourceLister
from zen_flow.kube.streams import DecodedPage, Decoder, ListResult, WatchEvent, WatchStream
from zen_flow.kube.transport import USER_AGENT, ClientOptions, RequestRecord, ResponseHook, request_labels

__all__ = [
    "USER_AGENT",
    "AlreadyExists",
    "ApiError",
    "ClientOptions",
    "Cluster",
    "Conflict",
    "DecodedPage",
    "Decoder",
    "EventRecorder",
    "Expired",
    "Invalid",
    "JobClient",
    "JobFlowClient",
    "KubeClient",
    "KubeConfig",
    "KubeError",
    "LeaseClient",
    "ListResult",
    "NotFound",
    "ObjectClient",
    "RequestRecord",
    "Resource",
    "ResourceLister",
    "ResponseHook",
    "TooManyRequests",
    "TransportError",
    "WatchEvent",
    "WatchStream",
    "load_config",
    "request_labels",
]
