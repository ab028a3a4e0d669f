"""Which controller instance runs a flow: the `workflow.kube-zen.io/controller-instance` label.

A controller with an instance id selects, on the apiserver, the objects labelled with that id; one
without selects the objects without the label (Argo Workflows' instanceID semantics), so every labelled
object has exactly one owner among controllers that agree on their ids, and an unlabelled one belongs to
the controller without an id.
"""

from __future__ import annotations

from collections.abc import Mapping

from zen_flow.api.constants import LABEL_INSTANCE
from zen_flow.core.naming import is_label_value


def instance_selector(instance_id: str) -> str:
    """The labelSelector of the JobFlows and CronJobFlows a controller with `instance_id` runs ("" for
    none: the objects without the label)."""
    return f"{LABEL_INSTANCE}={instance_id}" if instance_id else f"!{LABEL_INSTANCE}"


def instance_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The instance label of an object's `labels`, as a map to merge into what is made for it (empty when
    it has none)."""
    labels = labels or {}
    return {LABEL_INSTANCE: labels[LABEL_INSTANCE]} if LABEL_INSTANCE in labels else {}


def without_instance(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` (a step's or template's) without the instance label: only the flow's says which controller
    made an object, so a template cannot mark an unlabelled flow's Jobs as another instance's."""
    return {k: v for k, v in labels.items() if k != LABEL_INSTANCE}


def instance_id_problem(instance_id: str) -> str | None:
    """Why `instance_id` cannot be the label's value, or None when it can ("" is no instance)."""
    if not instance_id or is_label_value(instance_id):
        return None
    return (
        f"{instance_id!r} is not a valid label value (at most 63 characters: letters, digits, '-', '_' "
        "and '.', beginning and ending with a letter or digit)"
    )
