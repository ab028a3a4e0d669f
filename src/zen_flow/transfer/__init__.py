"""`zen-flow artifact`: what zen-flow's transfer containers do inside a step's pod (never the controller)."""
