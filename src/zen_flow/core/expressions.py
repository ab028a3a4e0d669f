"""The `when` language: CEL over the steps' phases and outputs and the flow's metadata, fail-closed.

Variables (JOBFLOW_API.md decision 7):
  steps  map step name -> {"phase": "Succeeded", "outputs": {"parameters": {name: value}}}
  flow   {"name", "namespace", "labels", "annotations", "arguments"}

Forms of the original keep working: `always` / `true` and `never` / `false` (any case), and
`steps.<name>.phase == 'Succeeded'` with names that contain dashes. `steps.extract-a.phase` is not CEL
(CEL reads `steps.extract - a.phase`), so before compiling, a dotted step reference whose name is not a
plain CEL identifier is rewritten to the index form `steps["extract-a"]`. The name after `steps.` runs
over letters, digits, `_` and `-` written without spaces; write subtraction with spaces. A step name
with dots must use the index form (`steps["a.b"]`).

Evaluation is fail-closed: an error (unknown key, wrong type, division by zero...) or a non-bool result
counts as false, and the reason is returned for the step's status message. Compilation is cached: the
planner evaluates on every reconcile.

Admission checks that an expression compiles without building its program: a 500-step flow carries 500
conditions that differ only in the step they name (`steps.build-7.phase == 'Succeeded'`), and compiling
each took a quarter of a millisecond. Whether an expression compiles does not depend on the names it
refers to (the rewrite below produces them: an identifier after a dot, or a plain quoted string in an
index), so the check compiles its *shape* (every such name replaced by one placeholder) once per shape;
the program itself is compiled the first time the planner evaluates it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import cel

from zen_flow.api.jobflow import JobFlow, StepStatus

MAX_EXPRESSION_LENGTH = 4096
COMPILE_CACHE_SIZE = 4096  # conditions kept compiled (the planner evaluates them on every reconcile)
_MAX_REASON = 200
_CONSTANTS = {"always": True, "true": True, "never": False, "false": False, "": True}
# CEL reserved words cannot follow a dot either; the rewrite turns `steps.in.phase` into `steps["in"]...`.
_RESERVED = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if", "import", "in"),
        *("let", "loop", "package", "namespace", "null", "return", "true", "var", "void"),
    }
)
# One token per match, in this order: a string literal starts with its quote, after an optional prefix
# (r: raw, b: bytes, any case), so it is tried before a word; a triple quote before a single one.
_SCANNER = re.compile(
    r"(?P<space>\s+)|(?P<comment>//[^\n]*\n?)"
    r"|(?P<quote>(?P<prefix>(?i:rb|br|r|b)?)(?P<q>'''|\"\"\"|'|\"))"
    r"|(?P<ident>\w+)|(?P<punct>.)",
    re.DOTALL,
)


# `steps.<name>.phase == 'Succeeded'`: a name as the rewrite reads it (words joined by runs of '-', no
# spaces), a quoted word; several joined by && or ||. See scan_phase_tests.
_PHASE_TEST_SOURCE = r"steps\.(\w+(?:-+\w+)*)\.phase\s*[=!]=\s*(?:'\w*'|\"\w*\")"
_PHASE_TEST = re.compile(_PHASE_TEST_SOURCE)
_PHASE_TESTS = re.compile(rf"\s*{_PHASE_TEST_SOURCE}(?:\s*(?:&&|\|\|)\s*{_PHASE_TEST_SOURCE})*\s*")


def _body(raw: bool, quote: str) -> re.Pattern[str]:
    """The rest of a string literal after its opening quote: an escape pairs a backslash with the next
    character (a raw literal has none); a triple-quoted literal ends at the first unescaped triple."""
    if raw:
        inner = ".*?" if len(quote) == 3 else f"[^{quote}]*"
    else:
        inner = r"(?:[^\\]|\\.)*?" if len(quote) == 3 else rf"(?:[^\\{quote}]|\\.)*"
    return re.compile(inner + quote, re.DOTALL)


_BODIES = {(raw, quote): _body(raw, quote) for raw in (False, True) for quote in ("'''", '"""', "'", '"')}
# CEL's comprehension macros: the only constructs that loop (see expression_cost.py).
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# What a step reference becomes in an expression's shape (see the module docstring).
_PLACEHOLDER = "_s"


class ExpressionError(ValueError):
    """A `when` expression that does not compile; the message says where and why."""


