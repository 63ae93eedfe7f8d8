"""create_once.post_once: the one path every non-idempotent POST takes (pure: fake send and look-up)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_cml.client.create_once import LOOKUPS, post_once
from airflow_provider_cml.client.retry import RetryPolicy
from airflow_provider_cml.client.sync_client import NotDone
from airflow_provider_cml.exceptions import CmlApiError, Undecidable

LOG = logging.getLogger("test")


def lost(maybe_acted: bool = True, **kwargs) -> NotDone:
    return NotDone(CmlApiError("no answer"), maybe_acted=maybe_acted, **kwargs)


class Script:
    """Sends answer from ``answers`` in turn (an exception is raised); looks answer from ``looks``."""

    def __init__(self, answers: list, looks: list | None = None) -> None:
        self.answers, self.looks = list(answers), list(looks or [])
        self.sent = self.looked = 0

    def send(self):
        self.sent += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def look_up(self):
        self.looked += 1
        answer = self.looks.pop(0) if self.looks else None
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _post(script: Script, clock, *, retries: int = 3, deadline: float = 100.0, **kwargs):
    return post_once(
        script.send,
        script.look_up,
        policy=RetryPolicy(max_retries=retries, backoff_base=1.0),
        clock=clock,
        deadline=clock.now + deadline,
        what="start of job 'x'",
        log=LOG,
        **kwargs,
    )


def test_an_answer_is_returned_at_once(clock):
    script = Script([{"id": "r1"}])
    assert _post(script, clock) == {"id": "r1"} and script.looked == 0 and clock.sleeps == []


def test_a_lost_answer_is_looked_up_through_a_lagging_listing_before_any_resend(clock):
    script = Script([lost()], looks=[None, None, {"id": "r1"}])
    assert _post(script, clock) == {"id": "r1"}
    assert script.sent == 1 and script.looked == 3 and clock.sleeps == [1.0, 1.0]


def test_resent_only_when_provably_absent_and_never_after_a_redirect(clock):
    script = Script([lost(), {"id": "r2"}])
    assert _post(script, clock) == {"id": "r2"} and script.sent == 2 and script.looked == LOOKUPS
    script = Script([lost(resend_useless=True)])
    with pytest.raises(CmlApiError, match="no answer"):
        _post(script, clock)
    assert script.sent == 1


def test_a_post_that_never_arrived_is_resent_without_looking(clock):
    script = Script([lost(maybe_acted=False), {"id": "r1"}])
    assert _post(script, clock) == {"id": "r1"} and script.looked == 0


def test_one_budget_and_the_deadline_bound_the_whole(clock):
    script = Script([lost(maybe_acted=False)] * 10)
    with pytest.raises(CmlApiError):
        _post(script, clock, retries=2)
    assert script.sent == 3  # the first attempt and two retries
    script = Script([lost()] * 10)
    start = clock.now
    with pytest.raises(CmlApiError):
        _post(script, clock, retries=10, deadline=5.0)
    assert clock.now - start <= 5.0


def test_an_undecidable_look_up_stops_everything_and_a_transient_one_is_not_seen(clock):
    script = Script([lost()], looks=[Undecidable("cannot tell")])
    with pytest.raises(Undecidable):
        _post(script, clock)
    assert script.sent == 1
    script = Script([lost()], looks=[CmlApiError("no answer"), {"id": "r1"}])
    assert _post(script, clock) == {"id": "r1"}


def test_a_refusal_is_raised_or_decided_by_on_refusal(clock):
    refusal = CmlApiError("refused", http_status=400)
    with pytest.raises(CmlApiError, match="refused"):
        _post(Script([refusal]), clock)
    seen = []

    def on_refusal(exc, attempt):
        seen.append((exc, attempt.number, attempt.answer_lost))
        return None if attempt.number == 2 else {"id": "found"}

    script = Script([lost(), refusal, refusal])
    assert _post(script, clock, on_refusal=on_refusal) == {"id": "found"}
    assert [(n, lost_) for _, n, lost_ in seen] == [(2, True), (3, True)]
