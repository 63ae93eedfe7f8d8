"""CmlRunJobOperator starts a Cloudera AI job run and, unless told not to, waits for it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlConfigError, CmlJobAlreadyActiveError, CmlJobRunTimeout
from airflow_provider_cml.links import RUN_URL_XCOM_KEY, CmlJobRunLink
from airflow_provider_cml.operators.base import CmlBaseOperator
from airflow_provider_cml.validation import validate_choice
from airflow_provider_cml.values import Arguments, Environment

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.plan import Ended
    from airflow_provider_cml.workloads.job_runs import RunRef

# The hook and trigger modules are imported when a task runs, not when a DAG is parsed: the hook
# pulls in the transport and the trigger pulls in Airflow's trigger machinery.

#: What a start does when the job already has an active run (Cloudera AI allows one per job).
IF_ACTIVE = ("fail", "wait", "reattach")
#: "Already active", yet no active run is listed (it ended meanwhile, or the listing lags): how
#: often the start is tried again, a second apart, before the error stands.
VANISHED_BLOCKER_TRIES = 30


class CmlRunJobOperator(CmlBaseOperator):
    """Start a run of a Cloudera AI job, with environment overrides, and wait for it to end.

    The run id is pushed to XCom (key ``run_id``, plus ``project_id`` and ``job_id``) as soon as the
    run exists, and returned (so it is also the task's ``return_value``).

    On a legacy v1 (CDSW Jobs API) connection, ``project`` is ``"<user-or-team>/<project-slug>"`` and
    ``job`` the numeric job ID from the job's web address; the job is started, its ``engine_id`` is
    returned, and ``wait_for_completion`` must be ``False`` because v1 cannot report status.

    :param project: project name or ID (templated).
    :param job: job name or ID within the project (templated).
    :param environment: environment-variable overrides for this run, e.g.
        ``{"RUN_DATE": "{{ ds }}"}`` (templated). Values must be strings, or numbers/booleans, which
        are turned into strings.
    :param arguments: one string given to the job as ``JOB_ARGUMENTS`` (templated, v2 only).
    :param wait_for_completion: wait until the run ends; fail the task unless it succeeded.
    :param poll_interval: seconds between status checks while waiting.
    :param timeout: seconds to wait at most; when it passes the run is stopped and the task fails.
        ``None`` waits as long as the run takes (bounded by ``execution_timeout`` if set).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``). The timeout still stops the run.
    :param reattach_on_retry: on a retry of the same task instance, reattach to the run an earlier
        try started while it is active, or take its success when a try of the same attempt started
        it (the worker was lost before the run ended), instead of starting another run. After a
        Clear, an ended run is not reused: the task runs the job again.
    :param unknown_grace: seconds a run may stay ``ENGINE_UNKNOWN`` (a status that says nothing of
        its progress) before the task gives up on it, stops it and fails; ``None``: no limit.
    :param follow_retries: when the job has Job Retry and the run fails in a way it retries, wait
        for the platform's retry runs and end with the last one ("succeeded on the platform's retry
        1 of 2"); the task then returns that run's id. ``False``: the first failure fails the task.
    :param if_active: what to do when the job already has an active run: ``"fail"`` (the default),
        ``"wait"`` (wait for that run to end, then start; within ``timeout``, in the triggerer when
        deferrable; mapped instances of one job so run one after another), or ``"reattach"`` (adopt
        the active run when this task instance started it, e.g. before a worker was lost).
    """

    template_fields: Sequence[str] = ("project", "job", "environment", "arguments")
    template_fields_renderers = {"environment": "json"}
    operator_extra_links = (CmlJobRunLink(),)

    def __init__(
        self,
        *,
        project: str,
        job: str,
        environment: Mapping[str, Any] | None = None,
        arguments: str | None = None,
        wait_for_completion: bool = True,
        poll_interval: float = 30,
        timeout: float | None = None,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        reattach_on_retry: bool = True,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        follow_retries: bool = True,
        if_active: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval,
            timeout=timeout,
            cml_conn_id=cml_conn_id,
            deferrable=deferrable,
            unknown_grace=unknown_grace,
            **kwargs,
        )
        self.if_active = validate_choice("if_active", if_active, IF_ACTIVE)
        self.project = project
        self.job = job
        self.environment = environment
        self.arguments = arguments
        self.wait_for_completion = wait_for_completion
        self.reattach_on_retry = reattach_on_retry
        self.follow_retries = follow_retries
        self._started: RunRef | None = None
        #: ``environment`` and ``arguments`` as checked values, once templates are rendered.
        self._checked: tuple[Environment, Arguments | None] | None = None
        self._run_url: str | None = None
        #: The run the wait ended on (a platform's retry, perhaps), named by lineage and asset events.
        self._ended: RunRef | None = None

    def execute(self, context: Context) -> str:
        """Start (or reattach to) the run, push its ids to XCom, then wait unless told not to.

        Everything is checked before the start: a rendered ``environment`` that is not a mapping,
        a NUL byte, a bad URL template or timeout fails here, with nothing started.

        :param context: the task's Airflow context.
        """
        return self.run_job(context)

    def run_job(self, context: Context) -> str:
        """What :meth:`execute` does, as a plain method: subclasses call it from their own ``execute``.

        Airflow 2.10 warns about (or, with ``[core] allow_nested_operators = False``, refuses) an
        ``execute`` called from another ``execute``, so ``super().execute`` is never used.

        :param context: the task's Airflow context.
        """
        # The extra link reads this XCom; it exists from the first moment so that Airflow, asking for
        # the link of a task that failed before starting anything, does not log "XCom not found".
        context["ti"].xcom_push(key=RUN_URL_XCOM_KEY, value=None)
        # Checked, and secret values masked, before anything is asked or started; the start sends these.
        self._checked = self._check_inputs()
        if self.hook.is_legacy_v1:
            return self._execute_v1(context)
        return self._start_and_wait(context, self._deadline(context))

    def _check_inputs(self) -> tuple[Environment, Arguments | None]:
        """The rendered ``environment`` and ``arguments`` as checked values; secret values masked in logs."""
        environment = Environment.of(self.environment)
        environment.mask_sensitive()
        return environment, Arguments.of(self.arguments)

    def _start_and_wait(self, context: Context, deadline: float | None) -> str:
        """Start (or adopt) the run, publish its ids, then wait by ``deadline`` (UNIX time).

        Every request on the way (look-ups, the start, the link, a busy job's wait) ends by the
        deadline, retries and ``Retry-After`` sleeps included; only the stop sent when it passed
        has a bound of its own (one request timeout).
        """
        with self._bounded(deadline):
            return self._start_and_wait_within(context, deadline)

    def _start_and_wait_within(self, context: Context, deadline: float | None) -> str:

        hook = self.hook
        ref, run = self._start_or_reattach(context, deadline)
        self._started = ref
        self._run_url = hook.job_run_url(self.project, ref.job_id, ref.run_id)
        self.log.info("Cloudera AI run %s: %s", ref.run_id, self._run_url or "(no link)")
        ti = context["ti"]
        for key, value in ref._asdict().items():
            ti.xcom_push(key=key, value=value)
        ti.xcom_push(key=RUN_URL_XCOM_KEY, value=self._run_url)
        if not self.wait_for_completion:
            return ref.run_id
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads.job_runs import JOB_RUN

        wait = Wait(
            JOB_RUN,
            ref,
            self.poll_interval,
            self.unknown_grace,
            owns=True,
            follow_retries=self.follow_retries,
            link=self._run_url,
        )
        ended = self.wait_or_defer(
            wait, deadline, resume="execute_complete", answer=run, carry=self._carried()
        )
        return self._finish(ended)

    def _finish(self, ended: Ended) -> str:
        """The run's id once it succeeded (a platform retry's, perhaps); raise why it did not otherwise."""
        from airflow_provider_cml.workloads.job_runs import describe_run

        self._ended, self._run_url = ended.ref, ended.link or self._run_url  # for post_execute, lineage
        run = ended.result(self.hook.explain)
        self.log.info("Cloudera AI %s%s.", describe_run(run), ended.note)
        return str(run.get("id") or ended.kind.id_of(ended.ref))

    def _start_or_reattach(
        self, context: Context, deadline: float | None
    ) -> tuple[RunRef, Mapping[str, Any]]:
        from airflow_provider_cml.reattach import EarlierRunFinder
        from airflow_provider_cml.workloads import job_runs as runs

        hook = self.hook
        ids = hook.resolve_run(self.project, self.job, "")
        finder = EarlierRunFinder(hook, context)
        run: Mapping[str, Any] | None = (
            finder.find(ids.project_id, ids.job_id) if self.reattach_on_retry else None
        )
        if run is not None:
            status = runs.status_of(run)
            self.log.info(
                "Run %s (%s) was started by an earlier try of this attempt: %s.",
                run["id"],
                status,
                "taking its result" if runs.is_terminal(status) else "reattaching to it",
            )
        else:
            run = self._start(context, ids, deadline)
            finder.remember(ids.project_id, ids.job_id, str(run["id"]))
        return ids._replace(run_id=str(run["id"])), run

    def _start(self, context: Context, ids: RunRef, deadline: float | None) -> Mapping[str, Any]:
        """Start a run; when the job is busy, act on ``if_active`` (fail, wait, or reattach)."""
        from airflow_provider_cml.reattach import task_identity

        hook = self.hook
        # Made by run_job; a task resumed after a busy job's deferral (a new operator) checks them here.
        environment, arguments = self._checked or self._check_inputs()
        environment = environment.tagged(task_identity(context))
        vanished = 0
        while True:
            try:
                return hook.start_job_run(ids.project_id, ids.job_id, environment, arguments)
            except CmlJobAlreadyActiveError as exc:
                busy = exc
            # Acted on outside the except block: an error raised below (a timeout, a kill) must not
            # come with the busy error chained to it.
            if self.if_active == "fail":
                raise self._busy_hint(context, busy, hook.active_run(ids.project_id, ids.job_id)) from None
            blocker = hook.active_run(ids.project_id, ids.job_id)
            if self.if_active == "reattach":
                return self._adopt(context, blocker)
            if blocker is None:  # it ended between the start and the look (or the listing lags)
                vanished += 1
                if vanished >= VANISHED_BLOCKER_TRIES:
                    raise busy
                self._check_deadline(deadline, None)
                hook.clock.sleep(1.0, hook.interrupted)
                continue
            vanished = 0
            self._wait_for_blocker(ids._replace(run_id=str(blocker["id"])), blocker, deadline)

    def _busy_hint(
        self, context: Context, busy: CmlJobAlreadyActiveError, blocker: Mapping[str, Any] | None
    ) -> CmlJobAlreadyActiveError:
        """The busy error with what this task can do about it (it runs with if_active='fail')."""
        from airflow_provider_cml.reattach import carries_identity

        if blocker is not None and carries_identity(dict(blocker), context):
            hint = (
                f"The active run {blocker.get('id')} was started by this task instance (an earlier try, "
                "or a start whose answer was lost): if_active='reattach' adopts it."
            )
        else:
            hint = "if_active='wait' starts this task's run once that run has ended."
        return CmlJobAlreadyActiveError(
            f"{busy} {hint}",
            http_status=busy.http_status,
            server_message=busy.server_message,
            request_id=busy.request_id,
        )

    def _adopt(self, context: Context, blocker: Mapping[str, Any] | None) -> Mapping[str, Any]:
        from airflow_provider_cml.reattach import carries_identity

        if blocker is not None and carries_identity(dict(blocker), context):
            self.log.info("Adopting active run %s, which this task instance started.", blocker["id"])
            return blocker
        whose = (
            "no active run is listed"
            if blocker is None
            else f"its active run {blocker.get('id')} was not started by this task instance"
        )
        raise CmlJobAlreadyActiveError(
            f"Job {self.job!r} already has an active run and {whose} (or the listing does not show run "
            "environments), so if_active='reattach' does not adopt it. Use if_active='wait' to run after "
            "it, or stop it."
        )

    def _wait_for_blocker(self, blocker: RunRef, run: Mapping[str, Any], deadline: float | None) -> None:
        """Wait (or defer) until another run of the job ends; then the start is tried again."""
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads import job_runs

        self.log.info(
            "Job %r is busy with run %s (%s); waiting for it to end before starting (if_active='wait').",
            self.job,
            blocker.run_id,
            job_runs.status_of(run),
        )
        self._check_deadline(deadline, blocker.run_id)
        wait = Wait(job_runs.JOB_RUN, blocker, self.poll_interval, self.unknown_grace)  # not ours to stop
        ended = self.wait_or_defer(wait, deadline, resume="execute_after_busy", carry=self._carried())
        if ended.how == "timeout":
            raise self._busy_timeout(blocker.run_id)

    def _check_deadline(self, deadline: float | None, blocker: str | None) -> float | None:
        """Seconds left until ``deadline``; raise the "nothing started" timeout when none are."""
        left = None if deadline is None else deadline - time.time()
        if left is not None and left <= 0:
            raise self._busy_timeout(blocker)
        return left

    def _busy_timeout(self, blocker: str | None) -> CmlJobRunTimeout:
        return CmlJobRunTimeout(
            f"Job {self.job!r} was still busy"
            + (f" with run {blocker}" if blocker else "")
            + f" when this task's {self._limit} passed; nothing was started. Raise {self._limit}, or "
            "run the tasks of this job one after another.",
            run_id=blocker or "",
            status=None,
        )

    def execute_after_busy(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the run that kept the job busy ended (whichever way): start this task's run now.

        :param context: the task's Airflow context.
        :param event: the trigger's event about the other run (its ``carry`` holds the deadline).
        """
        ended, carried = self.resumed(event)
        self._restore(carried)
        if ended.how == "timeout":
            raise self._busy_timeout(ended.kind.id_of(ended.ref))
        return self._start_and_wait(context, carried.get("deadline"))

    def _carried(self) -> dict[str, Any]:
        """Operator state a resumed task needs (subclasses add theirs); JSON-serialisable."""
        return {}

    def _restore(self, carried: Mapping[str, Any]) -> None:
        """Take back what :meth:`_carried` gave the trigger (subclasses take theirs).

        :param carried: the event's ``carry``.
        """

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: return the run id on success, raise a clear error otherwise.

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        ended, carried = self.resumed(event)
        self._restore(carried)
        return self._finish(ended)

    def _execute_v1(self, context: Context) -> str:
        if self.wait_for_completion:
            raise CmlConfigError(
                f"Connection {self.cml_conn_id!r} uses the legacy v1 Jobs API, which cannot report a run's "
                "status, so this task cannot wait for the job. Set wait_for_completion=False (the task "
                "then only starts the job), or use a v2 connection."
            )
        environment, arguments = self._checked or self._check_inputs()
        answer = self.hook.start_job_run(self.project, self.job, environment, arguments)
        engine_id = str(answer.get("engine_id"))
        context["ti"].xcom_push(key="engine_id", value=engine_id)
        return engine_id

    def _produced(self) -> RunRef | None:
        """The run this task ended with, or started when it did not wait; ``None`` before a start."""
        return self._ended or self._started

    def post_execute(self, context: Context, result: Any = None) -> None:
        """After success: the asset event of each of the task's ``outlets`` names the run in its ``extra``.

        Keys ``cml_run_id``, ``cml_project_id``, ``cml_job_id`` and ``cml_run_url`` (when known).

        :param context: the task's Airflow context.
        :param result: what ``execute`` returned (Airflow 3 does not pass it).
        """
        super().post_execute(context, result)
        ref = self._produced()
        if ref is not None and self.outlets:
            from airflow_provider_cml.lineage import annotate_outlets, run_extra

            annotate_outlets(context, run_extra(ref, self._run_url))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the run facet ``cml`` naming the run and its page (``None`` without the provider).

        Also asked when the task failed: the facet then names the run that failed.

        :param task_instance: the task instance (unused: the operator kept the run's IDs).
        """
        from airflow_provider_cml.lineage import operator_lineage, run_facet

        ref = self._produced()
        # A job a subclass made (CmlSubmitRunOperator) has no name here once resumed from a deferral.
        return operator_lineage(run_facet(ref, self._run_url, self.job or None) if ref is not None else None)

    def on_kill(self) -> None:
        """Stop the remote run when Airflow kills the task, and wake the wait at once."""
        if "hook" in self.__dict__:  # a wait (for our run, or for the job to be free) may be sleeping
            self.hook.interrupt()
        if self._started and self.wait_for_completion:
            self.hook.stop_if_active(self._started)
