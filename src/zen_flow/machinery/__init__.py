"""client-go's controller mechanics, ported to asyncio with an injected clock.

Clock and timers, token buckets and per-item rate limiters, the deduplicating work queue, expectations,
Lease-based leader election. No knowledge of JobFlows: the controller and the API client build on them.
"""
