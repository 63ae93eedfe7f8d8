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
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import BaseOperator, default_deferrable
from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.hooks.lazy import LazyHook
from airflow_provider_cml.validation import validate_positive

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.kinds import WorkloadKind


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

    def _wait(
        self,
        kind: WorkloadKind,
        ref: Any,
        answer: Mapping[str, Any],
        deadline: float | None,
        *,
        owns: bool,
        resume: str,
        carry: Mapping[str, Any],
        since: Mapping[str, Any] | None = None,
        bridge: float = 0.0,
    ) -> Mapping[str, Any]:
        """Wait on ``ref`` unless ``answer`` already ended it; defer to ``resume`` when deferrable.

        ``since``: after a restart request, ``kind.baseline`` of the answer read before it; then
        ``answer`` (the request's acknowledgement) ends nothing, and only an answer showing the
        workload started anew ends the wait.

        ``bridge``: seconds a deferrable task first waits here. A task resumed from one deferral
        that must wait again gives it ``[cml] trigger_event_hold``: a second deferral whose event
        came within that hold would pay the hold again (see :func:`._compat.trigger_event_hold`),
        while a wait here needs none. Only a workload still going after it is deferred.
        """
        if since is None and kind.is_terminal(kind.status_of(answer)):
            return self.hook.finished(ref, answer, kind=kind)
        remaining = self._remaining(deadline)
        if not self.deferrable or (bridge > 0 and remaining is not None and remaining <= bridge):
            return self.hook.wait_for(  # here, to the end (what is left is shorter than the bridge)
                kind,
                ref,
                timeout=remaining,
                poll_interval=self.poll_interval,
                stop_on_timeout=owns,
                unknown_grace=self.unknown_grace,
                since=since,
            )
        if bridge > 0:
            ended = self.hook.wait_a_while(
                kind,
                ref,
                bridge,
                poll_interval=self.poll_interval,
                unknown_grace=self.unknown_grace,
                since=since,
            )
            if ended is not None:
                return ended
            self.log.info("Cloudera AI %s %s is still going: deferring.", kind.name, kind.id_of(ref))
        from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

        self.defer(
            trigger=CmlWorkloadTrigger(
                kind=kind.home,
                ref=ref._asdict(),
                conn_id=self.cml_conn_id,
                poll_interval=self.poll_interval,
                end_time=deadline,
                owns=owns,
                unknown_grace=self.unknown_grace,
                carry={**carry, "deadline": deadline, "limit": self._limit},
                since=since,
                limit=self._limit,
            ),
            method_name=resume,
        )
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def _resumed(self, event: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], dict[str, Any]]:
        """The finished workload of a trigger's event (or its clear error), and what the task carried."""
        from airflow_provider_cml.triggers.cml import outcome_of_event

        carried = dict((event or {}).get("carry") or {})
        self._limit = str(carried.get("limit") or "timeout")
        return outcome_of_event(event, self.hook.finished), carried
