"""The one retry policy and the one "is this retryable" check, shared by the sync and async paths.

The policy is free of I/O: each transport asks it what to do after an attempt and sleeps the way
its world sleeps (:class:`Clock` for threads, ``asyncio.sleep`` in the triggerer).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_cml.exceptions import CmlApiError

#: Statuses worth another try: rate limiting and gateway/server trouble.
RETRYABLE_STATUS_CODES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def is_retryable_status(status_code: int) -> bool:
    """Whether an HTTP error status may pass by itself (rate limiting, server or gateway trouble).

    :param status_code: the HTTP status of an error answer.
    """
    return status_code in RETRYABLE_STATUS_CODES


def is_refusal(status_code: int | None) -> bool:
    """Whether an error answer refused what the request asked, rather than the key, path or moment.

    A 4xx that is not 401, 403, 404, 408 or a retryable status: a start while the job is busy is
    one, whatever its code or wording.

    :param status_code: the HTTP status of an error answer (``None``: no answer).
    """
    return (
        status_code is not None
        and 400 <= status_code < 500
        and status_code not in (401, 403, 404, 408)
        and not is_retryable_status(status_code)
    )


def is_transient(error: CmlApiError) -> bool:
    """Whether an API error may pass by itself: no answer at all, or a retryable status.

    :param error: the error a request ended with (after its own retries).
    """
    return error.http_status is None or is_retryable_status(error.http_status)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent.

    :param value: the header's value.
    :param now: the current time for HTTP dates (default: now).
    """
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

    def can_retry(self, attempt: int) -> bool:
        """Whether another try is allowed after ``attempt`` failed.

        :param attempt: the 1-based number of the attempt that failed.
        """
        return attempt <= self.max_retries

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to sleep before retry number ``attempt``.

        A server's ``Retry-After`` wins (capped); otherwise exponential back-off with "equal
        jitter" (between half and all of the step), so that many clients failing together do not
        retry together.

        :param attempt: the 1-based number of the attempt that failed.
        :param retry_after: the failed answer's ``Retry-After`` header, if any.
        """
        server_wait = parse_retry_after(retry_after)
        if server_wait is not None:
            return min(server_wait, self.retry_after_cap)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


class Clock:
    """Time as the synchronous paths see it. Tests hand the hook a fake one instead of patching ``time``."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        return time.monotonic()

    def sleep(self, seconds: float, wake: threading.Event | None = None) -> None:
        """Sleep ``seconds``, or less when ``wake`` is set meanwhile (a kill must not wait a poll out).

        :param seconds: how long to sleep.
        :param wake: an event that ends the sleep early.
        """
        if wake is None:
            time.sleep(max(0.0, seconds))
        else:
            wake.wait(max(0.0, seconds))
