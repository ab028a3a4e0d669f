"""The benchmark harness (`python -m zen_flow_dev.bench`, `make bench`): zen-flow against an ideal baseline.

Not part of the controller: nothing under zen_flow imports this package except itself. See
docs/BENCHMARKS.md for what it measures, how, and the figures.
"""
