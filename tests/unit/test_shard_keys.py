"""--shards: a flow's shard is stable and spread evenly; quotas sum to N and differ by at most one."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow import config
from zen_flow.api.constants import LABEL_CONCURRENCY_KEY
from zen_flow.core.shards import (
    MAX_SHARDS,
    flow_shard_key,
    fnv1a_32,
    member_lease_name,
    quotas,
    shard_lease_name,
    shard_of,
    shard_of_lease,
)


def test_the_hash_is_fnv1a_32_and_the_same_in_every_process() -> None:
    # Published FNV-1a test vectors: a salted hash (Python's `hash`) would differ between replicas.
    assert fnv1a_32("") == 0x811C9DC5
    assert fnv1a_32("a") == 0xE40C292C
    assert fnv1a_32("foobar") == 0xBF9CF968
    assert shard_of("team-a/nightly", 4) == fnv1a_32("team-a/nightly") % 4


def test_flows_spread_evenly_over_the_shards() -> None:
    for shards in (2, 4, 7, MAX_SHARDS):
        counts = Counter(shard_of(f"ns-{i % 13}/flow-{i}", shards) for i in range(20_000))
        expected = 20_000 / shards
        assert set(counts) == set(range(shards))
        assert all(abs(n - expected) < 0.2 * expected for n in counts.values()), counts


def test_a_concurrency_group_is_one_shard_whatever_its_flows_are_named() -> None:
    labels = {LABEL_CONCURRENCY_KEY: "deploy"}
    keys = {flow_shard_key("team-a", f"flow-{i}", labels) for i in range(50)}
    assert keys == {"team-a/deploy"}
    # The same key in another namespace is another group; an empty value is no group.
    assert flow_shard_key("team-b", "x", labels) == "team-b/deploy"
    assert flow_shard_key("team-a", "x", {LABEL_CONCURRENCY_KEY: ""}) == "team-a/x"
    assert flow_shard_key("team-a", "x", None) == "team-a/x"


@given(st.sets(st.text(min_size=1, max_size=12), max_size=80), st.integers(1, MAX_SHARDS))
def test_quotas_sum_to_the_shards_and_differ_by_at_most_one(members: set[str], shards: int) -> None:
    given_quotas = quotas(members, shards)
    assert set(given_quotas) == members
    if members:
        assert sum(given_quotas.values()) == shards
        assert max(given_quotas.values()) - min(given_quotas.values()) <= 1
        # Every replica computes the same quotas, whatever order it lists the members in.
        assert quotas(sorted(members, reverse=True), shards) == given_quotas


def test_lease_names_are_valid_and_map_back_to_their_shard() -> None:
    assert shard_lease_name("zen-flow-controller", 3) == "zen-flow-controller-shard-3"
    assert shard_of_lease("zen-flow-controller", "zen-flow-controller-shard-3", 4) == 3
    assert shard_of_lease("zen-flow-controller", "zen-flow-controller-shard-4", 4) is None
    assert shard_of_lease("zen-flow-controller", "zen-flow-controller-shard-03", 4) is None
    # isdigit() takes both; int() refuses the first and reads the second as 1.
    assert shard_of_lease("zen-flow-controller", "zen-flow-controller-shard-\N{SUPERSCRIPT TWO}", 4) is None
    assert (
        shard_of_lease("zen-flow-controller", "zen-flow-controller-shard-\N{ARABIC-INDIC DIGIT ONE}", 4)
        is None
    )
    assert shard_of_lease("zen-flow-controller", "zen-flow-controller-team-shard-1", 4) is None
    member = member_lease_name("zen-flow-controller", "Pod_A1b2")
    assert member.startswith("zen-flow-controller-member-")
    assert member == member.lower()
    assert "_" not in member
    assert member == member_lease_name("zen-flow-controller", "Pod_A1b2")


def settings(*argv: str, env: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), env=env or {})


def test_shards_come_from_the_flag_or_the_environment_and_default_to_one_leader() -> None:
    assert settings().shards == 1
    assert settings("--shards", "4").shards == 4
    assert settings(env={"ZEN_FLOW_SHARDS": "8"}).shards == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shards", "0"], "--shards must be between 1 and 64"),
        (["--shards", "65"], "--shards must be between 1 and 64"),
        (["--shards", "two"], "--shards: invalid literal"),
        (["--shards", "2", "--leader-elect", "false"], "--shards above 1 needs --leader-elect"),
        (["--shards", "2", "--leader-election-name", "x" * 64], "--shards: the Lease name"),
        (["--shards", "2", "--identity", "zf-0"], "--identity cannot be set with --shards above 1"),
    ],
)
def test_bad_shard_settings_are_refused_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(*argv)