class BudgetExceeded(Exception):
    """An evaluator stopped an expression that ran past its time budget; the message says which."""


class Token(NamedTuple):  # a tuple: an expression of a few hundred characters makes a hundred of them
    kind: str  # "ident" | "string" | "punct"
    text: str
    start: int
    end: int
    value: str = ""  # decoded value of a string literal


@dataclass(frozen=True, eq=False)
class CompiledWhen:
    """A compiled `when`: a constant, or a CEL program plus the steps it names."""

    source: str
    cel_source: str
    constant: bool | None
    references: frozenset[str]
    # True when `steps` is used in a way that names no step statically (`steps.exists(...)`,
    # `steps[x]`): evaluation then needs every step.
    dynamic: bool
    # Uses a comprehension macro: the only kind of expression whose cost is not linear in its inputs,
    # so the controller evaluates it in a separate process under a time budget.
    loops: bool = False

    @cached_property
    def program(self) -> cel.Program:
        """The CEL program, compiled on first use (admission never needs it). Its shape compiled, so it
        compiles; a constant has none."""
        if self.constant is not None:
            raise ValueError(f"{self.source!r} is a constant, not a program")
        import cel  # see _compile_shape

        return cel.compile(self.cel_source)


@dataclass(frozen=True)
class WhenContext:
    """What an expression sees; `steps` maps names to `step_view` dicts."""

    steps: Mapping[str, Mapping[str, Any]]
    flow: Mapping[str, Any]

    @classmethod
    def from_flow(cls, flow: JobFlow, steps: Mapping[str, StepStatus] | None = None) -> WhenContext:
        statuses = steps if steps is not None else {s.name: s for s in flow.status.steps}
        return cls({name: step_view(st) for name, st in statuses.items()}, flow_view(flow))


@dataclass(frozen=True)
class WhenResult:
    value: bool
    reason: str  # why it is false (or "true"); goes into the step message
    # The evaluation was stopped for running too long: the step fails (a skip would hide a broken spec).
    exceeded: bool = False


# Evaluates a compiled expression with comprehensions on the given variables and returns CEL's value;
# raises BudgetExceeded when it takes too long. The controller passes one that runs in another process.
Evaluator = Callable[["CompiledWhen", dict[str, Any]], Any]


def step_view(status: StepStatus) -> dict[str, Any]:
    params = status.outputs.parameters if status.outputs else ()
    return {"phase": status.phase, "outputs": {"parameters": {p.name: p.value for p in params}}}


def flow_view(flow: JobFlow) -> dict[str, Any]:
    meta = flow.metadata
    return {
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": dict(meta.labels),
        "annotations": dict(meta.annotations),
        "arguments": {
            a.name: a.value for a in (flow.spec.arguments.parameters if flow.spec.arguments else ())
        },
    }


# --- scanning ---------------------------------------------------------------------------------------


def tokens(src: str) -> list[Token]:
    out: list[Token] = []
    pos, n = 0, len(src)
    scan = _SCANNER.match
    while pos < n:
        m = scan(src, pos)  # always matches: its last alternative is any one character
        assert m is not None
        kind, end = m.lastgroup, m.end()
        if kind == "quote":
            quote = m.group("q")
            closed = _BODIES["r" in m.group("prefix").lower(), quote].match(src, end)
            if closed is None:
                raise ExpressionError(f"unterminated string literal at offset {pos}")
            stop = closed.end()
            text, body = src[pos:stop], src[end : stop - len(quote)]
            out.append(Token("string", text, pos, stop, _decode(text, body) if "\\" in body else body))
            end = stop
        elif kind == "ident" or kind == "punct":
            out.append(Token(kind, m.group(), pos, end))
        pos = end  # "space" and "comment" are skipped
    return out


def is_comprehension(toks: list[Token], i: int) -> bool:
    """Is toks[i] the name of a comprehension macro called as a method (`x.all(`)?"""
    return (
        0 < i < len(toks) - 1
        and toks[i].kind == "ident"
        and toks[i].text in MACROS
        and toks[i - 1].text == "."
        and toks[i + 1].text == "("
    )


def _decode(literal: str, body: str) -> str:
    # CEL string escapes are a subset of Python's; bytes or odd escapes fall back to the raw body.
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return body
    return value if isinstance(value, str) else body


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and name.isascii() and name not in _RESERVED


