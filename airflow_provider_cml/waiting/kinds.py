"""What a Cloudera AI workload is, for waiting on it: described once, as data, for every kind.

A workload is anything the platform runs and reports a status for: a job run today; a model
build, a model deployment or an application next. A :class:`WorkloadKind` says how to read its
state, which statuses are terminal successes and failures, which are still going (any other
status says nothing about progress and is tolerated for a grace period), how to stop it and what
a failure means. The waiting rule (:mod:`~airflow_provider_cml.waiting.rule`), the steps that read and
stop (:mod:`~airflow_provider_cml.waiting.steps`), the sync wait, the trigger and the sensors take a kind;
adding a kind adds no waiting code.

What a status means is read in one place, :meth:`WorkloadKind.status_of`: case, spaces and the
kind's known prefixes do not matter (``running``, ``RUNNING`` and ``APPLICATION_RUNNING`` are one
status, as are ``build failed`` and ``MODEL_BUILD_BUILD_FAILED``), since servers and clients spell
them differently. A status that is none of the kind's successes, failures or known progress
statuses (``error``, say) says nothing about progress: a wait tolerates it for its grace, then
fails naming it. Nothing here puts a workload's answer into a message
beyond its id and status: answers may hold secrets (a run's ``environment``).
"""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_cml.exceptions import CmlWorkloadError, CmlWorkloadTimeout

if TYPE_CHECKING:
    from airflow_provider_cml.client.attempts import Exchange

    #: A step: yields requests, is sent their answers, returns its result.
    Steps = Generator[Exchange, Any, Any]


class StopResult(enum.Enum):
    """What became of a request to stop a workload; messages say only what really happened."""

    STOPPED = "it has been asked to stop"
    ALREADY_ENDED = "it had already ended"
    NOT_ASKED = ""
    FAILED = "it could not be stopped and may still be running"


class Retries(Protocol):
    """How a platform retries a failed workload by starting a new one (a job's Job Retry).

    A wait that follows retries reads the ``policy`` once, after the first failure it may cover;
    then it looks for the retry every poll (``find``) until one appears or ``patience`` has passed.
    """

    def covers(self, answer: Mapping[str, Any]) -> bool:
        """Whether the platform ever retries a failure such as this one (before any settings are read).

        :param answer: the failed workload's final answer.
        """

    def policy(self, ref: Any, deadline: float | None) -> Steps:
        """Steps that read the retry settings (``None``: the platform will not retry).

        :param ref: the failed workload.
        :param deadline: when the read must end.
        """

    def expects(self, policy: Any, answer: Mapping[str, Any], retries: int) -> bool:
        """Whether the platform will retry this failure.

        :param policy: what ``policy`` read.
        :param answer: the failed workload's final answer.
        :param retries: retries already seen.
        """

    def find(self, ref: Any, failed: Mapping[str, Any], deadline: float | None) -> Steps:
        """Steps that look for the retry of ``failed``: its answer, or ``None`` while there is none.

        :param ref: the failed workload.
        :param failed: its final answer.
        :param deadline: when the look must end.
        """

    def patience(self, policy: Any) -> float:
        """Seconds after the failure when a retry that has not appeared is taken as not coming.

        :param policy: what ``policy`` read.
        """

    def note(self, policy: Any, retries: int) -> str:
        """Words for a result reached on a retry, e.g. ``" on the platform's retry 2 of 3"``.

        :param policy: what ``policy`` read.
        :param retries: retries seen.
        """


class Locate(Protocol):
    """How to find a workload named by what it carries (an experiment run by its tags), not by its ID.

    A wait given ``find`` looks for it every poll until it appears or the deadline passes.
    """

    def find(self, ref: Any, find: Mapping[str, Any], deadline: float | None) -> Steps:
        """Steps that look for it: ``(its ref, its answer)``, or ``None`` while there is none.

        :param ref: the IDs known (its parent's; its own empty).
        :param find: what names it (plain JSON, as the wait's ``find``).
        :param deadline: when the look must end.
        """

    def missing(self, ref: Any, find: Mapping[str, Any]) -> str:
        """Why a wait that never found it gave up, and what to check.

        :param ref: the IDs known.
        :param find: what names it.
        """


