"""What a Cloudera AI workload is, for waiting on it: described once, as data, for every kind.

A workload is anything the platform runs and reports a status for: a job run today; a model
build, a model deployment or an application next. A :class:`WorkloadKind` says how to read its
state, which statuses are terminal successes and failures, which are still going (any other
status says nothing about progress and is tolerated for a grace period), how to stop it and what
a failure means. The waiting rule (:mod:`~airflow_provider_cml.waiting`), the steps that read and
stop (:mod:`~airflow_provider_cml.steps`), the sync wait, the trigger and the sensors take a kind;
adding a kind adds no waiting code.

Statuses are compared case-insensitively. Nothing here puts a workload's answer into a message
beyond its id and status: answers may hold secrets (a run's ``environment``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_cml.exceptions import CmlWorkloadError, CmlWorkloadTimeout


@dataclass(frozen=True)
class WorkloadKind:
    """How to wait on one kind of workload.

    :param home: where the kind is defined, ``module:NAME``: a trigger carries this to the
        triggerer, which imports it (see :func:`load_kind`).
    :param name: a lower-case name for logs and messages, e.g. ``"run"`` or ``"model build"``.
    :param ref_type: the NamedTuple of IDs that names one workload (its last field is the
        workload's own id); a trigger carries it as a dict.
    :param read_path: the API path (below ``/api/v2``) that reads one workload.
    :param succeeded: statuses that mean it ended well.
    :param failed: statuses that mean it ended otherwise.
    :param active: statuses that mean it is still going. Any other status (an "unknown" one, or
        one the API never listed) says nothing about progress: a wait tolerates it for its
        ``unknown_grace``, then gives up.
    :param unclear: when given, only these statuses (and a missing one) say nothing about
        progress; every other status that is not terminal counts as still going, bounded by the
        wait's timeout. For kinds whose API lists no statuses (model deployments), where an
        unlisted value such as ``deploying`` is progress, not doubt.
    :param prefix: a prefix some servers put before the status, dropped before comparing (e.g.
        ``MODEL_DEPLOYMENT_``).
    :param stop_path: the API path to POST to stop one, or ``None`` when it cannot be stopped.
    :param missing_status: the status of an answer without one (the enum's zero value, which the
        API may leave out).
    :param hints: a few words on what each failure status means.
    :param event_fields: the answer's fields a trigger event may carry (never secrets).
    :param platform_retries: whether the platform may start a new workload to retry a failed one
        (a job's Job Retry); only then does a wait look for one.
    :param describe: a one-line, secret-free summary of an answer (default: name, id, status).
    :param error: the error for a workload that ended badly; :param timeout_error: for a wait
        that ran out of time first.
    :param explained: whether the platform's usage and executions listings can say why one failed
        (job runs: the hook then reads them, when the key may).
    """

    home: str
    name: str
    ref_type: type[Any]
    read_path: Callable[[Any], str]
    succeeded: frozenset[str]
    failed: frozenset[str]
    active: frozenset[str]
    unclear: frozenset[str] | None = None
    prefix: str = ""
    stop_path: Callable[[Any], str] | None = None
    missing_status: str = ""
    hints: Mapping[str, str] = field(default_factory=dict)
    event_fields: tuple[str, ...] = ("id", "status")
    platform_retries: bool = False
    describe: Callable[[Mapping[str, Any]], str] | None = None
    error: type[CmlWorkloadError] = CmlWorkloadError
    timeout_error: type[CmlWorkloadTimeout] = CmlWorkloadTimeout
    explained: bool = False

    def status_of(self, answer: Mapping[str, Any]) -> str:
        """The answer's status in upper case (:attr:`missing_status` when it has none).

        :param answer: the workload as the API returned it.
        """
        value = answer.get("status")
        if value is None or value == "":
            return self.missing_status
        upper = str(value).strip().upper()
        return upper.removeprefix(self.prefix) if self.prefix else upper

    def is_terminal(self, status: str | None) -> bool:
        """Whether a workload in ``status`` has ended, well or not.

        :param status: a status as the API sends it (any case).
        """
        upper = (status or "").upper()
        return upper in self.succeeded or upper in self.failed

    def is_success(self, status: str | None) -> bool:
        """Whether ``status`` means it ended well.

        :param status: a status as the API sends it (any case).
        """
        return (status or "").upper() in self.succeeded

    def is_unclear(self, status: str | None) -> bool:
        """Whether ``status`` says nothing about progress (neither active nor terminal).

        :param status: a status as the API sends it (any case).
        """
        upper = (status or self.missing_status).upper()
        if self.unclear is not None:
            return upper in self.unclear or upper == self.missing_status.upper()
        return upper not in self.active and not self.is_terminal(upper)

    def should_stop(self, seen: Any) -> bool:
        """The one "stop if still active" rule: stop it unless it is known to have ended.

        A status that could not be read (``seen`` is the error that came instead) means the stop is
        sent anyway: a hanging server must not keep a workload going that the task gave up on.

        :param seen: a fresh answer, or the error reading it.
        """
        return not isinstance(seen, Mapping) or not self.is_terminal(self.status_of(seen))

    def hint(self, status: str | None) -> str:
        """A few words on what a failure status means.

        :param status: a terminal failure status.
        """
        return self.hints.get((status or "").upper(), f"the {self.name} did not succeed")

    def id_of(self, ref: Any) -> str:
        """The workload's own id (the last field of its ref).

        :param ref: its IDs.
        """
        return str(ref[-1])

    def current(self, ref: Any, state: Any) -> Any:
        """What a wait is on now: what it started with, or the platform's latest retry of it.

        Only a kind with ``platform_retries`` moves on: its ref's last field becomes the id the
        waiting rule last read.

        :param ref: what the wait started with.
        :param state: the waiting rule's state (``None`` at first).
        """
        latest = getattr(state, "run_id", None)
        if not (self.platform_retries and latest):
            return ref
        return ref._replace(**{ref._fields[-1]: latest})

    def ref_from(self, fields: Mapping[str, Any], *, partial: bool = False) -> Any:
        """The ref named by a dict of its fields (as a trigger carries it).

        :param fields: the ref's fields.
        :param partial: fill missing fields with ``""`` instead of raising ``KeyError`` (an event
            of an earlier build may lack some; its workload's id is always there).
        """
        names = self.ref_type._fields
        if partial:
            return self.ref_type(**{name: str(fields.get(name) or "") for name in names})
        return self.ref_type(**{name: str(fields[name]) for name in names})

    def summary(self, answer: Mapping[str, Any]) -> str:
        """A one-line, secret-free summary of an answer, e.g. ``run r1 of job j1: ENGINE_FAILED ...``.

        :param answer: the workload's answer.
        """
        if self.describe is not None:
            return self.describe(answer)
        return f"{self.name} {answer.get('id')}: {self.status_of(answer)}"

    def failure_message(
        self,
        answer: Mapping[str, Any],
        *,
        link: str | None = None,
        details: str | None = None,
        note: str = "",
    ) -> str:
        """Why a finished workload did not succeed, in words for the DAG author.

        :param answer: its final answer.
        :param link: its page, if known.
        :param details: what the platform's listings say; else the status's hint.
        :param note: words for a result reached on a platform retry.
        """
        reason = details or self.hint(self.status_of(answer))
        return f"Cloudera AI {self.summary(answer)} did not succeed{note}: {reason}.{see(link)}"

    def outcome(self, answer: Mapping[str, Any], *, link: str | None = None) -> Mapping[str, Any]:
        """``answer`` if it ended well; raise :attr:`error` (with the status's hint) otherwise.

        :param answer: a terminal answer.
        :param link: its page, repeated in the error.
        """
        status = self.status_of(answer)
        if self.is_success(status):
            return answer
        raise self.error(
            self.failure_message(answer, link=link), workload_id=str(answer.get("id")), status=status
        )

    def event_answer(self, answer: Mapping[str, Any] | None) -> dict[str, Any]:
        """The part of an answer a trigger event may carry.

        :param answer: the workload's last answer.
        """
        return {key: answer[key] for key in self.event_fields if answer and key in answer}


def see(link: str | None) -> str:
    """`` See <link>`` when there is a link, else nothing.

    :param link: a page in the workbench.
    """
    return f" See {link}" if link else ""


def load_kind(home: str) -> WorkloadKind:
    """The kind whose :attr:`WorkloadKind.home` is ``home``, imported (in the triggerer, say).

    :param home: ``module:NAME``.
    """
    module, _, name = home.partition(":")
    kind = getattr(importlib.import_module(module), name, None)
    if not isinstance(kind, WorkloadKind):
        raise TypeError(f"{home!r} does not name a WorkloadKind (expected 'module:NAME').")
    return kind
