"""The one definition of Cloudera AI v2 job-run statuses, shared by hook, operator, sensor and trigger.

Only ``ENGINE_SUCCEEDED`` is success. ``ENGINE_STOPPING``, ``ENGINE_UNKNOWN`` and any status this
module does not know are *not* terminal: callers keep polling until their own timeout.
"""

from __future__ import annotations

SUCCEEDED = "ENGINE_SUCCEEDED"
FAILED = "ENGINE_FAILED"
TIMEDOUT = "ENGINE_TIMEDOUT"
STOPPED = "ENGINE_STOPPED"
SKIPPED = "ENGINE_SKIPPED"

SUCCESS_STATES: frozenset[str] = frozenset({SUCCEEDED})
# ENGINE_TIMEOUT is a spelling seen in some releases for the job's own timeout.
FAILURE_STATES: frozenset[str] = frozenset({FAILED, TIMEDOUT, "ENGINE_TIMEOUT", STOPPED, SKIPPED})
TERMINAL_STATES: frozenset[str] = SUCCESS_STATES | FAILURE_STATES

_FAILURE_HINTS = {
    FAILED: "the job's script exited with an error; open the run's page for its output",
    TIMEDOUT: "the job's own timeout (set on the job in Cloudera AI) was reached",
    "ENGINE_TIMEOUT": "the job's own timeout (set on the job in Cloudera AI) was reached",
    STOPPED: "the run was stopped by a person or by an API call",
    SKIPPED: "Cloudera AI skipped the run, usually because the job already had an active run",
}


def is_terminal(status: str | None) -> bool:
    """Whether a run in ``status`` has ended (successfully or not)."""
    return status in TERMINAL_STATES


def is_success(status: str | None) -> bool:
    """Whether ``status`` is the one success state."""
    return status in SUCCESS_STATES


def failure_hint(status: str | None) -> str:
    """A short human explanation of a terminal failure status."""
    return _FAILURE_HINTS.get(status or "", "the run did not succeed")
