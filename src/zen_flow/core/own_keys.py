"""zen-flow's own label and annotation keys: those under its API group's domain, `workflow.kube-zen.io/...`
and its subdomains' (`approve.workflow.kube-zen.io/...`).

Only zen-flow writes them on what it creates, and it trusts them there: a ConfigMap labelled
`workflow.kube-zen.io/memo-cache: "true"` is a memoize cache whose entries become other flows' step
outputs, `workflow.kube-zen.io/controller-instance` says which controller made an object. The objects of
`spec.resourceTemplates` are created with the controller's identity, so their templates may not carry
these keys: a flow author who may not write ConfigMaps would otherwise have the controller plant a cache
(validation/resources.py refuses them, planner/resources.py never sends one).
"""

from __future__ import annotations

from zen_flow.api.constants import GROUP

# The detail of the refusal, said alike by admission (a field error) and by the planner (a flow failed).
OWN_KEY_REFUSAL = (
    f"a key of zen-flow's own ({GROUP} and its subdomains): only zen-flow sets these on what it creates, "
    f'and it trusts them there (a ConfigMap labelled {GROUP}/memo-cache: "true" is a memoize cache that '
    "other flows' steps are served from); use a key of another domain"
)


def is_own_key(key: str) -> bool:
    """Whether the label or annotation `key` is zen-flow's: its prefix (before the `/`) is the API group or
    a subdomain of it. A key without a prefix, or whose prefix only ends like it (`notworkflow.kube-zen.io`),
    is not."""
    prefix, slash, _ = key.partition("/")
    if not slash:
        return False
    prefix = prefix.lower()  # the apiserver refuses upper case here; compared as it would be read
    return prefix == GROUP or prefix.endswith("." + GROUP)
