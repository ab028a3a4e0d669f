"""The API permissions the controller's code needs, read from the code itself, and RBAC rule matching.

`required_permissions()` scans `zen_flow.kube` for the requests it sends: every
`<client>.request[_raw]("<METHOD>", <RESOURCE>.path(namespace, name, subresource), ...)` call (and
`request_model(Model, "<METHOD>", ...)`) and every
`ResourceLister` subclass (LIST + WATCH). So a request added to the code without its RBAC rule fails the
manifest tests (tests/unit/test_manifests.py) and the RBAC integration test (tests/integration/test_rbac.py)
instead of failing in a cluster with a 403.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import zen_flow.kube
from zen_flow.kube.resource import Resource, ResourceLister

COORDINATION_GROUP = "coordination.k8s.io"

_VERB_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch"}
# The transport: its requests take their path from the callers scanned here.
_TRANSPORT_MODULES = frozenset({"zen_flow.kube.client"})


@dataclass(frozen=True, order=True)
class Permission:
    group: str  # "" for the core group
    resource: str  # plural, with "/subresource" when there is one
    verb: str
    why: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)

    @property
    def leader_election(self) -> bool:
        """Leases are granted by a Role in the controller's own namespace, not by the ClusterRole."""
        return self.group == COORDINATION_GROUP and self.resource == "leases"

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}"


def required_permissions() -> frozenset[Permission]:
    """Every (group, resource, verb) the controller uses, with where in the code it is used."""
    found: dict[tuple[str, str, str], Permission] = {}
    for module in _kube_modules():
        for perm in _scan(module):
            found.setdefault(perm.key, perm)
    for perm in _implied_permissions():
        found.setdefault(perm.key, perm)
    return frozenset(found.values())


def webhook_permissions() -> frozenset[Permission]:
    """Every (group, resource, verb) an admission review sends: the requests of the `zen_flow.kube`
    modules `zen_flow.controller.replica_servers.webhook_server` hands the webhook server (its only API
    clients). A release that serves the webhooks needs these in every namespace the webhooks review."""
    from zen_flow.controller import replica_servers

    tree = ast.parse(inspect.getsource(replica_servers.webhook_server))
    imported = (node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    names = sorted({name for name in imported if name is not None and name.startswith("zen_flow.kube.")})
    assert names, "webhook_server hands the webhooks no API client"
    found: dict[tuple[str, str, str], Permission] = {}
    for name in names:
        for perm in _scan(importlib.import_module(name)):
            found.setdefault(perm.key, perm)
    return frozenset(found.values())


def _implied_permissions() -> Iterator[Permission]:
    """Permissions no request names: the apiserver checks them on a request for another resource."""
    from zen_flow.planner.jobs import owner_reference
    from zen_flow_dev.testing.flows import make_flow

    ref = owner_reference(make_flow([{"name": "a", "type": "Manual"}]))
    if ref.get("blockOwnerDeletion"):
        # OwnerReferencesPermissionEnforcement: setting blockOwnerDeletion on a Job's ownerReference
        # requires `update` on the owner's finalizers subresource.
        yield Permission(
            "workflow.kube-zen.io",
            "jobflows/finalizers",
            "update",
            "zen_flow.planner.jobs.owner_reference: blockOwnerDeletion",
        )
    from zen_flow.api.cronjobflow import CronJobFlow
    from zen_flow.planner.cron import owner_reference as run_owner_reference

    if run_owner_reference(CronJobFlow()).get("blockOwnerDeletion"):
        # The same for a CronJobFlow's runs (JobFlows it creates, owned by it).
        yield Permission(
            "workflow.kube-zen.io",
            "cronjobflows/finalizers",
            "update",
            "zen_flow.planner.cron.owner_reference: blockOwnerDeletion",
        )


def _kube_modules() -> list[ModuleType]:
    package_dir = Path(inspect.getfile(zen_flow.kube)).parent
    names = sorted(f"zen_flow.kube.{p.stem}" for p in package_dir.glob("*.py") if p.stem != "__init__")
    return [importlib.import_module(name) for name in names if name not in _TRANSPORT_MODULES]


def _scan(module: ModuleType) -> Iterator[Permission]:
    tree = ast.parse(inspect.getsource(module))
    where = module.__name__
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and _is_lister(module, node):
            resource = _lister_resource(module, node)
            for verb in ("list", "watch"):
                yield Permission(resource.group, resource.plural, verb, f"{where}.{node.name} (informer)")
        if isinstance(node, ast.Call) and _request_args(node):
            yield _request_permission(module, node, where)


def _is_lister(module: ModuleType, node: ast.ClassDef) -> bool:
    cls = getattr(module, node.name, None)
    return inspect.isclass(cls) and issubclass(cls, ResourceLister) and cls is not ResourceLister


def _lister_resource(module: ModuleType, node: ast.ClassDef) -> Resource:
    """The Resource passed to `super().__init__(client, RESOURCE, ...)` in the lister's __init__."""
    for call in ast.walk(node):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "__init__"
            and isinstance(call.func.value, ast.Call)
            and isinstance(call.func.value.func, ast.Name)
            and call.func.value.func.id == "super"
            and len(call.args) >= 2
        ):
            return _resource(module, call.args[1])
    raise AssertionError(f"{module.__name__}.{node.name}: no super().__init__(client, RESOURCE, ...)")


