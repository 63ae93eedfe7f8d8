"""CmlApplicationOperator: restart, ensure or stop an application, and wait until it runs or has stopped.

The hook's ``applications`` makes the requests; the waits are the one waiting rule on the kinds of
:mod:`airflow_provider_cml.workloads.applications`. An application is never stopped by a restart
task on kill or timeout, since it may have been serving before the task started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.links import (
    APPLICATION_URL_XCOM_KEY,
    CmlApplicationLink,
)
from airflow_provider_cml.operators.base import CmlBaseOperator
from airflow_provider_cml.validation import validate_choice

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.workloads.applications import CmlApplicationSpec

#: What :class:`CmlApplicationOperator` does.
APP_ACTIONS = ("restart", "ensure", "stop")


class CmlApplicationOperator(CmlBaseOperator):
    """Make an application run (create or update it, restart it, wait until running), or stop it.

    ``action="restart"`` (default): the application is created from ``application`` when missing
    (creating starts it), else updated when the spec differs and restarted; the task waits until
    it is ``APPLICATION_RUNNING`` and fails on ``APPLICATION_FAILED`` or ``APPLICATION_STOPPED``.
    After a restart only a new instance counts: one whose ``starting_at`` or ``running_at`` is later
    than before the request, or that was seen starting; until then what reads show is the old
    instance, tolerated for ``unknown_grace`` (and ``timeout``).
    ``action="ensure"``: as restart, but an application that already matches and runs is left
    alone. ``action="stop"``: stop it and wait until stopped (``application`` may be just a name).
    XComs: ``application_id`` and ``application_url`` (where it is served).

    Kill and timeout never stop the application: it may have been serving before the task began.

    :param project: project name or ID (templated).
    :param application: a :class:`~airflow_provider_cml.workloads.applications.CmlApplicationSpec`, a dict
        of its fields, or (for ``restart`` and ``stop`` of an existing one) its name (templated).
    :param action: ``"restart"``, ``"ensure"`` or ``"stop"``.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds to wait at most; ``None``: no limit.
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param unknown_grace: seconds it may stay ``APPLICATION_UNKNOWN`` (or a status no one listed),
        or show the old instance after a restart; ``None``: no limit.
    """

    template_fields: Sequence[str] = ("project", "application")
    operator_extra_links = (CmlApplicationLink(),)

    def __init__(
        self,
        *,
        project: str,
        application: CmlApplicationSpec | Mapping[str, Any] | str,
        action: str = "restart",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action = validate_choice("action", action, APP_ACTIONS)
        self.project = project
        self.application = application

    def execute(self, context: Context) -> str:
        """Create, update, restart or stop the application, and wait for the state it should reach.

        :param context: the task's Airflow context.
        """
        deadline = self._deadline(context)
        with self._bounded(deadline):
            return self._apply(context, deadline)

    def _apply(self, context: Context, deadline: float | None) -> str:
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads.applications import (
            APPLICATION,
            APPLICATION_STOP,
            ApplicationRef,
        )

        project_id = str(self.hook.resolve_project(self.project)["id"])
        apps = self.hook.applications
        if isinstance(self.application, str):
            app = apps.resolve_application(project_id, self.application)
            action = "found"
        else:
            from airflow_provider_cml.workloads.applications import CmlApplicationSpec

            if self.action == "stop":
                app = apps.resolve_application(project_id, CmlApplicationSpec.of(self.application).name)
                action = "found"
            else:
                app, action = apps.ensure_application(project_id, CmlApplicationSpec.of(self.application))
        ref = ApplicationRef(project_id, str(app["id"]))
        self._push(context, app)
        kind, since = APPLICATION, None
        if self.action == "stop":
            kind, app = APPLICATION_STOP, apps.stop_application(ref)
            self.log.info("Stopping Cloudera AI application %s.", ref.application_id)
        elif action != "created" and not (
            self.action == "ensure"
            and action == "unchanged"
            and APPLICATION.is_success(APPLICATION.status_of(app))
        ):
            # The instance before the restart, read fresh: reads may show it for a while after the
            # request, so only a later start (or a transition seen) confirms the restart.
            since = APPLICATION.baseline(apps.get_application(ref))
            app = apps.restart_application(ref)
            self.log.info("Restarting Cloudera AI application %s.", ref.application_id)
        # Never owned: an application may have been serving before the task started.
        wait = Wait(kind, ref, self.poll_interval, self.unknown_grace, since=since)
        ended = self.wait_or_defer(wait, deadline, resume="execute_complete", answer=app, carry=ref._asdict())
        ended.result(self.hook.explain)
        return ref.application_id

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired (deferrable).

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        ended, carried = self.resumed(event)
        ended.result(self.hook.explain)
        return str(carried["application_id"])

    def _push(self, context: Context, app: Mapping[str, Any]) -> None:
        from airflow_provider_cml.links import application_url

        ti = context["ti"]
        ti.xcom_push(key="application_id", value=str(app["id"]))
        subdomain = app.get("subdomain")
        url = application_url(self.hook.config.base_url, str(subdomain)) if subdomain else None
        ti.xcom_push(key=APPLICATION_URL_XCOM_KEY, value=url)
