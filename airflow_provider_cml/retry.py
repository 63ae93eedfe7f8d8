"""The single retry policy shared by the synchronous (requests) and asynchronous (httpx) paths.

The policy is free of I/O: each transport asks it what to do after an attempt and sleeps the way
its world sleeps (``time.sleep`` or ``asyncio.sleep``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

#: Statuses worth another try: rate limiting and gateway/server trouble.
RETRYABLE_STATUS_CODES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request and how long to wait first.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param backoff_base: first back-off in seconds; doubles with each retry.
    :param backoff_max: longest back-off computed from the exponent.
    :param retry_after_cap: longest wait a server's ``Retry-After`` may impose.
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_cap: float = 120.0

    def is_retryable_status(self, status_code: int) -> bool:
        return status_code in RETRYABLE_STATUS_CODES

    def can_retry(self, attempt: int) -> bool:
        """Whether another try is allowed after ``attempt`` (1-based) failed."""
        return attempt <= self.max_retries

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based).

        A server's ``Retry-After`` wins (capped); otherwise exponential back-off with "full jitter",
        so that many clients failing together do not retry together.
        """
        server_wait = parse_retry_after(retry_after)
        if server_wait is not None:
            return min(server_wait, self.retry_after_cap)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)
