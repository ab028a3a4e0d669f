"""Public testing utilities (a fake cluster for the planner)."""
