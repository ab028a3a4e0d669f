"""The rules of `spec.stepDefaults` (core/step_defaults.py): what every Job step's Job gets.

Its values end up in each Job step's Job as if written in the step's template, so they are held to the
rules a step's template and `metadata` are (labels and annotations as the apiserver checks them), plus
the few the apiserver would otherwise only apply when it creates the Job, long after the flow was
admitted: a name that cannot be a service account's, a toleration it refuses. Errors name
`spec.stepDefaults...`, the field a user edits. A field the schema does not have is named too: the
apiserver would prune it silently (`zen-flow validate` and a CronJobFlow's template see it first).
Placeholders: `{{.JobFlow.Name}}`, `{{.JobFlow.Namespace}}`, `{{.JobFlow.ScheduledTime}}` and
`{{.StepName}}` are filled in per step as in a template; an input parameter's is refused, since the
defaults are every step's and the steps' inputs differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.parameter_forms import SUPPORTED
from zen_flow.core.step_defaults import POD_FIELDS
from zen_flow.validation.errors import Path, forbidden, invalid, not_supported
from zen_flow.validation.formats import label_value_problem, qualified_name_problem, subdomain_problem
from zen_flow.validation.placeholders import CONTEXT, PlaceholderMemo
from zen_flow.validation.pod_schema import check_affinity, check_security_context
from zen_flow.validation.reader import Reader
from zen_flow.validation.template import check_metadata_maps

STEP_DEFAULTS = "spec.stepDefaults"
FIELDS = ("metadata", "podSpec", "activeDeadlineSeconds")
# Pod spec fields holding an object's name, which the apiserver checks as a DNS-1123 subdomain.
_NAMES = ("serviceAccountName", "priorityClassName", "runtimeClassName", "schedulerName")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
INPUT_PLACEHOLDER = (
    "stepDefaults apply to every Job step, whose input parameters differ: put an input parameter's "
    "placeholder in the steps that declare it ({{.JobFlow.Name}}, {{.JobFlow.Namespace}}, "
    "{{.JobFlow.ScheduledTime}} and {{.StepName}} are allowed)"
)


def check_step_defaults(r: Reader, raw: Any, path: Path = STEP_DEFAULTS) -> None:
    defaults = r.mapping(raw, path)
    if defaults is None:
        return
    _unknown(r, defaults, FIELDS, path)
    meta = r.mapping(defaults.get("metadata"), path + ".metadata")
    if meta is not None:
        _unknown(r, meta, ("labels", "annotations"), path + ".metadata")
        check_metadata_maps(r, meta, path + ".metadata", own_keys=True)
    pod = r.mapping(defaults.get("podSpec"), path + ".podSpec")
    if pod is not None:
        _unknown(r, pod, POD_FIELDS, path + ".podSpec")
        _check_pod(r, pod, path + ".podSpec")
    deadline = r.integer(defaults.get("activeDeadlineSeconds"), path + ".activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        r.add(invalid(path + ".activeDeadlineSeconds", deadline, "must be greater than 0"))
    _check_placeholders(r, defaults, path)


def _unknown(r: Reader, value: Mapping[str, Any], fields: tuple[str, ...], path: Path) -> None:
    for key in value:
        if key not in fields:
            r.add(not_supported(f"{path}.{key}", key, fields, "stepDefaults takes only these fields"))


def _check_pod(r: Reader, pod: Mapping[str, Any], path: Path) -> None:
    for field in _NAMES:
        name = r.string(pod.get(field), f"{path}.{field}")
        if name and (problem := subdomain_problem(name)):
            r.add(invalid(f"{path}.{field}", name, problem))
    selector = r.string_map(pod.get("nodeSelector"), path + ".nodeSelector")
    for key, value in (selector or {}).items():
        if problem := qualified_name_problem(key):
            r.add(invalid(path + ".nodeSelector", key, problem))
        if problem := label_value_problem(value):
            r.add(invalid(f"{path}.nodeSelector[{key}]", value, problem))
    for item_path, toleration in r.mappings(pod.get("tolerations"), path + ".tolerations"):
        _check_toleration(r, toleration, item_path)
    for item_path, secret in r.mappings(pod.get("imagePullSecrets"), path + ".imagePullSecrets"):
        _unknown(r, secret, ("name",), item_path)
        name = r.string(secret.get("name"), item_path + ".name", require=True)
        if name and (problem := subdomain_problem(name)):
            r.add(invalid(item_path + ".name", name, problem))
    # Free-form in the CRD, as a step's own pod spec is: their fields are checked here (pod_schema.py).
    check_affinity(r, pod.get("affinity"), path + ".affinity")
    check_security_context(r, pod.get("securityContext"), path + ".securityContext")


def _check_toleration(r: Reader, toleration: Mapping[str, Any], path: Path) -> None:
    """As the apiserver checks a pod's toleration (validation.ValidateTolerations)."""
    _unknown(r, toleration, _TOLERATION_FIELDS, path)
    key = r.string(toleration.get("key"), path + ".key")
    operator = r.string(toleration.get("operator"), path + ".operator")
    value = r.string(toleration.get("value"), path + ".value")
    effect = r.string(toleration.get("effect"), path + ".effect")
    seconds = r.integer(toleration.get("tolerationSeconds"), path + ".tolerationSeconds")
    if key and (problem := qualified_name_problem(key)):
        r.add(invalid(path + ".key", key, problem))
    if operator and operator not in TOLERATION_OPERATORS:
        r.add(not_supported(path + ".operator", operator, TOLERATION_OPERATORS))
    if not key and operator != "Exists":
        r.add(invalid(path + ".operator", operator, "operator must be Exists when key is empty"))
    if operator == "Exists" and value:
        r.add(invalid(path + ".value", value, "value must be empty when operator is Exists"))
    elif operator != "Exists" and value and (problem := label_value_problem(value)):
        r.add(invalid(path + ".value", value, problem))
    if effect and effect not in TOLERATION_EFFECTS:
        r.add(not_supported(path + ".effect", effect, TOLERATION_EFFECTS))
    if seconds is not None and effect != "NoExecute":
        r.add(
            forbidden(path + ".tolerationSeconds", "tolerationSeconds is allowed only with effect NoExecute")
        )


def _check_placeholders(r: Reader, defaults: Mapping[str, Any], path: Path) -> None:
    for field in ("metadata", "podSpec"):
        node = defaults.get(field)
        if not isinstance(node, dict):
            continue
        for at, text, parameter in PlaceholderMemo().found(node):
            where = f"{path}.{field}{at}"
            if parameter is not None and parameter.startswith(CONTEXT):
                continue  # substituted in the step's Job like its own
            if parameter is None:
                r.add(invalid(where, text, f"unsupported template action: use {SUPPORTED}"))
            else:
                r.add(invalid(where, text, INPUT_PLACEHOLDER))
