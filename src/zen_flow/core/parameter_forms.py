"""How a step's input parameters appear in its Job: placeholders in its strings, and env vars. The
planner substitutes them (planner/parameters.py); admission checks that they name the step's inputs
(validation/placeholders.py), so both read them with the same patterns, from here.

Placeholders: `{{inputs.parameters.NAME}}`, and the original's `{{.Parameters.NAME}}`,
`{{parameters.NAME}}`, `{{.parameters.NAME}}` and `${parameters.NAME}`; spaces inside the braces are
allowed. Env vars: `ZF_PARAM_<NAME>`, upper-cased, every other character `_`.

The original ran a step's Job through Go's text/template with the context {Parameters, JobFlow,
StepName}. Its simple forms work here too: `{{.JobFlow.Name}}`, `{{.JobFlow.Namespace}}` and
`{{.StepName}}` (`CONTEXT`). Any other action on that context (`{{ .Parameters.x | upper }}`,
`{{.JobFlow.Spec}}`, `{{ printf "%s" .StepName }}`) is not supported: `unsupported` finds it, so that
admission refuses it and the planner never creates a Job with it left in. Other `{{ }}` text is not
ours (a `kubectl -o go-template='{{.metadata.name}}'` in a command) and stays as it is.
"""

from __future__ import annotations

import re

ENV_PREFIX = "ZF_PARAM_"
_PARAMETER = (
    r"\{\{\s*(?:inputs\.parameters|\.?[Pp]arameters)\.([A-Za-z0-9_.-]+?)\s*\}\}"
    r"|\$\{parameters\.([A-Za-z0-9_.-]+)\}"
)
_CONTEXT = r"\{\{\s*\.(?:JobFlow\.(Name|Namespace)|(StepName))\s*\}\}"
PLACEHOLDER = re.compile(_PARAMETER)
# What the planner substitutes, in one pass: parameters (groups 1, 2) and the context (groups 3, 4).
SUBSTITUTED = re.compile(f"{_PARAMETER}|{_CONTEXT}")
SUPPORTED = (
    "{{inputs.parameters.NAME}} (or {{.Parameters.NAME}}), {{.JobFlow.Name}}, {{.JobFlow.Namespace}} "
    "and {{.StepName}}, without pipes or functions"
)
_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
# An action that reads the original's context: a term that starts with one of its fields.
_READS_CONTEXT = re.compile(
    r"(?:^|[\s(|{])(?:\.(?:JobFlow|StepName|[Pp]arameters)\b|(?:inputs\.)?parameters\.)"
)
_NOT_ENV = re.compile(r"[^A-Z0-9]")


def env_name(parameter: str) -> str:
    return ENV_PREFIX + _NOT_ENV.sub("_", parameter.upper())


def marked(text: str) -> bool:
    """Whether `text` may hold a placeholder (a cheap test: most strings hold none)."""
    return "{{" in text or "${" in text


def placeholders(text: str) -> list[tuple[str, str]]:
    """The placeholders in `text`: (as written, the parameter's name)."""
    return [(m.group(0), m.group(1) or m.group(2)) for m in PLACEHOLDER.finditer(text)]


def unsupported(text: str) -> list[str]:
    """The actions in `text` that read the original's template context in a way not substituted here."""
    return [
        m.group(0)
        for m in _ACTION.finditer(text)
        if _READS_CONTEXT.search(m.group(0)) and SUBSTITUTED.fullmatch(m.group(0)) is None
    ]
