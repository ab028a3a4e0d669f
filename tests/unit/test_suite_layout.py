"""The suite's own layout: rules that pytest enforces only when every tier is collected together."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique_across_tiers() -> None:
    # With pytest's default import mode two tiers holding test_x.py abort the whole `make test` run at
    # collection ("import file mismatch"), while each tier run alone passes: CI caught it, a tier run did not.
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py" and path.name != "__init__.py":
            seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a basename: {clashes}"
