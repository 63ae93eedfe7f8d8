"""``@task.cml``: a TaskFlow function gives a Cloudera AI job run's overrides, then the job runs.

The run is started and awaited exactly as by :class:`~airflow_provider_cml.operators.cml.CmlRunJobOperator`.
Imported when a DAG file uses ``@task.cml``: like the operator module, it does not import the hook, the
transport or aiohttp (those come when the task runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_cml.exceptions import CmlConfigError, CmlTaskReturnError
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.values import Arguments, Environment

# The decorator base moved into the Task SDK in Airflow 3.
if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory
else:  # Airflow 2.10 / 2.11
    from airflow.decorators.base import DecoratedOperator, task_decorator_factory

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import TaskDecorator

    from airflow_provider_cml._compat import Context

#: The keys of the structured form. A returned dict whose keys are all among these (at least one) is
#: the structured form; a dict with none of them is an environment dict; a dict with some is refused.
STRUCTURED_KEYS = ("job", "environment", "arguments")
#: How many of a returned dict's keys an error names (a huge dict would flood the log).
NAMED_KEYS = 20


class Overrides(NamedTuple):
    """What a ``@task.cml`` function asked for: ``None`` fields leave the decorator's own value."""

    job: str | None = None
    environment: Environment | None = None
    arguments: Arguments | None = None


def describe(value: object) -> str:
    """What ``value`` is, without its content: its type; for a mapping, its keys and their values' types.

    String keys are names (of variables or of the structured form's fields) and are shown; any other
    key is shown by its type only.

    :param value: what a function returned.
    """
    if isinstance(value, Mapping):
        shown = [
            f"{repr(key) if isinstance(key, str) else f'<{type(key).__name__} key>'}: {type(item).__name__}"
            for key, item in list(value.items())[:NAMED_KEYS]
        ]
        if len(value) > NAMED_KEYS:
            shown.append(f"... {len(value) - NAMED_KEYS} more")
        return f"{_a(type(value).__name__)} {{{', '.join(shown)}}}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"{_a(type(value).__name__)} of {len(value)} items"
    return _a(type(value).__name__)


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def parse_overrides(returned: object, function: str = "function") -> Overrides:
    """Read a ``@task.cml`` function's return value as the run's overrides.

    * ``None``: no overrides.
    * A dict whose keys are all among ``job``, ``environment``, ``arguments`` (at least one): the
      structured form. ``job`` is a job name or ID, ``environment`` a dict of variables, ``arguments``
      the run's ``JOB_ARGUMENTS`` string; a missing or ``None`` field keeps the decorator's value.
    * Any other dict: the run's environment variables (name to string, number or bool). It may not
      have a key named ``job``, ``environment`` or ``arguments``: such a variable goes in the
      structured form's ``environment`` (``{"environment": {"job": "nightly"}}``), so a dict is never
      read one way when it was meant the other.

    :param returned: what the function returned.
    :param function: the function's name, for the error message.
    :raises CmlTaskReturnError: anything else, naming what was returned (types and keys, never values).
    """
    if returned is None:
        return Overrides()

    def bad(problem: str) -> CmlTaskReturnError:
        return CmlTaskReturnError(
            f"The @task.cml function {function!r} returned {describe(returned)}: {problem}"
        )

    if not isinstance(returned, Mapping):
        raise bad(
            "return a dict of environment variables, a dict with any of 'job', 'environment' and "
            "'arguments', or None."
        )
    if not all(isinstance(key, str) for key in returned):
        raise bad(
            "its keys must be strings (environment variable names, or 'job', 'environment', 'arguments')."
        )
    structured = [key for key in returned if key in STRUCTURED_KEYS]
    if structured and len(structured) < len(returned):
        raise bad(
            f"it mixes {', '.join(map(repr, structured))} with other keys. Return either only 'job', "
            "'environment' and 'arguments' (the structured form), or only environment variables; a "
            f"variable named {structured[0]!r} goes in the structured form's environment: "
            f"{{'environment': {{{structured[0]!r}: ...}}}}."
        )
    if not structured:
        return Overrides(environment=_environment(returned, bad))
    job = returned.get("job")
    if job is not None and (not isinstance(job, str) or not job):
        raise bad(f"'job' must be a job name or ID (a non-empty string), not {describe(job)}.")
    environment = returned.get("environment")
    if environment is not None and not isinstance(environment, Mapping):
        raise bad(f"'environment' must be a dict of variables, not {describe(environment)}.")
    try:
        arguments = Arguments.of(returned.get("arguments"))
    except CmlConfigError as exc:
        raise bad(str(exc)) from None
    return Overrides(
        job=job,
        environment=None if environment is None else _environment(environment, bad),
        arguments=arguments,
    )


def _environment(variables: Mapping[str, Any], bad: Callable[[str], CmlTaskReturnError]) -> Environment:
    # Environment.of names the key at fault, never its value.
    try:
        return Environment.of(variables)
    except CmlConfigError as exc:
        raise bad(str(exc)) from None


