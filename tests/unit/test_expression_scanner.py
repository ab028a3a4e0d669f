"""The `when` scanner (one regular expression per token) against a character-by-character reference.

The reference is the scanner zen-flow shipped before (kept here as the oracle, obviously right and 3x
slower): same tokens, same positions, same decoded string values, and the same unterminated literals
refused, on any text made of the characters that matter to it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.expression_scanner import (
    ExpressionError,
    _decode,
    phase_test_references,
    scan,
    scan_phase_tests,
    tokens,
)
from zen_flow.core.expressions import compile_when

_PREFIXES = ("rb", "br", "r", "b", "")
_WORD = re.compile(r"\w+")


def _string_end(src: str, i: int) -> tuple[int, bool, int]:
    for prefix in _PREFIXES:
        n = len(prefix)
        if src[i : i + n].lower() != prefix:
            continue
        j = i + n
        if j < len(src) and src[j] in "'\"":
            quote = 3 if src[j : j + 3] in ("'''", '"""') else 1
            return j + quote, "r" in prefix, quote
    return -1, False, 0


def reference_tokens(src: str) -> list[tuple[str, str, int, int, str]]:
    out: list[tuple[str, str, int, int, str]] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            nl = src.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        body, raw, qlen = _string_end(src, i) if ch in "'\"rRbB" else (-1, False, 0)
        if body >= 0:
            quote = src[body - qlen : body]
            j = body
            while True:
                if j >= n:
                    raise ExpressionError(f"unterminated string literal at offset {i}")
                if not raw and src[j] == "\\":
                    j += 2
                    continue
                if src.startswith(quote, j):
                    break
                j += 1
            end = j + qlen
            out.append(("string", src[i:end], i, end, _decode(src[i:end], src[body:j])))
            i = end
            continue
        if ch.isalnum() or ch == "_":
            word = _WORD.match(src, i)
            j = word.end() if word else i + 1
            out.append(("ident", src[i:j], i, j, ""))
            i = j
            continue
        out.append(("punct", ch, i, i + 1, ""))
        i += 1
    return out


def _scan(scanner: object, src: str) -> list[tuple[str, str, int, int, str]] | str:
    try:
        return [tuple(t) for t in scanner(src)]  # type: ignore[operator, misc]
    except ExpressionError as err:
        return f"error: {err}"


# The characters the scanner treats specially, plus some that \w, isspace() and escapes care about.
TEXT = st.text(alphabet="'\"\\rRbBn_a1 \t\n/.-()[]=é٣\u2003x{}", max_size=40)


@given(TEXT)
def test_scanner_matches_the_reference(src: str) -> None:
    assert _scan(tokens, src) == _scan(reference_tokens, src)


@pytest.mark.parametrize(
    "src",
    [
        "steps.extract-a.phase == 'Succeeded'",
        "'''unterminated",
        "r'''raw ' still open",
        "'a\\'b' + \"c\\\"d\"",
        "rb'bytes' // comment\n && true",
        "'\\u00e9' == \"é\"",
    ],
)
def test_scanner_matches_the_reference_on_known_edges(src: str) -> None:
    assert _scan(tokens, src) == _scan(reference_tokens, src)


def test_conditions_that_differ_only_in_the_step_they_name_compile_once() -> None:
    """Admission compiles the shape of a condition once; each condition still names its own step."""
    first = compile_when("steps.fan-out-1.phase == 'Succeeded' && steps.prep.phase != 'Failed'")
    second = compile_when("steps.fan-out-2.phase == 'Succeeded' && steps.load.phase != 'Failed'")
    assert first.references == {"fan-out-1", "prep"}
    assert second.references == {"fan-out-2", "load"}
    assert first.cel_source == "steps[\"fan-out-1\"].phase == 'Succeeded' && steps.prep.phase != 'Failed'"
    # the lazily compiled programs are each the expression's own
    steps = {"fan-out-2": {"phase": "Succeeded"}, "load": {"phase": "Running"}}
    assert second.program.execute({"steps": steps, "flow": {}}) is True
    with pytest.raises(ExpressionError, match="unknown variable 'nope'"):
        compile_when("steps.fan-out-3.phase == nope")
    with pytest.raises(ExpressionError):
        compile_when("steps.fan-out-4.phase == ")


# Step names as users write them (DNS labels, reserved words, a leading digit, dash runs) and some that
# only the rewrite's rule allows (underscores, non-ASCII word characters).
_NAMES = st.one_of(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["in", "null", "true", "a--b", "a_b", "é", "x٣", "build-7"]),
)
_PHASE_TESTS = st.builds(
    lambda name, op, phase, quote, pad: f"steps.{name}.phase{pad}{op}{pad}{quote}{phase}{quote}",
    _NAMES,
    st.sampled_from(["==", "!="]),
    st.sampled_from(["Succeeded", "Failed", "Skipped", ""]),
    st.sampled_from(["'", '"']),
    st.sampled_from(["", " ", "  ", "\n"]),
)


@given(
    st.lists(_PHASE_TESTS, min_size=1, max_size=4),
    st.lists(st.sampled_from([" && ", " || ", "&&", "\n|| "]), min_size=3, max_size=3),
    st.sampled_from(["", " ", "\t\n"]),
)
def test_the_phase_test_fast_path_reads_conditions_as_the_scanner_does(
    tests: list[str], joiners: list[str], pad: str
) -> None:
    expr = pad + tests[0] + "".join(j + t for j, t in zip(joiners, tests[1:], strict=False)) + pad
    fast = scan_phase_tests(expr)
    assert fast is not None, expr  # every condition of this grammar takes the fast path
    assert fast == scan(expr)
    # What admission reads of it without compiling: it compiles, never loops, and names these steps.
    compiled = compile_when(expr)
    assert not compiled.loops
    assert phase_test_references(expr) == compiled.references


@pytest.mark.parametrize(
    "expr",
    [
        "steps.a .phase == 'Succeeded'",  # a space ends the name: the scanner reads `steps.a`
        "steps.a-.phase == 'Succeeded'",
        "steps.a.phase == r'Succeeded'",
        "steps.a.phase == 'Succ eeded'",
        "steps.a.phase == 'Succeeded' && flow.name == 'x'",
        "steps.exists(s, s.phase == 'Failed')",
        "(steps.a.phase == 'Succeeded')",
    ],
)
def test_anything_else_is_scanned(expr: str) -> None:
    assert scan_phase_tests(expr) is None
    assert phase_test_references(expr) is None
