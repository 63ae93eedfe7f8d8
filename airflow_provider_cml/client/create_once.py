"""Create exactly once: every non-idempotent POST (start a run, create a job) goes through here.

A POST whose answer was lost may have acted. Before it is sent again, what it would have created is
looked for through a listing, which may lag behind: :data:`LOOKUPS` reads, a second apart. The POST
is sent again only when that finds nothing. One retry budget (the connection's ``max_retries``) and
the caller's deadline cover the whole: attempts, look-ups and back-offs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.client.retry import Clock, RetryPolicy, is_transient
from airflow_provider_cml.client.sync_client import NotDone
from airflow_provider_cml.exceptions import CmlApiError, Undecidable

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

#: After a lost answer: how often the listing is read, a second apart, before a resend.
LOOKUPS = 3
#: A create with no deadline of its caller's (every attempt, look-up and back-off) ends within this
#: many request timeouts.
CREATE_BUDGET = 3

#: One read of the listing: what the lost POST created, or ``None`` when it is not (yet) there.
LookUp = Callable[[], "Mapping[str, Any] | None"]
#: What a refusal (an HTTP error answer) means: raise, return what exists, or ``None`` to resend.
OnRefusal = Callable[[CmlApiError, "Attempt"], "Mapping[str, Any] | None"]


class Attempt:
    """Where a create stands: which attempt this is, and whether an earlier answer was lost.

    :param policy: the retry policy.
    :param clock: what deadlines are read from and back-offs slept by.
    :param deadline: when the whole create must have ended (on ``clock``).
    """

    def __init__(self, policy: RetryPolicy, clock: Clock, deadline: float) -> None:
        self.policy = policy
        self.clock = clock
        self.deadline = deadline
        self.number = 0
        #: An earlier attempt may have acted (its answer was lost).
        self.answer_lost = False

    def may_resend(self, delay: float) -> bool:
        """Whether another attempt fits the retry budget and, after ``delay``, the deadline.

        :param delay: seconds to wait before it.
        """
        return self.policy.can_retry(self.number) and self.clock.monotonic() + delay < self.deadline


def look_up_lagging(look_up: LookUp, clock: Clock, deadline: float) -> Mapping[str, Any] | None:
    """What a lost POST created, read up to :data:`LOOKUPS` times a second apart, by ``deadline``.

    A transient error on a read counts as "not seen"; any other error, and :class:`Undecidable`, is
    raised.

    :param look_up: one read of the listing.
    :param clock: what the reads are spaced by.
    :param deadline: when looking must end.
    """
    for look in range(LOOKUPS):
        if look:
            if clock.monotonic() + 1.0 >= deadline:
                return None
            clock.sleep(1.0)
        try:
            found = look_up()
        except CmlApiError as exc:
            if isinstance(exc, Undecidable) or not is_transient(exc):
                raise
            continue
        if found is not None:
            return found
    return None


def post_once(
    send: Callable[[], Any],
    look_up: LookUp,
    *,
    policy: RetryPolicy,
    clock: Clock,
    deadline: float,
    what: str,
    log: logging.Logger | Any,
    on_refusal: OnRefusal | None = None,
) -> Any:
    """Send a non-idempotent POST so that what it creates exists once, and return it.

    Each attempt ends in one of three ways:

    1. **Answered**: the answer is returned (or its error raised, see ``on_refusal``).
    2. **Answer lost** (no answer, a reset, a 5xx after sending): it may have acted, so
       :func:`look_up_lagging` looks for what it created first; the POST is sent again only when
       nothing is found. A POST that provably never arrived (connection refused, 429) is sent again
       directly.
    3. **Refused** (an HTTP error answer, with ``on_refusal``): ``on_refusal`` decides.

    :param send: one attempt (a ``transport.request(..., idempotent=False, deadline=...)``).
    :param look_up: one read of a listing that shows what the POST created, or ``None``.
    :param policy: the retry policy (one budget for the whole create).
    :param clock: what back-offs sleep by and the deadline is read from.
    :param deadline: when the whole create must have ended.
    :param what: the create in words, for log lines ("start of job 'train'").
    :param log: where a lost answer and a resend are told.
    :param on_refusal: what a refusal means; without it, it is raised.
    """
    attempt = Attempt(policy, clock, deadline)
    while True:
        attempt.number += 1
        try:
            return send()
        except NotDone as not_done:
            attempt.answer_lost = attempt.answer_lost or not_done.maybe_acted
            found = look_up_lagging(look_up, clock, deadline) if not_done.maybe_acted else None
            if found is not None:
                log.warning("The answer to the %s was lost, but it happened.", what)
                return found
            delay = policy.delay(attempt.number, not_done.retry_after)
            if not_done.resend_useless or not attempt.may_resend(delay):
                raise not_done.error from None
            log.warning("The %s was not confirmed and nothing was found; retrying in %.1fs.", what, delay)
            clock.sleep(delay)
        except CmlApiError as exc:
            if on_refusal is None:
                raise
            found = on_refusal(exc, attempt)
            if found is not None:
                return found


def post_once_for(
    hook: CmlHook,
    path: str,
    body: Mapping[str, Any],
    look_up: Callable[[], Mapping[str, Any] | None],
    *,
    deadline: float | None = None,
    what: str,
    not_found: str,
    secrets: Collection[str] = (),
    on_refusal: OnRefusal | None = None,
) -> dict[str, Any]:
    """POST ``body`` to ``path`` through ``hook``, so that what it creates exists once (:func:`post_once`).

    Every attempt, look-up and back-off ends by ``deadline`` (default: :data:`CREATE_BUDGET`
    request timeouts from now), within the connection's retry budget.

    :param hook: the hook (its transport, retry policy, clock and log).
    :param path: where to POST.
    :param body: the JSON body.
    :param look_up: one look for what an earlier attempt may have created (``None``: not there).
    :param deadline: when all of it must end (the hook's clock).
    :param what: what is created, for messages (``"start of job 'x'"``).
    :param not_found: what a 404 means.
    :param secrets: values in the body to mask in the server's messages.
    :param on_refusal: what to make of a refused attempt (default: raise it).
    """
    if deadline is None:
        deadline = hook.budget(CREATE_BUDGET * hook.config.timeout)
    with hook.within(deadline):  # the look-ups too
        return dict(
            post_once(
                lambda: hook.transport.request(
                    "POST",
                    path,
                    body=body,
                    idempotent=False,
                    not_found=not_found,
                    secrets=secrets,
                    deadline=deadline,
                ),
                look_up,
                policy=hook.config.retry_policy,
                clock=hook.clock,
                deadline=deadline,
                what=what,
                log=hook.log,
                on_refusal=on_refusal,
            )
        )