class CmlDecoratedOperator(DecoratedOperator, CmlRunJobOperator):
    """The operator behind ``@task.cml``: calls the function in the worker, then runs the job.

    The function's return value (see :func:`parse_overrides`) overrides the decorator's ``job``,
    ``environment`` (merged: the decorator's variables, then the returned ones) and ``arguments``;
    then the run is started and awaited as by ``CmlRunJobOperator``, whose parameters the decorator
    takes. The task returns (and pushes to XCom) the run's id.

    :param python_callable: the decorated function.
    :param op_args: its positional arguments (templated).
    :param op_kwargs: its keyword arguments (templated).
    :param kwargs: ``CmlRunJobOperator`` parameters (``project``, ``job``, ``environment``...).
    """

    custom_operator_name = "@task.cml"
    template_fields: Sequence[str] = (*CmlRunJobOperator.template_fields, *DecoratedOperator.template_fields)
    template_fields_renderers = {
        **DecoratedOperator.template_fields_renderers,
        **CmlRunJobOperator.template_fields_renderers,
    }

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)

    def execute(self, context: Context) -> str:
        """Call the function, take its overrides, then start and wait as ``CmlRunJobOperator`` does.

        :param context: the task's Airflow context.
        """
        self._take_overrides(context)
        return self.run_job(context)  # not CmlRunJobOperator.execute: see its run_job

    def execute_after_busy(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after a busy job's run ended: the function is called again, then the run starts.

        The overrides are not carried through the triggerer (its event is logged, and an environment
        may hold secrets), so the function gives them again, as templates are rendered again.

        :param context: the task's Airflow context.
        :param event: the trigger's event about the other run.
        """
        self._take_overrides(context)
        return super().execute_after_busy(context, event)

    def _take_overrides(self, context: Context) -> None:
        overrides = parse_overrides(
            self._call(context), getattr(self.python_callable, "__name__", "function")
        )
        if overrides.job is not None:
            self.job = overrides.job
        if overrides.environment is not None:
            self.environment = Environment.of({**Environment.of(self.environment), **overrides.environment})
        if overrides.arguments is not None:
            self.arguments = overrides.arguments
        self.log.info(
            "The function's overrides: job %s, environment %s, arguments %s.",
            repr(overrides.job) if overrides.job is not None else "unchanged",
            sorted(overrides.environment) if overrides.environment is not None else "unchanged",
            "given" if overrides.arguments is not None else "unchanged",
        )

    def _call(self, context: Context) -> object:
        """The function's return value, called as Airflow's ``@task`` calls one (context keys by name)."""
        # Where Airflow's own @task finds them (as apache-airflow-providers-common-compat looks them up).
        try:  # Airflow 3
            from airflow.sdk.bases.decorator import determine_kwargs
        except ImportError:  # Airflow 2.10 / 2.11
            from airflow.utils.operator_helpers import determine_kwargs  # type: ignore[no-redef]
        try:  # Airflow 3
            from airflow.sdk.definitions.context import context_merge
        except ImportError:  # Airflow 2.10 / 2.11
            from airflow.utils.context import context_merge  # type: ignore[no-redef,attr-defined]

        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        return self.python_callable(*self.op_args, **kwargs)


def cml_task(
    python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """``@task.cml(project=..., job=...)``: the function returns the run's overrides; the job then runs.

    The function runs in the worker and returns one of:

    * an environment dict, ``{"RUN_DATE": ds, "ROWS": 10}`` (values: strings, numbers, bools);
    * a dict with any of ``job``, ``environment``, ``arguments`` (and no other key), to run another
      job or set ``JOB_ARGUMENTS`` too: ``{"job": "backfill", "environment": {...}}``;
    * ``None``: the decorator's arguments as they are.

    A dict is the structured form when every key is ``job``, ``environment`` or ``arguments``; an
    environment dict may have none of those three keys. So a variable literally named ``job`` must be
    returned in the structured form: ``{"environment": {"job": "nightly"}}``. Anything else (a list,
    a non-string key, a dict as a variable's value...) fails the task before anything is started,
    with a :class:`~airflow_provider_cml.exceptions.CmlTaskReturnError` naming the keys and types
    returned, never the values.

    Returned values win over the decorator's: ``job`` and ``arguments`` replace them, and the
    environment is the decorator's ``environment`` updated with the returned variables. Then the run
    is started and awaited as by :class:`~airflow_provider_cml.operators.cml.CmlRunJobOperator`
    (``deferrable``, ``if_active``, ``timeout``, reattach on retry...), whose parameters the decorator
    takes; ``project``, ``job``, ``environment`` and ``arguments`` stay templated. The task returns the
    run's id. ``.expand()`` over the function's arguments starts one run per mapped instance. With
    ``if_active="wait"`` and ``deferrable``, the function is called again when the busy job is free.

    :param python_callable: the function (given when used as ``@task.cml`` without parentheses).
    :param multiple_outputs: not supported: the task returns one value, the run's id.
    :param kwargs: ``CmlRunJobOperator`` parameters and ``BaseOperator`` ones (``task_id``, ``retries``...).
    """
    if multiple_outputs:
        raise CmlConfigError(
            "@task.cml returns one value, the run's id: multiple_outputs=True is not supported."
        )
    return task_decorator_factory(
        python_callable=python_callable,
        # False, not inferred: a function annotated "-> dict" would otherwise have the run's id unrolled.
        multiple_outputs=False,
        decorated_operator_class=CmlDecoratedOperator,
        **kwargs,
    )
