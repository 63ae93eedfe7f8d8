"""Serve from a DAG: CmlDeployModelOperator (build and deploy a model), CmlApplicationOperator.

Both are thin: the hook's ``models`` and ``applications`` make the requests, and the waits are the
one waiting rule on the kinds of :mod:`airflow_provider_cml.serving` (sync, or in the triggerer).

What a task owns, and so may stop: only the deployment it created. A build cannot be stopped (the
API has no such call), and an application is never stopped by a restart task on kill or timeout,
since it may have been serving before the task started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.links import (
    APPLICATION_URL_XCOM_KEY,
    MODEL_URL_XCOM_KEY,
    CmlApplicationLink,
    CmlModelLink,
)
from airflow_provider_cml.operators.base import CmlBaseOperator
from airflow_provider_cml.validation import validate_choice

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.serving import BuildRef, DeploymentRef
    from airflow_provider_cml.serving_specs import CmlApplicationSpec, CmlModelSpec

#: The variables naming the deploying task instance, kept in its deployment's environment.
TASK_MARKS = ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_MAP_INDEX")
#: What :class:`CmlApplicationOperator` does.
APP_ACTIONS = ("restart", "ensure", "stop")


class CmlDeployModelOperator(CmlBaseOperator):
    """Build a model and deploy the build: the model is created when missing, then built and served.

    The model is found by name in the project (created from ``model`` when there is none); a build
    is made from its file and function (or registered model version) and awaited until ``built``;
    the build is deployed and awaited until ``deployed``. XComs: ``model_id``, ``build_id``,
    ``deployment_id`` and ``model_url`` (the project's models page); the return value holds them
    with ``project_id``. A downstream task calls the model with
    ``CmlHook().models.call_model(project_id, model_id, request)``.

    A retry of the same task instance does not build or deploy twice: its build is found again by
    the build's comment and its deployment by the task's variables in the deployment's
    environment, and each is reused unless it failed. A Clear builds and deploys again (a build
    still going is reused), as Clear runs a job again.

    On kill or timeout the deployment this task created is stopped; nothing that was serving before
    is touched. A build cannot be stopped: it finishes on its own and is left as it ends.

    :param project: project name or ID (templated).
    :param model: the model (a :class:`~airflow_provider_cml.serving_specs.CmlModelSpec` or a dict
        of its fields, templated).
    :param poll_interval: seconds between status checks.
    :param timeout: seconds for build and deployment together; ``None``: no limit.
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param unknown_grace: seconds a build or a deployment may stay in a status that says nothing
        of its progress (``unknown``, a build's ``succeeded``, a value no one listed) before the
        task gives up naming it; ``None``: no limit.
    """

    template_fields: Sequence[str] = ("project", "model")
    operator_extra_links = (CmlModelLink(),)

    def __init__(self, *, project: str, model: CmlModelSpec | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.model = model
        self._deployment: DeploymentRef | None = None

    def execute(self, context: Context) -> dict[str, str]:
        """Ensure the model, build it, deploy the build; return the IDs.

        :param context: the task's Airflow context.
        """
        from airflow_provider_cml.links import project_page
        from airflow_provider_cml.serving import MODEL_BUILD, BuildRef
        from airflow_provider_cml.serving_specs import CmlModelSpec

        spec = CmlModelSpec.of(self.model)
        deadline = self._deadline(context)
        with self._bounded(deadline):
            project_id = str(self.hook.resolve_project(self.project)["id"])
            model, _ = self.hook.models.ensure_model(project_id, spec)
            ti = context["ti"]
            ti.xcom_push(key="model_id", value=str(model["id"]))
            page = project_page(self.hook, project_id)
            ti.xcom_push(key=MODEL_URL_XCOM_KEY, value=f"{page}/models" if page else None)
            build = self._build(context, project_id, str(model["id"]), spec)
            ref = BuildRef(project_id, str(model["id"]), str(build["id"]))
            ti.xcom_push(key="build_id", value=ref.build_id)
            carry = ref._asdict()
            self._wait(
                MODEL_BUILD, ref, build, deadline, owns=False, resume="execute_after_build", carry=carry
            )
            return self._deploy(context, ref, spec, deadline)

    def execute_after_build(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, str]:
        """Resume after the build ended (deferrable): deploy it.

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.serving import BuildRef
        from airflow_provider_cml.serving_specs import CmlModelSpec

        _, carried = self._resumed(event)
        ref = BuildRef(carried["project_id"], carried["model_id"], carried["build_id"])
        deadline = carried.get("deadline")
        with self._bounded(deadline):
            return self._deploy(context, ref, CmlModelSpec.of(self.model), deadline, resumed=True)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, str]:
        """Resume after the deployment ended (deferrable).

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.serving import DeploymentRef

        answer, carried = self._resumed(event)
        ref = DeploymentRef(**{k: carried[k] for k in DeploymentRef._fields})
        return self._served(ref, answer)

    def _build(
        self, context: Context, project_id: str, model_id: str, spec: CmlModelSpec
    ) -> Mapping[str, Any]:
        """This task instance's build: an earlier try's still going or built since the last Clear.

        Else a new one: a Clear builds again, as it runs a job again.
        """
        from airflow_provider_cml.reattach import first_try_of_attempt
        from airflow_provider_cml.serving import MODEL_BUILD

        marker = _marker(context)
        ti = context["ti"]
        for build in self.hook.models.list_builds(project_id, model_id):
            comment = str(build.get("comment", ""))
            if comment.startswith(marker):
                status = MODEL_BUILD.status_of(build)
                going = not MODEL_BUILD.is_terminal(status)
                this_attempt = _try_of(comment, marker) >= first_try_of_attempt(context)
                if going or (MODEL_BUILD.is_success(status) and this_attempt):
                    self.log.info("Reusing build %s of an earlier try (%s).", build.get("id"), status)
                    return build
                if MODEL_BUILD.is_success(status):
                    self.log.info(
                        "Build %s was made before the task was cleared: building again.", build.get("id")
                    )
                break  # the newest one failed, or came before a Clear: build again
        build = self.hook.models.create_build(project_id, model_id, spec, f"{marker} try {ti.try_number}")
        self.log.info("Started build %s of Cloudera AI model %r.", build.get("id"), spec.name)
        return build

    def _deploy(
        self,
        context: Context,
        build: BuildRef,
        spec: CmlModelSpec,
        deadline: float | None,
        *,
        resumed: bool = False,
    ) -> dict[str, str]:
        """Deploy the built build (or reuse this task instance's deployment) and wait on it.

        ``resumed``: the task resumed from the build's deferral. It then waits here up to
        ``[cml] trigger_event_hold`` before deferring again: the first deferral paid the hold
        (Airflow's race with a quick event), a second quick one would pay it twice.
        """
        from airflow_provider_cml._compat import trigger_event_hold
        from airflow_provider_cml.reattach import task_identity
        from airflow_provider_cml.serving import MODEL_DEPLOYMENT, DeploymentRef

        marks = {key: value for key, value in task_identity(context).items() if key in TASK_MARKS}
        deployment = self.hook.models.find_deployment(build, marks)
        status = MODEL_DEPLOYMENT.status_of(deployment) if deployment is not None else ""
        if MODEL_DEPLOYMENT.is_terminal(status) and not MODEL_DEPLOYMENT.is_success(status):
            deployment = None  # an earlier try's deployment failed or was stopped: deploy again
        if deployment is None:
            deployment = self.hook.models.create_deployment(build, spec, marks)
            self.log.info("Deploying build %s as deployment %s.", build.build_id, deployment.get("id"))
        else:
            self.log.info("Reusing deployment %s of an earlier try.", deployment.get("id"))
        ref = DeploymentRef(*build, str(deployment["id"]))
        self._deployment = ref
        context["ti"].xcom_push(key="deployment_id", value=ref.deployment_id)
        answer = self._wait(
            MODEL_DEPLOYMENT,
            ref,
            deployment,
            deadline,
            owns=True,
            resume="execute_complete",
            carry=ref._asdict(),
            bridge=trigger_event_hold() if resumed else 0.0,
        )
        return self._served(ref, answer)

    def _served(self, ref: DeploymentRef, answer: Mapping[str, Any]) -> dict[str, str]:
        self._deployment = None  # serving: nothing left to stop on kill
        self.log.info("Cloudera AI model %s is deployed (deployment %s).", ref.model_id, answer.get("id"))
        return dict(ref._asdict())

    def on_kill(self) -> None:
        """Stop the deployment this task created while it is not yet serving; wake a sync wait."""
        if "hook" in self.__dict__:
            self.hook.interrupt()
        if self._deployment is not None:
            from airflow_provider_cml.serving import MODEL_DEPLOYMENT

            self.hook.stop_if_active(self._deployment, MODEL_DEPLOYMENT)


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
    :param application: a :class:`~airflow_provider_cml.serving_specs.CmlApplicationSpec`, a dict
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
        from airflow_provider_cml.serving import APPLICATION, APPLICATION_STOP, ApplicationRef

        project_id = str(self.hook.resolve_project(self.project)["id"])
        apps = self.hook.applications
        if isinstance(self.application, str):
            app = apps.resolve_application(project_id, self.application)
            action = "found"
        else:
            from airflow_provider_cml.serving_specs import CmlApplicationSpec

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
        self._wait(
            kind, ref, app, deadline, owns=False, resume="execute_complete", carry=ref._asdict(), since=since
        )
        return ref.application_id

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired (deferrable).

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        _, carried = self._resumed(event)
        return str(carried["application_id"])

    def _push(self, context: Context, app: Mapping[str, Any]) -> None:
        from airflow_provider_cml.links import application_url

        ti = context["ti"]
        ti.xcom_push(key="application_id", value=str(app["id"]))
        subdomain = app.get("subdomain")
        url = application_url(self.hook.config.base_url, str(subdomain)) if subdomain else None
        ti.xcom_push(key=APPLICATION_URL_XCOM_KEY, value=url)


def _try_of(comment: str, marker: str) -> int:
    """The try number a build's comment names (``<marker> try <n>``); 0 when it names none."""
    tail = comment[len(marker) :].strip().removeprefix("try").strip()
    return int(tail) if tail.isdigit() else 0


def _marker(context: Context) -> str:
    """Words naming the task instance (not the try) in a build's comment, found again on a re-run."""
    ti = context["ti"]
    return f"airflow {ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'map_index', -1)}"