class Bound(Protocol):
    """Another workload whose end bounds a wait on one in progress (an experiment run's job run).

    Once it has ended and ``grace`` has passed, the wait ends with an error.
    """

    def ended(self, bound: Mapping[str, Any], deadline: float | None) -> Steps:
        """Steps that read the other workload: seconds since it ended, or ``None`` while it has not.

        :param bound: what names it (plain JSON, as the wait's ``bound``).
        :param deadline: when the read must end.
        """

    def grace(self, bound: Mapping[str, Any]) -> float:
        """Seconds the awaited workload may stay in progress after the other ended.

        :param bound: what names it.
        """

    def message(self, bound: Mapping[str, Any], answer: Mapping[str, Any]) -> str:
        """Why the wait ended, in words for the DAG author.

        :param bound: what names it.
        :param answer: the awaited workload's last answer.
        """


#: How many spellings of statuses a kind remembers (a kind has a dozen statuses, in a few spellings).
MAX_SPELLINGS = 256


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
    :param active: the known statuses that mean it is still going. Any other status (an "unknown"
        one, or one the API never listed) says nothing about progress: a wait tolerates it for its
        ``unknown_grace``, then gives up naming it.
    :param prefix: the prefix of the kind's own spelling (``ENGINE_``, ``APPLICATION_``; ``""`` for
        the bare words of builds and deployments): added to a status that comes without it, so
        ``running`` reads as ``ENGINE_RUNNING``. The statuses above are spelled with it, in upper
        case, words joined by ``_``.
    :param aliases: other prefixes a server may put before the status, dropped (e.g.
        ``MODEL_DEPLOYMENT_``).
    :param stop_path: the API path to POST to stop one, or ``None`` when it cannot be stopped.
    :param missing_status: the status of an answer without one (the enum's zero value, which the
        API may leave out).
    :param hints: a few words on what each failure status means.
    :param event_fields: the answer's fields a trigger event may carry (never secrets).
    :param retries: how to follow the platform's retries of a failed workload (a job's Job Retry
        starts each as a new run), or ``None`` when the platform makes none.
    :param describe: a one-line, secret-free summary of an answer (default: name, id, status).
    :param error: the error for a workload that ended badly; :param timeout_error: for a wait
        that ran out of time first.
    :param explain: why one failed, from what else the platform says (job runs: the usage and
        executions listings), given the hook, the ref and the final answer; ``None``: only the
        status's hint is said.
    :param instance_marks: timestamps that move when the workload starts anew (an application's
        ``starting_at`` and ``running_at``): how a wait after a restart tells the new instance
        from the old one (see :meth:`renewed`).
    :param locate: how to find one named by what it carries instead of its ID (a wait's ``find``),
        or ``None``.
    :param bound: how another workload's end bounds a wait on one in progress (a wait's
        ``bound``), or ``None``.
    """

    home: str
    name: str
    ref_type: type[Any]
    read_path: Callable[[Any], str]
    succeeded: frozenset[str]
    failed: frozenset[str]
    active: frozenset[str]
    prefix: str = ""
    aliases: tuple[str, ...] = ()
    stop_path: Callable[[Any], str] | None = None
    missing_status: str = ""
    hints: Mapping[str, str] = field(default_factory=dict)
    event_fields: tuple[str, ...] = ("id", "status")
    retries: Retries | None = None
    describe: Callable[[Mapping[str, Any]], str] | None = None
    error: type[CmlWorkloadError] = CmlWorkloadError
    timeout_error: type[CmlWorkloadTimeout] = CmlWorkloadTimeout
    explain: Callable[[Any, Any, Mapping[str, Any]], str | None] | None = None
    instance_marks: tuple[str, ...] = ()
    locate: Locate | None = None
    bound: Bound | None = None
    # Spellings already read: a wait reads the same few statuses on every poll of every trigger.
    _spellings: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def status_of(self, answer: Mapping[str, Any]) -> str:
        """The answer's status in the kind's own spelling (:attr:`missing_status` when it has none).

        :param answer: the workload as the API returned it.
        """
        value = answer.get("status")
        if value is None or value == "":
            return self.missing_status
        return self.canonical(str(value))

    def canonical(self, status: str) -> str:
        """``status`` in the kind's own spelling: upper case, words joined by ``_``, its prefix.

        The one place where spellings are told apart: ``running``, ``RUNNING`` and
        ``APPLICATION_RUNNING`` are one status; ``build failed`` and ``BUILD_FAILED`` another. A
        word the kind does not know stays as the server spelled it, in upper case (``ERROR``).

        :param status: a status as a server sent it.
        """
        known = self._spellings.get(status)
        if known is None:
            known = self._spell(status)
            if len(self._spellings) < MAX_SPELLINGS:  # a server inventing words cannot grow it
                self._spellings[status] = known
        return known

    def _spell(self, status: str) -> str:
        word = spelled = "_".join(status.replace("-", " ").upper().split())
        for prefix in (self.prefix, *self.aliases):
            if prefix and word.startswith(prefix):
                word = word[len(prefix) :]
                break
        known = self.prefix + word
        if known in self.succeeded or known in self.failed or known in self.active:
            return known
        # Not one of ours: named as the server spelled it (upper case), so a message says "ERROR".
        return known if known == self.missing_status.upper() else spelled

    def is_terminal(self, status: str | None) -> bool:
        """Whether a workload in ``status`` has ended, well or not.

        :param status: a status in any spelling.
        """
        word = self.canonical(status or "")
        return word in self.succeeded or word in self.failed

    def is_success(self, status: str | None) -> bool:
        """Whether ``status`` means it ended well.

        :param status: a status in any spelling.
        """
        return self.canonical(status or "") in self.succeeded

    def is_unclear(self, status: str | None) -> bool:
        """Whether ``status`` says nothing about progress: neither a known progress status nor terminal.

        :param status: a status in any spelling (``None``: none was given).
        """
        word = self.canonical(status or self.missing_status)
        return word not in self.active and not self.is_terminal(word)

    def baseline(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """What a wait after a restart needs of the answer read before it: status and instance marks.

        Plain JSON, and never more (an application's answer holds its ``environment``): a trigger
        carries it.

        :param answer: the workload as it was before the restart request.
        """
        fields = {key: answer[key] for key in self.instance_marks if answer.get(key)}
        return {**fields, "status": self.status_of(answer)}

    def renewed(self, answer: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
        """Whether ``answer`` shows the workload since a restart, not as it was ``before`` it.

        It does when one of :attr:`instance_marks` is later than before, or when it is in a
        progress status other than before's (the restart is under way). Until then its status,
        even a terminal one, belongs to the old instance and says nothing about the restart.

        :param answer: a fresh answer.
        :param before: :meth:`baseline` of the answer read before the restart request.
        """
        for key in self.instance_marks:
            now, then = parse_time(answer.get(key)), parse_time(before.get(key))
            if now is not None and (then is None or now > then):
                return True
        status = self.status_of(answer)
        return status in self.active and status != self.canonical(str(before.get("status") or ""))

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
        return self.hints.get(self.canonical(status or ""), f"the {self.name} did not succeed")

    def id_of(self, ref: Any) -> str:
        """The workload's own id (the last field of its ref).

        :param ref: its IDs.
        """
        return str(ref[-1])

    def with_id(self, ref: Any, workload_id: str) -> Any:
        """``ref`` naming another workload of the same parent (a platform's retry of it).

        :param ref: its IDs.
        :param workload_id: the other workload's own id.
        """
        return ref._replace(**{ref._fields[-1]: workload_id})

    def ref_from(self, fields: Mapping[str, Any]) -> Any:
        """The ref named by a dict of its fields (as a trigger carries it).

        :param fields: the ref's fields.
        """
        return self.ref_type(**{name: str(fields[name]) for name in self.ref_type._fields})

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


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of an answer as an aware datetime; ``None`` when absent or unreadable.

    :param value: e.g. ``2024-06-01T00:00:00.123456789Z`` (no zone: UTC).
    """
    if not isinstance(value, str) or not value:
        return None
    # Python 3.10 reads exactly 3 or 6 fraction digits; servers may send from 1 to 9.
    text = re.sub(
        r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip().replace("Z", "+00:00")
    )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
