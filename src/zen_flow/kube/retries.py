"""The retry policy of one idempotent API call: which failures are sent again, and how long each wait is.

Few attempts, short, jittered, honouring Retry-After (craft.md §7). Long retries belong to the workqueue.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import tenacity

from zen_flow.kube.errors import ApiError, RequestTimedOut, TransportError
from zen_flow.kube.transport import ClientOptions


def retrying(options: ClientOptions, sleep: Callable[[float], Awaitable[None]]) -> tenacity.AsyncRetrying:
    """The attempts of one call: `options`' attempts and deadline, the last error raised when they run out."""

    def wait(state: tenacity.RetryCallState) -> float:
        return retry_wait(options, state)

    def retried(error: BaseException) -> bool:
        return transient(error) and (options.retry_timed_out or not isinstance(error, RequestTimedOut))

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(options.retry_attempts)
        | tenacity.stop_after_delay(options.retry_deadline),
        wait=wait,
        retry=tenacity.retry_if_exception(retried),
        sleep=sleep,
        reraise=True,
    )


def retry_wait(options: ClientOptions, state: tenacity.RetryCallState) -> float:
    cap = options.retry_max_wait
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, ApiError) and error.retry_after is not None:
        return min(error.retry_after, cap)
    # 0.1 s, 0.2 s, 0.4 s ... each plus up to 100 % jitter, so a fleet of clients does not retry in step.
    base = 0.1 * 2.0 ** (state.attempt_number - 1)
    return min(base * (1 + random.random()), cap)


def transient(error: BaseException) -> bool:
    return isinstance(error, TransportError) or (isinstance(error, ApiError) and error.transient)
