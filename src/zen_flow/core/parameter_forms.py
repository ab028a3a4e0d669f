"""How a step's input parameters appear in its Job: placeholders in its strings, and env vars. The
planner substitutes them (planner/parameters.py); admission checks that they name the step's inputs
(validation/placeholders.py), so both read them with the same patterns, from here.

Placeholders: `{{inputs.parameters.NAME}}`, and the original's `{{.Parameters.NAME}}`,
`{{parameters.NAME}}`, `{{.parameters.NAME}}` and `${parameters.NAME}`; spaces inside the braces are
allowed. Env vars: `ZF_PARAM_<NAME>`, upper-cased, every other character `_`.
"""

from __future__ import annotations

import re

ENV_PREFIX = "ZF_PARAM_"
PLACEHOLDER = re.compile(
    r"\{\{\s*(?:inputs\.parameters|\.?[Pp]arameters)\.([A-Za-z0-9_.-]+?)\s*\}\}"
    r"|\$\{parameters\.([A-Za-z0-9_.-]+)\}"
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