def _rewrite(src: str, toks: list[Token]) -> tuple[str, str, frozenset[str], bool]:
    """Rewrite dotted dashed step references; return (CEL source, its shape, referenced steps, dynamic
    use?). The shape names `_PLACEHOLDER` wherever the source names a step after `steps.`."""
    pieces: list[str] = []
    shape: list[str] = []
    last = 0
    refs: set[str] = set()
    dynamic = False
    k = 0
    while k < len(toks):
        tok = toks[k]
        if tok.kind != "ident" or tok.text != "steps" or (k > 0 and toks[k - 1].text == "."):
            k += 1
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        if nxt is not None and nxt.text == "." and k + 2 < len(toks) and toks[k + 2].kind == "ident":
            # The name: ident tokens joined by runs of '-' (DNS labels allow "a--b"), all glued together
            # without spaces.
            m = k + 2
            while True:
                j = m + 1
                while j < len(toks) and toks[j].text == "-" and toks[j].start == toks[j - 1].end:
                    j += 1
                if (
                    j == m + 1
                    or j >= len(toks)
                    or toks[j].kind != "ident"
                    or toks[j].start != toks[j - 1].end
                ):
                    break
                m = j
            name = src[toks[k + 2].start : toks[m].end]
            after = toks[m + 1] if m + 1 < len(toks) else None
            if after is not None and after.text == "(" and m == k + 2:
                dynamic = True  # a macro or method on the map: steps.exists(s, ...)
            else:
                refs.add(name)
                kept = src[last : nxt.start]
                if _is_identifier(name):
                    pieces.append(src[last : toks[m].end])
                    shape.extend((kept, "." + _PLACEHOLDER))
                else:
                    pieces.extend((kept, f'["{name}"]'))
                    shape.extend((kept, f'["{_PLACEHOLDER}"]'))
                last = toks[m].end
            k = m + 1
            continue
        if (
            nxt is not None
            and nxt.text == "["
            and k + 3 < len(toks)
            and toks[k + 2].kind == "string"
            and toks[k + 3].text == "]"
        ):
            refs.add(toks[k + 2].value)
            k += 4
            continue
        dynamic = True
        k += 1
    pieces.append(src[last:])
    shape.append(src[last:])
    return "".join(pieces), "".join(shape), frozenset(refs), dynamic


class Scanned(NamedTuple):
    cel_source: str
    shape: str  # see the module docstring
    references: frozenset[str]
    dynamic: bool
    loops: bool


def scan(expr: str) -> Scanned:
    """Tokenize and rewrite; raises ExpressionError for an unterminated string literal."""
    toks = tokens(expr)
    cel_source, shape, refs, dynamic = _rewrite(expr, toks)
    loops = any(is_comprehension(toks, i) for i in range(len(toks)))
    return Scanned(cel_source, shape, refs, dynamic, loops)


def scan_phase_tests(expr: str) -> Scanned | None:
    """`scan` for the conditions nearly every flow writes, `steps.<name>.phase == '<Phase>'` (or !=)
    joined by && or ||, without tokenizing: a new 500-step flow brings 500 of them, and tokenizing
    each took ~40 µs. None for anything else (the caller scans it); a test holds both to the same result."""
    if _PHASE_TESTS.fullmatch(expr) is None:
        return None
    cel: list[str] = []
    shape: list[str] = []
    refs: set[str] = set()
    last = 0
    for m in _PHASE_TEST.finditer(expr):
        name = m.group(1)
        refs.add(name)
        head = expr[last : m.start(1) - 1]  # up to and including "steps"
        if _is_identifier(name):
            cel.append(expr[last : m.end(1)])
            shape.append(head + "." + _PLACEHOLDER)
        else:
            cel.append(f'{head}["{name}"]')
            shape.append(f'{head}["{_PLACEHOLDER}"]')
        last = m.end(1)
    cel.append(expr[last:])
    shape.append(expr[last:])
    return Scanned("".join(cel), "".join(shape), frozenset(refs), False, False)


# --- compiling and evaluating -------------------------------------------------------------------------


@lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _compile(expr: str) -> CompiledWhen | ExpressionError:
    key = expr.strip().lower()
    if key in _CONSTANTS:
        return CompiledWhen(expr, key, _CONSTANTS[key], frozenset(), False)
    if len(expr) > MAX_EXPRESSION_LENGTH:
        return ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        scanned = scan_phase_tests(expr) or scan(expr)
    except ExpressionError as err:
        return err
    cel_source, shape, refs, dynamic, loops = scanned
    variables = _compile_shape(shape)
    if variables is None:  # compiled again for an error message that quotes the expression, not its shape
        import cel

        try:
            variables = tuple(cel.compile(cel_source).variables())
        except Exception as err:  # the binding raises ValueError; any failure means "does not compile"
            return ExpressionError(_first_lines(str(err)))
    bad = [v for v in variables if v not in ("steps", "flow") and not _bound_by_macro(v, expr)]
    if bad:
        return ExpressionError(f"unknown variable {bad[0]!r}: only 'steps' and 'flow' are defined")
    return CompiledWhen(expr, cel_source, None, refs, dynamic, loops)


@lru_cache(maxsize=1024)
def _compile_shape(shape: str) -> tuple[str, ...] | None:
    """The variables a shape uses; None when it does not compile."""
    # Imported on first use: the `cel` package's __init__ also imports its command-line interface
    # (typer, prompt_toolkit, rich): 9 MB resident and 0.2 s of start-up for a controller whose flows
    # may never use `when`.
    import cel

    try:
        return tuple(cel.compile(shape).variables())
    except Exception:  # the binding raises ValueError, but any failure means "does not compile"
        return None


def _bound_by_macro(name: str, expr: str) -> bool:
    # Program.variables() also lists names bound by comprehensions (`steps.exists(s, ...)`); such a
    # name appears as the first macro argument `(name,`.
    compact = "".join(expr.split())
    return f"({name}," in compact


def _first_lines(message: str, limit: int = 600) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def compile_when(expr: str) -> CompiledWhen:
    """Compile (cached); raise `ExpressionError` when the expression cannot compile. Used at admission."""
    result = _compile(expr)
    if isinstance(result, ExpressionError):
        raise result
    return result


def has_comprehension(expr: str | None) -> bool:
    """Does the expression use a comprehension macro (and compile)? Such expressions are the ones an
    evaluator should bound in time."""
    compiled = _compile(expr) if expr is not None else None
    return isinstance(compiled, CompiledWhen) and compiled.loops


def referenced_steps(expr: str) -> set[str]:
    """The step names the expression names statically; the validator checks they exist."""
    return set(compile_when(expr).references)


def check_when(
    expr: str | CompiledWhen | None, context: WhenContext, evaluate: Evaluator | None = None
) -> WhenResult:
    """Evaluate fail-closed and say why: errors and non-bool results are false. Expressions with
    comprehensions go to `evaluate` when one is given (in-process otherwise)."""
    if expr is None:
        return WhenResult(True, "no condition")
    compiled = _compile(expr) if isinstance(expr, str) else expr
    if isinstance(compiled, ExpressionError):
        return WhenResult(False, _bound(f"when does not compile: {compiled}"))
    if compiled.constant is not None:
        return WhenResult(compiled.constant, f"when is {compiled.cel_source or 'empty'}")
    if compiled.dynamic:
        steps: Mapping[str, Any] = dict(context.steps)
    else:
        steps = {name: context.steps[name] for name in compiled.references if name in context.steps}
    variables = {"steps": steps, "flow": dict(context.flow)}
    try:
        if compiled.loops and evaluate is not None:
            value = evaluate(compiled, variables)
        else:
            value = compiled.program.execute(variables)  # compiled here the first time
    except BudgetExceeded as err:
        # The reason first: a long expression would push it past the message bound.
        reason = _bound(f"when stopped: {err}; expression {compiled.source!r}")
        return WhenResult(False, reason, exceeded=True)
    except Exception as err:  # fail-closed: whatever went wrong, the condition does not hold
        return WhenResult(False, _bound(f"when {compiled.source!r} failed: {type(err).__name__}: {err}"))
    if not isinstance(value, bool):
        return WhenResult(False, _bound(f"when {compiled.source!r} is not a bool: {value!r}"))
    return WhenResult(value, _bound(f"when {compiled.source!r} is {str(value).lower()}"))


def evaluate_when(expr: str | CompiledWhen | None, context: WhenContext) -> bool:
    """True only when the expression evaluates to the bool true (fail-closed)."""
    return check_when(expr, context).value


def _bound(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
