"""The exceptions raised by the Cloudera AI provider. All derive from ``AirflowException``.

Messages never contain the API key or a run's environment: both may hold secrets.
"""

from __future__ import annotations

from airflow_provider_cml._compat import AirflowException


class CmlException(AirflowException):
    """Base class of every error this provider raises."""


class CmlConfigError(CmlException):
    """The connection or the task's arguments are wrong; the message says how to fix them."""


class CmlTaskReturnError(CmlConfigError):
    """A ``@task.cml`` function returned something that is not a run's overrides.

    The message names what was returned (its type, its keys and the types of their values), never
    a value: an environment may hold secrets.
    """


class CmlLookupError(CmlException):
    """A project or job name matched nothing, or more than one thing."""


class CmlApiError(CmlException):
    """The Cloudera AI API answered with an error, or with something that is not its JSON.

    :param message: what went wrong, in words for the DAG author.
    :param http_status: HTTP status, or ``None`` when no response arrived.
    :param method: HTTP method of the failed request.
    :param path: request path (no query string, so no filter values).
    :param server_message: the server's own message (grpc-gateway ``message``/``error``/text).
    :param request_id: the request-id header of the response, for Cloudera support.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        server_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.method = method
        self.path = path
        self.server_message = server_message
        self.request_id = request_id
        parts = [message]
        if method and path:
            where = f"{method} {path}"
            parts.append(f"[{where} -> HTTP {http_status}]" if http_status else f"[{where}]")
        if request_id:
            parts.append(f"(request id {request_id})")
        super().__init__(" ".join(parts))


class CmlOutOfTimeError(CmlApiError):
    """A request was not sent: the deadline it had to keep had already passed (nothing was asked)."""


class CmlJobAlreadyActiveError(CmlApiError):
    """Cloudera AI allows one active run per job, and this job already has one."""


class CmlWorkloadError(CmlException):
    """A workload ended without success, or did not end in time.

    A workload is a job run, a model build or deployment, an application.

    :param message: what happened, in words for the DAG author.
    :param status: the workload's last status.
    :param workload_id: the workload's id.
    :param run_id: the same, under the name job runs have always used.
    """

    def __init__(
        self, message: str, *, status: str | None, workload_id: str | None = None, run_id: str | None = None
    ) -> None:
        self.workload_id = str(workload_id if workload_id is not None else run_id)
        self.status = status
        super().__init__(message)

    @property
    def run_id(self) -> str:
        """The workload's id (for a job run, the run's)."""
        return self.workload_id


class CmlWorkloadTimeout(CmlWorkloadError):
    """A workload was still active when the caller's timeout passed (the message says if it was stopped)."""


class CmlJobRunError(CmlWorkloadError):
    """A job run ended without success, or did not end in time."""


class CmlJobRunTimeout(CmlJobRunError, CmlWorkloadTimeout):
    """A run was still active when the caller's timeout passed (the message says if it was stopped)."""


class CmlModelBuildError(CmlWorkloadError):
    """A model build ended without being built (``build failed``, ``timedout``)."""


class CmlModelDeploymentError(CmlWorkloadError):
    """A model deployment ended without serving (``failed``, ``stopped``, ``deployment_failed``)."""


class CmlModelRegistrationError(CmlWorkloadError):
    """A registered model version failed (a failure status, or the registry's ``error_message``)."""


class CmlApplicationError(CmlWorkloadError):
    """An application failed, or stopped while it was awaited running."""


class CmlExperimentRunError(CmlWorkloadError):
    """An experiment run ended without finishing well (``EXPERIMENT_RUN_FAILED`` or ``..._KILLED``)."""


class CmlMetricGateError(CmlException):
    """A metric gate could not decide, so it failed the task.

    Its candidate run is not ``FINISHED`` or was not found, or there is no baseline and the gate
    was told to fail then (``if_no_baseline="fail"``).
    """


class CmlMetricMissingError(CmlMetricGateError):
    """The candidate run has no (usable) value for the gate's metric; the message lists the keys it has."""


class CmlModelCallError(CmlException):
    """A deployed model answered a call without success (its function raised, or refused the input)."""


class Undecidable(CmlApiError):
    """A create whose answer was lost, and whose result no listing can show (it hides what marks it).

    Nothing is sent again: the message says what to check in the workbench.
    """
