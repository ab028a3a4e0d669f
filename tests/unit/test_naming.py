"""naming: Job names and label values are always valid and never collide."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.naming import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    job_name,
    label_value,
)

DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
SUBDOMAIN = st.lists(DNS_LABEL, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 253)


def test_short_names_are_readable() -> None:
    assert job_name("dag-flow", "extract-a", 0).startswith("dag-flow-extract-a-")
    assert job_name("dag-flow", "extract-a", 2).endswith("-r2")


@given(SUBDOMAIN, SUBDOMAIN, st.integers(0, 10_000))
def test_job_names_are_valid_and_short(flow: str, step: str, attempt: int) -> None:
    name = job_name(flow, step, attempt)
    assert len(name) <= 63
    assert is_dns1123_subdomain(name)
    assert is_label_value(name)  # pods get it as the job-name label
    assert name == job_name(flow, step, attempt)


@given(SUBDOMAIN, st.lists(st.tuples(SUBDOMAIN, st.integers(0, 5)), min_size=2, max_size=6, unique=True))
def test_attempts_and_steps_never_collide_within_a_flow(flow: str, pairs: list[tuple[str, int]]) -> None:
    names = [job_name(flow, step, attempt) for step, attempt in pairs]
    assert len(set(names)) == len(names)


def test_known_ambiguities_are_disambiguated() -> None:
    # Attempt suffix versus a step name that ends like one.
    assert job_name("f", "b", 1) != job_name("f", "b-r1", 0)
    # Dashes inside flow versus step names (two flows in one namespace).
    assert job_name("a", "b-c", 0) != job_name("a-b", "c", 0)
    # Long names that share a prefix.
    long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
    assert job_name("f", long_a, 0) != job_name("f", long_b, 0)


def test_label_values() -> None:
    assert label_value("etl") == "etl"
    assert label_value("a.b-c_d") == "a.b-c_d"
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert label_value(long_a) != label_value(long_b)
    assert label_value("a/b") != label_value("a-b")
    assert label_value("---") != ""


@given(st.text(max_size=300))
def test_label_value_is_always_valid(value: str) -> None:
    assert is_label_value(label_value(value))


@given(DNS_LABEL, SUBDOMAIN)
def test_a_trailing_newline_is_never_part_of_a_valid_name(label: str, subdomain: str) -> None:
    # Python's `$` matches before a final "\n": a `^...$` pattern tried with match took "a\n" for "a".
    key = f"{subdomain}/{label}"
    for valid, value in ((is_dns1123_label, label), (is_dns1123_subdomain, subdomain),
                         (is_label_value, label), (is_qualified_name, key)):  # fmt: skip
        assert valid(value)
        assert not valid(value + "\n")


def test_validators() -> None:
    assert is_dns1123_label("a-1")
    assert not is_dns1123_label("a.b")
    assert not is_dns1123_label("A")
    assert is_dns1123_subdomain("a.b-c")
    assert is_qualified_name("approve.workflow.kube-zen.io/step-1")
    assert not is_qualified_name("workflow.kube-zen.io/approved/step-1")
    assert not is_qualified_name("x/" + "a" * 64)
