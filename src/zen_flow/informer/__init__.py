"""client-go's informer, ported to asyncio: reflectors (list + watch) feeding an indexed store.

jobs = JobInformer(JobClient(kube), clock=clock)
flows = JobFlowInformer(JobFlowClient(kube), clock=clock)
jobs.add_handler(on_add=..., on_update=..., on_delete=...)   # handlers only enqueue
tg.create_task(jobs.run()); tg.create_task(flows.run())
await jobs.wait_synced(); await flows.wait_synced()
flows.get("ns/name"); jobs.jobs_for(flow_uid)
"""

from zen_flow.informer.informer import Handler, Informer, describe_error, metadata_of
from zen_flow.informer.reflector import Backoff, ListerWatcher, Reflector, ReflectorOptions, VeryShortWatch
from zen_flow.informer.resources import (
    CONCURRENCY_GROUP_INDEX,
    OWNER_UID_INDEX,
    JobFlowInformer,
    JobInformer,
    controller_uid,
    owner_flow_key,
)
from zen_flow.informer.store import ReplaceResult, Store

__all__ = [
    "CONCURRENCY_GROUP_INDEX",
    "OWNER_UID_INDEX",
    "Backoff",
    "Handler",
    "Informer",
    "JobFlowInformer",
    "JobInformer",
    "ListerWatcher",
    "Reflector",
    "ReflectorOptions",
    "ReplaceResult",
    "Store",
    "VeryShortWatch",
    "controller_uid",
    "describe_error",
    "metadata_of",
    "owner_flow_key",
]
