"""Pure helpers of the core: the DAG, Go durations, `when` expressions (CEL), JSONPath, names, JSON patches.

No I/O, no asyncio: the planner and the validator build on these.
"""
