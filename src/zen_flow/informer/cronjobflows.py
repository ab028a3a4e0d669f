"""The CronJobFlow informer: a small cache (one object per schedule), decoded whole on every event.

A CronJobFlow that does not parse is cached as a placeholder (its metadata, and its status if that
parses), so its reconcile can say what is wrong in a condition instead of the informer stopping.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.api.meta import Condition
from zen_flow.informer.informer import Informer, status_placeholder
from zen_flow.informer.reflector import ListerWatcher, ReflectorOptions
from zen_flow.machinery.clock import Clock


class CronJobFlowInformer(Informer[CronJobFlow]):
    def __init__(
        self,
        source: ListerWatcher,
        *,
        clock: Clock,
        namespaces: Sequence[str] = (),
        options: ReflectorOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            "cronjobflows",
            source,
            model=CronJobFlow,
            shared_models=(Condition,),
            fallback=status_placeholder(CronJobFlow, CronJobFlowStatus),
            namespaces=namespaces,
            clock=clock,
            options=options,
            rng=rng,
        )
