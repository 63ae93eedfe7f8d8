"""What every Cloudera AI operator shares: the connection, the polling cadence, the deadline, the wait.

:class:`CmlBaseOperator` holds the parameters every waiting operator takes (``poll_interval``,
``timeout``, ``cml_conn_id``, ``deferrable``, ``unknown_grace``), checks them when the DAG is
parsed, works out the deadline a wait must keep, and waits on a workload of any kind: here, or in the
triggerer when deferrable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import BaseOperator, default_deferrable
from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.hooks.lazy import LazyHook
from airflow_provider_cml.validation import validate_positive

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.plan import Ended, Wait


class CmlBaseOperator(BaseOperator):
    """The base of the Cloudera AI operators that wait for what they start.

    :param poll_interval: seconds between status checks while waiting.
    :param timeout: seconds to wait at most; ``None``: no limit of its own (``execution_timeout``,
        if set, still bounds a deferred wait).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param unknown_grace: seconds a workload may stay in a status that says nothing of its progress
        before the task gives up on it; ``None``: no limit.
    """

    ui_color = "#f96702"

    #: The :class:`~airflow_provider_cml.hooks.cml.CmlHook` for ``cml_conn_id``, made on first use.
    hook = LazyHook()

    def __init__(
        self,
        *,
        poll_interval: float = 30,
        timeout: float | None = None,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_positive("poll_interval", poll_interval, allow_none=False)
        validate_positive("timeout", timeout)
        validate_positive("unknown_grace", unknown_grace)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cml_conn_id = cml_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.unknown_grace = unknown_grace
        #: The setting whose end is the deadline (see :meth:`_deadline`), named in a timeout's message.
        self._limit = "timeout"

    def _deadline(self, context: Context) -> float | None:
        """UNIX time when waiting must end: ``timeout`` from now, or the end of ``execution_timeout``.

        The end of ``execution_timeout`` counts when deferrable only: the trigger stops what the task
        owns at that time; without this, Airflow's own deferral timeout would fail the task but leave
        the workload going. A synchronous wait leaves ``execution_timeout`` to Airflow, whose kill
        stops what the task owns (``on_kill``).
        """
        deadlines: list[tuple[float, str]] = []
        now = time.time()
        if self.timeout is not None:
            deadlines.append((now + self.timeout, "timeout"))
        if self.deferrable and self.execution_timeout is not None:
            # The task's start; now when Airflow has not recorded it (Airflow 2's dag.test()).
            start_date = getattr(context["ti"], "start_date", None)
            started = start_date.timestamp() if start_date is not None else now
            deadlines.append((started + self.execution_timeout.total_seconds(), "execution_timeout"))
        if not deadlines:
            return None
        deadline, self._limit = min(deadlines)
        return deadline

    def _bounded(self, deadline: float | None) -> AbstractContextManager[None]:
        """Every request made inside ends by ``deadline`` (UNIX time), retries and back-offs included.

        So ``timeout`` bounds the whole task, not only its waits: a workbench that hangs or fails
        while the task looks names up or creates what it waits on cannot hold it past the deadline.
        """
        return self.hook.within(self.hook.monotonic_deadline(deadline))

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        """Seconds left before ``deadline`` (at least a millisecond), or ``None`` for no deadline."""
        return None if deadline is None else max(deadline - time.time(), 0.001)

    def wait_or_defer(
        self,
        wait: Wait,
        deadline: float | None,
        *,
        resume: str,
        answer: Mapping[str, Any] | None = None,
        carry: Mapping[str, Any] | None = None,
        bridge: float = 0.0,
    ) -> Ended:
        """Wait here, or defer to ``resume`` when deferrable: the one way every operator waits.

        :param wait: what is waited on, and how.
        :param deadline: UNIX time when the wait ends (``None``: no limit).
        :param resume: the method the task resumes in after the trigger fired; it gets the event,
            which :meth:`resumed` reads.
        :param answer: the workload's fresh answer, when the caller has one: if it has already
            ended (and no restart is followed), that is the end, without a poll or a deferral.
        :param carry: what the resumed task needs back (JSON); the deadline and ``_limit`` are added.
        :param bridge: seconds a deferrable task first waits here. A task resumed from one deferral
            that must wait again gives it ``[cml] trigger_event_hold``: a second deferral whose event
            came within that hold would pay the hold again (see :func:`._compat.trigger_event_hold`),
            while a wait here needs none. Only a workload still going after it is deferred.
        """
        from airflow_provider_cml.waiting.plan import Ended

        if answer is not None and wait.since is None and wait.kind.is_terminal(wait.kind.status_of(answer)):
            return Ended.of_answer(wait, answer)
        wait = replace(wait, limit=self._limit)
        remaining = self._remaining(deadline)
        if not self.deferrable or (bridge > 0 and remaining is not None and remaining <= bridge):
            return self.hook.wait(replace(wait, waited=remaining), remaining)
        if bridge > 0:
            ended = self.hook.wait(replace(wait, owns=False), bridge)
            if ended.how != "timeout":
                return ended
            self.log.info(
                "Cloudera AI %s %s is still going: deferring.", wait.kind.name, wait.kind.id_of(wait.ref)
            )
        from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

        carry = {**(carry or {}), "deadline": deadline, "limit": self._limit}
        trigger = CmlWorkloadTrigger.of(wait, conn_id=self.cml_conn_id, end_time=deadline, carry=carry)
        self.defer(trigger=trigger, method_name=resume)
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def resumed(self, event: Mapping[str, Any] | None) -> tuple[Ended, dict[str, Any]]:
        """How the deferred wait ended, from the trigger's event, and what the task carried.

        :param event: the trigger's event.
        """
        from airflow_provider_cml.waiting.plan import Ended

        carried = (event or {}).get("carry")
        carried = dict(carried) if isinstance(carried, Mapping) else {}
        self._limit = str(carried.get("limit") or "timeout")
        return Ended.of_event(event), carried
