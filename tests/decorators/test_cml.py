"""@task.cml: how a function's return value is read (parse_overrides), and the decorator's registration."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from airflow_provider_cml.decorators.cml import CmlDecoratedOperator, cml_task, describe, parse_overrides
from airflow_provider_cml.exceptions import CmlConfigError, CmlTaskReturnError

SECRET = "s3cr3t-value-XYZ"


def test_none_is_no_overrides():
    assert parse_overrides(None) == (None, None, None)


def test_an_environment_dict_is_the_runs_variables_numbers_and_bools_as_strings():
    job, environment, arguments = parse_overrides({"RUN_DATE": "2024-01-01", "ROWS": 10, "FULL": True})
    assert (job, arguments) == (None, None)
    assert dict(environment) == {"RUN_DATE": "2024-01-01", "ROWS": "10", "FULL": "True"}


def test_an_empty_dict_is_an_empty_environment():
    assert parse_overrides({}) == (None, {}, None)


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ({"job": "backfill"}, ("backfill", None, None)),
        ({"environment": {"A": "1"}}, (None, {"A": "1"}, None)),
        ({"arguments": "--full"}, (None, None, "--full")),
        ({"job": "j", "environment": {"job": "nightly"}, "arguments": "x"}, ("j", {"job": "nightly"}, "x")),
        ({"job": None, "environment": None}, (None, None, None)),
    ],
)
def test_the_structured_form_is_a_dict_of_only_job_environment_arguments(returned, expected):
    assert parse_overrides(returned) == expected


def test_a_variable_named_job_must_use_the_structured_form():
    with pytest.raises(CmlTaskReturnError) as caught:
        parse_overrides({"job": "nightly", "RUN_DATE": SECRET}, "pick")
    message = str(caught.value)
    assert "'pick' returned a dict {'job': str, 'RUN_DATE': str}" in message
    assert "it mixes 'job' with other keys" in message
    assert "{'environment': {'job': ...}}" in message
    assert SECRET not in message and "nightly" not in message


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        (["A=1"], "returned a list of 1 items: return a dict of environment variables"),
        ("A=1", "returned a str: return a dict"),
        (42, "returned an int: return a dict"),
        ({1: SECRET}, "returned a dict {<int key>: str}: its keys must be strings"),
        ({("A", SECRET): "x"}, "returned a dict {<tuple key>: str}: its keys must be strings"),
        ({"A": {"nested": SECRET}}, "returned a dict {'A': dict}: environment['A'] is a dict"),
        ({"A": [SECRET]}, "environment['A'] is a list"),
        ({"A": None}, "environment['A'] is a NoneType"),
        ({"BAD-NAME": SECRET}, "environment key 'BAD-NAME' is not a valid environment variable name"),
        ({"A": SECRET + "\x00"}, "environment['A'] contains a NUL character"),
        ({"AIRFLOW_CML_START_TOKEN": SECRET}, "environment may not set AIRFLOW_CML_START_TOKEN"),
        ({"job": 7}, "'job' must be a job name or ID (a non-empty string), not an int"),
        ({"job": ""}, "'job' must be a job name or ID"),
        ({"environment": [SECRET]}, "'environment' must be a dict of variables, not a list of 1 items"),
        ({"environment": {"A": {"k": SECRET}}}, "environment['A'] is a dict"),
        ({"arguments": [SECRET]}, "arguments must be a string"),
    ],
)
def test_a_bad_return_value_is_named_by_its_types_and_keys_never_its_values(returned, named):
    with pytest.raises(CmlTaskReturnError) as caught:
        parse_overrides(returned, "make_env")
    message = str(caught.value)
    assert message.startswith("The @task.cml function 'make_env' returned ")
    assert named in message
    assert SECRET not in message


def test_the_error_is_a_config_error():
    assert issubclass(CmlTaskReturnError, CmlConfigError)


def test_describe_names_at_most_twenty_keys():
    big = OrderedDict((f"V{i}", i) for i in range(25))
    assert describe(big).endswith("'V19': int, ... 5 more}")


def test_registered_as_task_cml():
    from airflow_provider_cml.get_provider_info import get_provider_info

    assert {
        "name": "cml",
        "class-name": "airflow_provider_cml.decorators.cml.cml_task",
    } in get_provider_info()["task-decorators"]
    try:
        from airflow.sdk import task
    except ImportError:  # Airflow 2
        from airflow.decorators import task
    assert task.cml is cml_task


def test_multiple_outputs_is_refused_and_never_inferred():
    with pytest.raises(CmlConfigError, match="multiple_outputs"):
        cml_task(project="P", job="J", multiple_outputs=True)

    def annotated() -> dict[str, str]:
        return {}

    assert cml_task(project="P", job="J")(annotated).multiple_outputs is False


def test_the_decorators_fields_and_the_functions_arguments_are_templated():
    assert {"project", "job", "environment", "arguments", "op_args", "op_kwargs"} <= set(
        CmlDecoratedOperator.template_fields
    )
