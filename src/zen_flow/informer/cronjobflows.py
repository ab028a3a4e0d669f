"""The CronJobFlow informer: a small cache (one object per schedule), decoded whole on every event.

A CronJobFlow that does not parse is cached as a placeholder (its metadata, and its status if that
parses), so its reconcile can say what is wrong in a condition instead of the informer stopping.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.api.meta import Condition
from zen_flow.informer.informer import Informer, metadata_of
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
            fallback=_placeholder,
            namespaces=namespaces,
            clock=clock,
            options=options,
            rng=rng,
        )


def _placeholder(raw: dict[str, Any]) -> CronJobFlow:
    status = CronJobFlowStatus()
    raw_status = raw.get("status")
    if isinstance(raw_status, dict):
        with contextlib.suppress(ValidationError):
            status = CronJobFlowStatus.model_validate(raw_status)
    return CronJobFlow(metadata=metadata_of(raw), status=status)
