"""How a step's input parameters appear in its Job: placeholders in its strings, and env vars. The
planner substitutes them (planner/parameters.py); admission checks that they name the step's inputs
(validation/placeholders.py), so both read them with the same patterns, from here.

Placeholders: `{{inputs.parameters.NAME}}`, and the original's `{{.Parameters.NAME}}`,
`{{parameters.NAME}}`, `{{.parameters.NAME}}` and `${parameters.NAME}`; spaces inside the braces are
allowed. Env vars: `ZF_PARAM_<NAME>`, upper-cased, every other character `_`.

The original ran a step's Job through Go's text/template with the context {Parameters, JobFlow,
StepName}. Its simple forms work here too: `{{.JobFlow.Name}}`, `{{.JobFlow.Namespace}}` and
`{{.StepName}}`; and one of ours, `{{.JobFlow.ScheduledTime}}`, the run's logical time
(planner/scheduled_time.py). Any other action on that context (`{{ .Parameters.x | upper }}`,
`{{.JobFlow.Spec}}`, `{{ printf "%s" .StepName }}`) is not supported: `unsupported` finds it, so that
admission refuses it and the planner never creates a Job with it left in. Other `{{ }}` text is not
ours (a `kubectl -o go-template='{{.metadata.name}}'` in a command) and stays as it is.

Every `{{ }}` form takes text/template's trim markers, with its meaning (`substitute`): `{{- ` removes
the space, tab, CR and LF right before the placeholder, ` -}}` those right after it, in the text of the
same string; the dash needs one of them beside it (Go reads `{{-3}}` as the number -3, and refuses
`{{-.StepName}}`, so admission does too). Only the template's text is trimmed, never a value put in.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ENV_PREFIX = "ZF_PARAM_"
# What substituting parameters may add to one object, a Job body (placeholders and env vars) or a child
# flow's arguments: within the apiserver's 1.5 MiB, room left for the template. The planner counts it as
# it substitutes (planner/parameters.py); admission refuses what literal values make certain to pass it.
MAX_SUBSTITUTED_BYTES = 1024 * 1024
# Go's white space around a trim marker and the one it trims (text/template: space, tab, CR, LF).
GO_SPACE = " \t\r\n"
# What the planner substitutes, in one pass. A `{{ }}` form: a left trim marker (group 1), a parameter
# (group 2) or a context field (3: Name, Namespace or ScheduledTime of JobFlow, 4: StepName), a right trim
# marker (5);
# or `${parameters.NAME}` (group 6), which is not Go's and takes none.
SUBSTITUTED = re.compile(
    r"\{\{(-[ \t\r\n])?\s*"
    r"(?:(?:inputs\.parameters|\.?[Pp]arameters)\.([A-Za-z0-9_.-]+?)"
    r"|\.(?:JobFlow\.(Name|Namespace|ScheduledTime)|(StepName)))"
    r"\s*?([ \t\r\n]-)?\}\}"
    r"|\$\{parameters\.([A-Za-z0-9_.-]+)\}"
)
SUPPORTED = (
    "{{inputs.parameters.NAME}} (or {{.Parameters.NAME}}), {{.JobFlow.Name}}, {{.JobFlow.Namespace}}, "
    "{{.JobFlow.ScheduledTime}} and {{.StepName}}, without pipes or functions (a trim marker is {{- or -}} "
    "with a space beside the dash)"
)
_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
# An action that reads the original's context: a term that starts with one of its fields.
# A `-` right before it too, after `{{` or white space: `{{-.StepName}}` (no space after the dash) is no
# trim marker, and Go refuses it, as `{{ -.StepName }}`. Not after other text: `"app-parameters.yaml"` in
# someone else's `{{index .data "app-parameters.yaml"}}` is not ours.
_READS_CONTEXT = re.compile(
    r"(?:^\{\{-|^|[\s(|{]-?)(?:\.(?:JobFlow|StepName|[Pp]arameters)\b|(?:inputs\.)?parameters\.)"
)
_NOT_ENV = re.compile(r"[^A-Z0-9]")


def env_name(parameter: str) -> str:
    return ENV_PREFIX + _NOT_ENV.sub("_", parameter.upper())


def marked(text: str) -> bool:
    """Whether `text` may hold a placeholder (a cheap test: most strings hold none)."""
    return "{{" in text or "${" in text


def parameter(match: re.Match[str]) -> str | None:
    """The parameter a `SUBSTITUTED` match names; None for a context field."""
    return match.group(2) or match.group(6)


def context_field(match: re.Match[str]) -> str | None:
    """The context field a `SUBSTITUTED` match names (Name, Namespace, ScheduledTime, StepName); None for a
    parameter."""
    return match.group(3) or match.group(4)


def placeholders(text: str) -> list[tuple[str, str]]:
    """The parameter placeholders in `text`: (as written, the parameter's name)."""
    return [(m.group(0), name) for m in SUBSTITUTED.finditer(text) if (name := parameter(m)) is not None]


def substitute(text: str, value: Callable[[re.Match[str]], str]) -> str:
    """`text` with every `SUBSTITUTED` placeholder replaced by `value(match)`, in one pass, and the text
    beside a trim marker trimmed as text/template does (only the text of `text`, never a value)."""
    out: list[str] = []
    end = 0
    trim_next = False  # the previous placeholder ended with ` -}}`
    for match in SUBSTITUTED.finditer(text):
        before = text[end : match.start()]
        if trim_next:
            before = before.lstrip(GO_SPACE)
        if match.group(1):
            before = before.rstrip(GO_SPACE)
        out += (before, value(match))
        trim_next = match.group(5) is not None
        end = match.end()
    rest = text[end:]
    out.append(rest.lstrip(GO_SPACE) if trim_next else rest)
    return "".join(out)


def unsupported(text: str) -> list[str]:
    """The actions in `text` that read the original's template context in a way not substituted here."""
    return [
        m.group(0)
        for m in _ACTION.finditer(text)
        if _READS_CONTEXT.search(m.group(0)) and SUBSTITUTED.fullmatch(m.group(0)) is None
    ]
