"""zen-flow's developer tooling (never shipped): local cluster, dev mode, benchmarks, test harness.

It may import any layer of `zen_flow`; `zen_flow` never imports it (an import contract in `make check`).
"""
