"""CmlDeployModelOperator: build a model and deploy the build, waiting for each (sync, or in the triggerer).

The hook's ``models`` makes the requests; the waits are the one waiting rule on the kinds of
:mod:`airflow_provider_cml.workloads.models`. What a task owns, and so may stop: only the deployment
it created. A build cannot be stopped (the API has no such call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.links import (
    MODEL_URL_XCOM_KEY,
    CmlModelLink,
)
from airflow_provider_cml.operators.base import CmlBaseOperator

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.workloads.models import BuildRef, CmlModelSpec, DeploymentRef

#: The variables naming the deploying task instance, kept in its deployment's environment.
TASK_MARKS = ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_MAP_INDEX")


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

    From a registered model version: ``registered_version=`` takes what
    :class:`~airflow_provider_cml.operators.registry.CmlRegisterModelOperator` returns (e.g.
    ``register.output``); the model then needs no file nor function, its name is enough
    (``model="churn"``), and the build is made from that version.

    :param project: project name or ID (templated).
    :param model: the model (a :class:`~airflow_provider_cml.workloads.models.CmlModelSpec` or a dict
        of its fields, templated); with ``registered_version``, its name alone will do.
    :param registered_version: the registered model version to build (templated): a dict with
        ``registered_model_id`` (or ``model_id``) and ``model_version_id``, as the register
        operator's XCom has them; it sets the spec's ``registered_model_id`` and
        ``registered_model_version_id``.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds for build and deployment together; ``None``: no limit.
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param unknown_grace: seconds a build or a deployment may stay in a status that says nothing
        of its progress (``unknown``, a build's ``succeeded``, a value no one listed) before the
        task gives up naming it; ``None``: no limit.
    """

    template_fields: Sequence[str] = ("project", "model", "registered_version")
    operator_extra_links = (CmlModelLink(),)

    def __init__(
        self,
        *,
        project: str,
        model: CmlModelSpec | Mapping[str, Any] | str,
        registered_version: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.model = model
        self.registered_version = registered_version
        self._deployment: DeploymentRef | None = None
        #: What lineage and asset events name: the deployment once serving, and the model's page.
        self._deployed: DeploymentRef | None = None
        self._model_url: str | None = None

    def execute(self, context: Context) -> dict[str, str]:
        """Ensure the model, build it, deploy the build; return the IDs.

        :param context: the task's Airflow context.
        """
        from airflow_provider_cml.links import project_page
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads.models import MODEL_BUILD, BuildRef

        spec = self._spec()
        deadline = self._deadline(context)
        with self._bounded(deadline):
            project_id = str(self.hook.resolve_project(self.project)["id"])
            model, _ = self.hook.models.ensure_model(project_id, spec)
            ti = context["ti"]
            ti.xcom_push(key="model_id", value=str(model["id"]))
            page = project_page(self.hook, project_id)
            self._model_url = f"{page}/models" if page else None
            ti.xcom_push(key=MODEL_URL_XCOM_KEY, value=self._model_url)
            build = self._build(context, project_id, str(model["id"]), spec)
            ref = BuildRef(project_id, str(model["id"]), str(build["id"]))
            ti.xcom_push(key="build_id", value=ref.build_id)
            wait = Wait(MODEL_BUILD, ref, self.poll_interval, self.unknown_grace)  # a build cannot be stopped
            ended = self.wait_or_defer(
                wait, deadline, resume="execute_after_build", answer=build, carry=ref._asdict()
            )
            ended.result(self.hook.explain)
            return self._deploy(context, ref, spec, deadline)

    def execute_after_build(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, str]:
        """Resume after the build ended (deferrable): deploy it.

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.workloads.models import BuildRef

        ended, carried = self.resumed(event)
        ended.result(self.hook.explain)
        ref = BuildRef(carried["project_id"], carried["model_id"], carried["build_id"])
        deadline = carried.get("deadline")
        with self._bounded(deadline):
            return self._deploy(context, ref, self._spec(), deadline, resumed=True)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, str]:
        """Resume after the deployment ended (deferrable).

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.workloads.models import DeploymentRef

        ended, carried = self.resumed(event)
        ref = DeploymentRef(**{k: carried[k] for k in DeploymentRef._fields})
        self._deployment = ref  # what the lineage facet names, should it have failed
        return self._served(ref, ended.result(self.hook.explain))

    def _spec(self) -> CmlModelSpec:
        """The model's spec, built from ``registered_version`` when one is given."""
        from airflow_provider_cml.workloads.models import CmlModelSpec, registered_spec

        if self.registered_version is None:
            if isinstance(self.model, str):
                raise CmlConfigError(
                    f"model {self.model!r} is only a name: give its file and function (a CmlModelSpec or "
                    "a dict), or the registered version to build (registered_version=register.output)."
                )
            return CmlModelSpec.of(self.model)
        return registered_spec(self.model, self.registered_version)

    def _build(
        self, context: Context, project_id: str, model_id: str, spec: CmlModelSpec
    ) -> Mapping[str, Any]:
        """This task instance's build: an earlier try's still going or built since the last Clear.

        Else a new one: a Clear builds again, as it runs a job again.
        """
        from airflow_provider_cml.reattach import first_try_of_attempt
        from airflow_provider_cml.workloads.models import MODEL_BUILD

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
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT, DeploymentRef

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
        wait = Wait(MODEL_DEPLOYMENT, ref, self.poll_interval, self.unknown_grace, owns=True)
        ended = self.wait_or_defer(
            wait,
            deadline,
            resume="execute_complete",
            answer=deployment,
            carry=ref._asdict(),
            bridge=trigger_event_hold() if resumed else 0.0,
        )
        return self._served(ref, ended.result(self.hook.explain))

    def _served(self, ref: DeploymentRef, answer: Mapping[str, Any]) -> dict[str, str]:
        self._deployment = None  # serving: nothing left to stop on kill
        self._deployed = ref
        self.log.info("Cloudera AI model %s is deployed (deployment %s).", ref.model_id, answer.get("id"))
        return dict(ref._asdict())

    def post_execute(self, context: Context, result: Any = None) -> None:
        """After success: the asset event of each of the task's ``outlets`` names the deployment.

        Keys ``cml_model_id``, ``cml_build_id``, ``cml_deployment_id``, ``cml_project_id`` and
        ``cml_model_url`` (when known) in the event's ``extra``.

        :param context: the task's Airflow context.
        :param result: what ``execute`` returned (Airflow 3 does not pass it).
        """
        super().post_execute(context, result)
        if self._deployed is not None and self.outlets:
            from airflow_provider_cml.lineage import annotate_outlets, deployment_extra

            annotate_outlets(context, deployment_extra(self._deployed, self._url(context["ti"])))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the run facet ``cml`` naming model, build, deployment and the model's page.

        Also asked when the task failed: the facet then names the deployment that did not serve.
        ``None`` without the OpenLineage provider, or when no deployment was made.

        :param task_instance: the task instance (its XCom holds the page after a deferral).
        """
        from airflow_provider_cml.lineage import deployment_facet, operator_lineage

        ref = self._deployed or self._deployment
        return operator_lineage(deployment_facet(ref, self._url(task_instance)) if ref is not None else None)

    def _url(self, ti: Any) -> str | None:
        """The model's page: known here, or pushed to XCom before a deferral (a resumed task is new)."""
        if self._model_url is None:
            from airflow_provider_cml.lineage import pushed

            self._model_url = pushed(ti, MODEL_URL_XCOM_KEY)
        return self._model_url

    def on_kill(self) -> None:
        """Stop the deployment this task created while it is not yet serving; wake a sync wait."""
        if "hook" in self.__dict__:
            self.hook.interrupt()
        if self._deployment is not None:
            from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT

            self.hook.stop_if_active(self._deployment, MODEL_DEPLOYMENT)


def _try_of(comment: str, marker: str) -> int:
    """The try number a build's comment names (``<marker> try <n>``); 0 when it names none."""
    tail = comment[len(marker) :].strip().removeprefix("try").strip()
    return int(tail) if tail.isdigit() else 0


def _marker(context: Context) -> str:
    """Words naming the task instance (not the try) in a build's comment, found again on a re-run."""
    ti = context["ti"]
    return f"airflow {ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'map_index', -1)}"