# KubeClient's request methods and where their (method, path) arguments start.
_REQUEST_METHODS = {"request": 0, "request_raw": 0, "request_model": 1}


def _request_args(node: ast.Call) -> list[ast.expr]:
    """`[method, path, ...]` of a KubeClient request call (after `request_model`'s model), else []."""
    if not isinstance(node.func, ast.Attribute) or node.func.attr not in _REQUEST_METHODS:
        return []
    args = node.args[_REQUEST_METHODS[node.func.attr] :]
    if len(args) >= 2 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args
    return []


def _request_permission(module: ModuleType, node: ast.Call, where: str) -> Permission:
    method_arg, path = _request_args(node)[:2]
    method = str(method_arg.value).upper()  # type: ignore[attr-defined]
    if not (isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute) and path.func.attr == "path"):
        raise AssertionError(f"{where}:{node.lineno}: request path is not <RESOURCE>.path(...)")
    resource = _resource(module, path.func.value)
    has_name = len(path.args) >= 2 and not (
        isinstance(path.args[1], ast.Constant) and path.args[1].value is None
    )
    plural = resource.plural
    if len(path.args) >= 3:
        sub = path.args[2]
        if not (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
            raise AssertionError(f"{where}:{node.lineno}: subresource must be a literal")
        plural = f"{plural}/{sub.value}"
    if method == "GET":
        verb = "get" if has_name else "list"
    elif method == "DELETE":
        verb = "delete" if has_name else "deletecollection"
    else:
        verb = _VERB_BY_METHOD[method]
    return Permission(resource.group, plural, verb, f"{where}:{node.lineno}")


def _resource(module: ModuleType, expr: ast.expr) -> Resource:
    if not isinstance(expr, ast.Name):
        raise AssertionError(f"{module.__name__}: resource must be a module-level name, not {ast.dump(expr)}")
    value = getattr(module, expr.id, None)
    if not isinstance(value, Resource):
        raise AssertionError(f"{module.__name__}.{expr.id} is not a zen_flow.kube.resource.Resource")
    return value


# --- RBAC rules ------------------------------------------------------------------------------------


def rule_allows(rule: Mapping[str, Any], group: str, resource: str, verb: str, name: str = "") -> bool:
    """Whether one PolicyRule grants `verb` on `resource` (plural[/sub]) of `group` (for object `name`)."""

    def matches(values: Sequence[str] | None, wanted: str) -> bool:
        return bool(values) and ("*" in values or wanted in values)  # type: ignore[operator]

    if not (matches(rule.get("apiGroups"), group) and matches(rule.get("verbs"), verb)):
        return False
    if not matches(rule.get("resources"), resource):
        return False
    names = rule.get("resourceNames") or []
    return not names or name in names


def rules_allow(
    rules: Iterable[Mapping[str, Any]], group: str, resource: str, verb: str, name: str = ""
) -> bool:
    return any(rule_allows(rule, group, resource, verb, name) for rule in rules)


def granted(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the rules name explicitly (wildcards stay "*")."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((group, resource, verb))
    return out
