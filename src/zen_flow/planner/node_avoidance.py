"""`retryPolicy.affinity.nodeAntiAffinity: {}` (Argo's spelling): a retry keeps off the nodes the step's
failed attempts ran on (a bad GPU driver, a full disk, a flaky network card).

Where the names come from: when a Job fails, the controller already lists its pods to say how their
containers ended (kube/pods.py, `termination_messages`); the same list gives each failed pod's
`spec.nodeName`, handed to the planner under FAILED_NODES beside the containers' words. No other read is
made. The planner keeps them in `status.steps[].failedNodes` (distinct, oldest first, the newest
`api.constants.failed_nodes_kept`: one per attempt, at most MAX_FAILED_NODES), so a controller restart
keeps them and whichever replica creates the retry's Job builds the same one: it is built from the
status alone. A pod being deleted, disrupted or ended by a deadline names no node (`Pod.blames_its_node`),
nor does an attempt its Job's activeDeadlineSeconds ended.

How they are avoided: the next attempt's pod template gets, in
`affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`, one `matchFields` requirement
`metadata.name NotIn [node]` per node, ANDed into every nodeSelectorTerm the user wrote (the terms are
ORed: a term without it would let the pod back onto the node), or one new term when there is none.
`matchFields` on `metadata.name` is the node's own name; the hostname label may differ from it. One
requirement per node, not one with every name: the apiserver takes exactly one value for a field
selector's `In`/`NotIn`. Everything else of the user's affinity and nodeSelector stays as written.

A pod template that sets `nodeName` skips the scheduler and is pinned to that node: no affinity can move
it, and kubelet admission would reject every retry there (its required node affinity excludes the
node), using up the retries without running. Admission refuses the pair (validation/steps.py); a flow
that reaches the planner without the webhook fails the step when its retry's Job is built, naming the
field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zen_flow.api.constants import MAX_FAILED_NODES
from zen_flow.api.jobflow import Step
from zen_flow.planner.jobs import JobBuildError, object_at

# The key under which a failed Job's pod read (`PodMessages`) carries the nodes its failed pods ran on,
# space-separated, oldest first (a container name is a DNS label: it holds no ':').
FAILED_NODES = "nodes:"
NODE_NAME_FIELD = "metadata.name"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
# How many names a step's message shows (the rest are counted; status.steps[].failedNodes has them all).
SHOWN = 3
SHOWN_NAME = 63
# How the note a retrying step's message ends with begins (`avoiding`; `without_avoiding` cuts it off).
AVOIDING_MARK = "the next attempt avoids node"


class AvoidanceError(JobBuildError):
    """The template's affinity is not the shape the Job API takes (the message names the field): the
    attempt fails as for any template the Job cannot be built from."""


def avoids(step: Step) -> bool:
    """Do `step`'s retries keep off its failed attempts' nodes? (A Job step's only: refused on others.)"""
    policy = step.retry_policy
    return policy is not None and policy.avoids_failed_nodes and not step.is_manual and not step.is_flow


def failed_nodes(messages: Mapping[str, str] | None) -> tuple[str, ...]:
    """The nodes a failed Job's failed pods ran on, from its pod read (none: unread, or never scheduled)."""
    return tuple((messages or {}).get(FAILED_NODES, "").split())


def newest_last(names: Iterable[str]) -> list[str]:
    """`names` (oldest first) each once, at its last place: a node failed on again is among the newest."""
    return list(reversed(dict.fromkeys(reversed(list(names)))))


def remember(known: tuple[str, ...] | None, found: Iterable[str], keep: int) -> tuple[str, ...] | None:
    """`known` with `found` added as the newest (a node that failed again moves to the end), the newest
    `keep` (api.constants.failed_nodes_kept, at most MAX_FAILED_NODES) kept; None when there is none (no
    field in the status)."""
    fresh = newest_last(n for n in found if n)
    if not fresh:
        return known
    kept = [n for n in known or () if n not in fresh] + fresh
    return tuple(kept[-min(keep, MAX_FAILED_NODES) :])


def avoiding(nodes: tuple[str, ...]) -> str:
    """What a retrying step's message adds: `the next attempt avoids node a` (the newest first)."""
    newest = [n if len(n) <= SHOWN_NAME else n[: SHOWN_NAME - 3] + "..." for n in reversed(nodes[-SHOWN:])]
    more = f" and {len(nodes) - SHOWN} more" if len(nodes) > SHOWN else ""
    return f"{AVOIDING_MARK}{'s' if len(nodes) > 1 else ''} {', '.join(newest)}{more}"


def without_avoiding(message: str) -> str:
    """A retrying step's `message` without the note `avoiding` added at its end: for a step that ends
    instead of retrying (the flow fails), whose next attempt never comes."""
    head, note, _ = message.rpartition(f"; {AVOIDING_MARK}")
    return head if note else message


def avoid_nodes(job: dict[str, Any], nodes: tuple[str, ...]) -> None:
    """Keep `job`'s pods (a Job body, changed in place) off `nodes`; see the module's docstring."""
    if not nodes:
        return
    where = "template.spec.template.spec"
    pod = object_at(object_at(object_at(job, "spec", "template"), "template", "template.spec"), "spec", where)
    if pod.get("nodeName"):  # pinned: no affinity moves it (see the module's docstring)
        raise AvoidanceError(
            f"{where}.nodeName pins the pod to a node, so retryPolicy.affinity.nodeAntiAffinity cannot keep "
            "it off the nodes the step failed on: remove one of them"
        )
    affinity = object_at(pod, "affinity", where)
    node_affinity = object_at(affinity, "nodeAffinity", where + ".affinity")
    required = object_at(node_affinity, REQUIRED, where + ".affinity.nodeAffinity")
    terms = required.get("nodeSelectorTerms") or []
    if not isinstance(terms, list) or not all(
        isinstance(t, dict) and isinstance(t.get("matchFields") or [], list) for t in terms
    ):
        raise AvoidanceError(
            f"{where}.affinity.nodeAffinity.{REQUIRED}.nodeSelectorTerms must be a list of terms"
        )
    ours = [{"key": NODE_NAME_FIELD, "operator": "NotIn", "values": [node]} for node in nodes]
    if not terms:
        required["nodeSelectorTerms"] = [{"matchFields": ours}]
        return
    # An empty term matches no node: left as it is (adding ours would make it match).
    required["nodeSelectorTerms"] = [
        {**term, "matchFields": [*(term.get("matchFields") or []), *ours]}
        if term.get("matchExpressions") or term.get("matchFields")
        else term
        for term in terms
    ]
