"""What each admission route does with a review's body: the pure review functions, each piece in a review
thread in its namespace's turn (`Lane`, webhook/review_threads.py: a new 500-step spec takes tens of
milliseconds, which the event loop keeps for probes and other reviews), and the API reads some need
between them, on the loop.

A request that decides a Manual step waits, after the validating review, for `authorize`
(webhook/approvers.py: may this user decide it?), and the create of a flow naming a
(Cluster)JobFlowTemplate for `templates` to read it (webhook/templates.py); a request with Flow steps,
for `templates` to read the templates they name (webhook/child_templates.py), at the same time as
`authorize`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from zen_flow.kube.errors import Forbidden, KubeError
from zen_flow.logging import get_logger
from zen_flow.webhook.child_templates import (
    FLOW_MARK,
    check_children,
    definition_children,
    flow_children,
    made_by_controller,
)
from zen_flow.webhook.envelope import parse_review
from zen_flow.webhook.review import Decisions, deny, deny_invalid, mutate_request, validate_review_decisions
from zen_flow.webhook.review_threads import Lane
from zen_flow.webhook.templates import (
    expand_review,
    names_template,
    refused_read,
    template_to_read,
    unreadable,
)

log = get_logger(__name__)

Review = Callable[[bytes, Lane], Awaitable[dict[str, Any]]]
# None when the request's user may take its decisions on Manual steps, else why not.
Authorize = Callable[[Decisions], Awaitable[str | None]]


class Templates(Protocol):
    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        """The raw JobFlowTemplate (`cluster`: ClusterJobFlowTemplate), None when there is none;
        `KubeError` when it cannot be read."""
        ...


def validation(authorize: Authorize | None, templates: Templates | None) -> Review:
    async def run(body: bytes, lane: Lane) -> dict[str, Any]:
        answer, decisions = await lane.run(validate_review_decisions, body)
        if not answer["response"]["allowed"]:
            return answer
        # The template reads and the approver's check (each bounded by 3 s) run at once: one after the
        # other they could outlast the apiserver's 5 s timeout, and failurePolicy would refuse the flow.
        asked = authorize(decisions) if decisions is not None and authorize is not None else _nothing()
        refusal: dict[str, Any] | None
        why: str | None
        refusal, why = await asyncio.gather(_flow_steps(body, lane, templates, answer), asked)
        if refusal is not None:
            return refusal
        return answer if why is None or decisions is None else deny(decisions.uid, 403, "Forbidden", why)

    return run


async def _flow_steps(
    body: bytes, lane: Lane, templates: Templates | None, answer: dict[str, Any]
) -> dict[str, Any] | None:
    """The refusal of a JobFlow whose Flow steps do not fit their templates (webhook/child_templates.py),
    else None, with what to say added to `answer`'s warnings."""
    if templates is None or FLOW_MARK not in body:
        return None
    request = await lane.run(parse_review, body)
    children = await lane.run(flow_children, request)
    if not children:
        return None
    found = await check_children(children, request.namespace, templates, lane.run)
    made = made_by_controller(request)
    if made is None and found.errors:
        return deny_invalid(request, found.errors)
    # A flow the controller creates is admitted: refusing it would skip a whole run, or fail a parent's
    # step, for what fails one step of it when that step is reached.
    after = f"admitted as {made}: the step fails when it is reached if this still holds"
    _warn(answer, found.notes if made is None else found.as_warnings(after))
    return None


async def _nothing() -> str | None:
    return None


def definition(review: Callable[[bytes], dict[str, Any]], kind: str, templates: Templates | None) -> Review:
    """A JobFlowTemplate's, ClusterJobFlowTemplate's or CronJobFlow's review, and what its Flow steps'
    templates say as warnings (webhook/child_templates.py: a definition runs later)."""

    async def run(body: bytes, lane: Lane) -> dict[str, Any]:
        answer = await lane.run(review, body)
        if templates is None or FLOW_MARK not in body or not answer["response"]["allowed"]:
            return answer
        request = await lane.run(parse_review, body)
        children = await lane.run(definition_children, request, kind)
        if children:
            found = await check_children(children, request.namespace, templates, lane.run)
            _warn(answer, found.as_warnings("checked again when a flow made from it runs the step"))
        return answer

    return run


def _warn(answer: dict[str, Any], warnings: list[str]) -> None:
    if warnings:
        response = answer["response"]
        response["warnings"] = [*response.get("warnings", ()), *warnings]


def mutation(templates: Templates | None) -> Review:
    async def run(body: bytes, lane: Lane) -> dict[str, Any]:
        request = await lane.run(parse_review, body)
        if not names_template(request):
            return await lane.run(mutate_request, request)
        ref = template_to_read(request) if templates is not None else None
        template = None
        if templates is not None and ref is not None:
            try:
                template = await templates.get(request.namespace, ref.name, cluster=ref.cluster)
            except Forbidden as err:
                log.warning("may not read a flow's template; denying", template=ref.subject, error=str(err))
                return refused_read(request, ref, err.message)
            except KubeError as err:
                log.warning("could not read a flow's template; denying", template=ref.subject, error=str(err))
                return unreadable(request, ref, str(err))
        return await lane.run(expand_review, request, template, read=ref is not None)

    return run
