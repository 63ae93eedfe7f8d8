"""Environment and Arguments: checked once where handed over, then carried unchanged to the start's body."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from airflow_provider_cml import values
from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.values import START_TOKEN_ENV, Arguments, Environment
from tests.client.test_hostile_servers import JID, PID, _hook, run_json
from tests.hostile import Seen, answer, hostile
from tests.operators.test_cml import StubHook, StubTI, _operator

SECRET = "s3cr3t-value-0042"


class CountingMapping(Mapping[str, Any]):
    """A DAG's environment that counts how often it is read whole."""

    def __init__(self, items: dict[str, Any]) -> None:
        self._items = items
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Any:
        self.reads += 1
        return self._items.items()


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """The names the environment check looked at, in order (a spy on the per-name check)."""
    seen: list[str] = []
    real = values._checked_name

    def spy(name: Any) -> str:
        seen.append(name)
        return real(name)

    monkeypatch.setattr(values, "_checked_name", spy)
    return seen


# -- the value --------------------------------------------------------------------------------------


def test_values_become_strings_and_none_is_empty():
    environment = Environment.of({"A": "x", "B": 2, "C": 0.5, "D": False})
    assert environment == {"A": "x", "B": "2", "C": "0.5", "D": "False"}
    assert json.dumps({**environment}) == '{"A": "x", "B": "2", "C": "0.5", "D": "False"}'
    assert Environment.of(None) == {} and not Environment.of(None)


def test_a_checked_value_is_returned_unchanged_without_a_check(checks):
    environment = Environment.of({"A": "1", "B": "2"})
    assert checks == ["A", "B"]
    assert Environment.of(environment) is environment
    assert checks == ["A", "B"]  # not looked at again
    arguments = Arguments.of("--date 2024")
    assert Arguments.of(arguments) is arguments and arguments == "--date 2024"
    assert Arguments.of(None) is None


def test_it_cannot_be_made_unchecked_nor_changed():
    with pytest.raises(TypeError, match=r"Environment\.of"):
        Environment({"A": None})
    environment = Environment.of({"A": "1"})
    with pytest.raises(TypeError):
        environment["A"] = "2"  # type: ignore[index]
    with pytest.raises(AttributeError, match="cannot be changed"):
        environment._values = {}  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot be changed"):
        del environment._values
    source = {"A": "1"}
    made = Environment.of(source)
    source["A"] = "changed"
    assert made["A"] == "1"  # a copy, not a view of the DAG's dict


def test_tags_are_added_to_a_new_value():
    environment = Environment.of({"A": "1", "AIRFLOW_CTX_TASK_ID": "mine"})
    tagged = environment.tagged({"AIRFLOW_CTX_TASK_ID": "t", START_TOKEN_ENV: "token"})
    assert tagged == {"A": "1", "AIRFLOW_CTX_TASK_ID": "t", START_TOKEN_ENV: "token"}  # the tag wins
    assert environment == {"A": "1", "AIRFLOW_CTX_TASK_ID": "mine"}  # unchanged
    assert isinstance(tagged, Environment) and Environment.of(tagged) is tagged


def test_copies_and_pickles_keep_the_items_without_a_check(checks):
    environment = Environment.of({"A": "1"}).tagged({START_TOKEN_ENV: "token"})
    checks.clear()
    for again in (
        copy.copy(environment),
        copy.deepcopy(environment),
        pickle.loads(pickle.dumps(environment)),
    ):
        assert isinstance(again, Environment) and again == {"A": "1", START_TOKEN_ENV: "token"}
    assert checks == []


def test_repr_and_str_show_names_never_values():
    environment = Environment.of({"DB_PASSWORD": SECRET, "STAGE": "prod-stage"})
    for text in (repr(environment), str(environment), f"{environment}", repr([environment])):
        assert SECRET not in text and "prod-stage" not in text
        assert "DB_PASSWORD" in text and "values hidden" in text
    assert SECRET not in repr(environment.tagged({"AIRFLOW_CTX_TASK_ID": "t"}))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("A=1", r"^environment must be a dict of NAME -> string, not str\.$"),
        (["A"], r"^environment must be a dict of NAME -> string, not list\.$"),
        ({"1BAD": "x"}, r"environment key '1BAD' is not a valid environment variable name: use letters"),
        ({"BAD-NAME": "x"}, r"environment key 'BAD-NAME' is not a valid environment variable name"),
        ({"": "x"}, r"environment key '' is not a valid environment variable name"),
        ({3: "x"}, r"environment key 3 is not a valid environment variable name"),
        ({START_TOKEN_ENV: "mine"}, rf"environment may not set {START_TOKEN_ENV}: the provider sets it"),
        ({"A": f"x\x00{SECRET}"}, r"environment\['A'\] contains a NUL character, which no process can"),
        ({"A": None}, r"environment\['A'\] is a NoneType; Cloudera AI accepts only strings\. Pass a string"),
        ({"A": {"nested": SECRET}}, r"environment\['A'\] is a dict; .*json\.dumps it"),
        ({"A": [SECRET]}, r"environment\['A'\] is a list"),
        ({"A": math.nan}, r"environment\['A'\] is a float; Cloudera AI accepts only strings"),
        ({"A": math.inf}, r"environment\['A'\] is a float"),
    ],
)
def test_each_bad_environment_is_refused_naming_the_key_not_the_value(given, message):
    with pytest.raises(CmlConfigError, match=message) as info:
        Environment.of(given)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--a", "--b"], r"arguments must be a string \(it reaches the script as JOB_ARGUMENTS\), not list"),
        (3, r"arguments must be a string .* not int\. Join a list with ' '\.join"),
        ("a\x00b", r"^arguments contains a NUL character, which no process can receive\.$"),
    ],
)
def test_each_bad_arguments_is_refused(given, message):
    with pytest.raises(CmlConfigError, match=message):
        Arguments.of(given)


# -- checked once per start -------------------------------------------------------------------------


def test_the_operator_checks_and_masks_once_and_hands_the_value_on(monkeypatch, checks):
    masked: list[str] = []
    monkeypatch.setattr(values, "mask_if_sensitive", lambda name, value: masked.append(name))
    environment = CountingMapping({"DB_PASSWORD": SECRET, "N": 1})
    hook = StubHook()
    _operator(hook, environment=environment, arguments="--x", wait_for_completion=False).execute(
        {"ti": StubTI()}
    )
    assert (environment.reads, checks, masked) == (1, ["DB_PASSWORD", "N"], ["DB_PASSWORD", "N"])
    (_, args, _) = next(call for call in hook.calls if call[0] == "start_job_run")
    sent, arguments = args[2], args[3]
    assert isinstance(sent, Environment) and isinstance(arguments, Arguments)
    assert sent["DB_PASSWORD"] == SECRET and sent["N"] == "1" and sent["AIRFLOW_CTX_TASK_ID"] == "t"


def test_the_v1_start_gets_the_checked_value_without_tags(checks):
    hook = StubHook(legacy=True)
    environment = CountingMapping({"A": "1"})
    operator = _operator(
        hook, project="alice/analytics", job="208", environment=environment, wait_for_completion=False
    )
    operator.execute({"ti": StubTI()})
    (_, args, _) = hook.calls[0]
    assert isinstance(args[2], Environment) and args[2] == {"A": "1"}  # no task tags on v1
    assert (environment.reads, checks) == (1, ["A"])


def _start_server(posted: list[dict[str, Any]]):
    def handler(request: Seen):
        if request.method == "POST":
            posted.append(request.json())
            return [answer(200, run_json())]
        if request.path.split("?")[0].endswith("/runs"):
            return [answer(200, {"job_runs": []})]
        return [answer(200, {"id": PID, "name": "Analytics"})]

    return hostile(handler)


def test_one_check_from_the_operator_to_the_request_body(monkeypatch, checks):
    posted: list[dict[str, Any]] = []
    environment = CountingMapping({"RUN_DATE": "2024-06-01", "N": 2})
    with _start_server(posted) as server:
        _hook(monkeypatch, server.url)
        operator = CmlRunJobOperator(
            task_id="t",
            project=PID,
            job=JID,
            cml_conn_id="cml_hostile",
            environment=environment,
            arguments="--fast",
            wait_for_completion=False,
        )
        operator.execute({"ti": StubTI()})
    assert (environment.reads, checks) == (1, ["RUN_DATE", "N"])  # the hook did not check again
    [body] = posted
    sent = body["environment"]
    assert (sent["RUN_DATE"], sent["N"], sent["AIRFLOW_CTX_TASK_ID"]) == ("2024-06-01", "2", "t")
    assert len(sent[START_TOKEN_ENV]) == 32 and body["arguments"] == "--fast"


def test_a_hook_user_hands_a_plain_mapping_and_it_is_checked_once(monkeypatch, checks):
    posted: list[dict[str, Any]] = []
    with _start_server(posted) as server:
        hook = _hook(monkeypatch, server.url)
        hook.start_job_run(PID, JID, {"A": 1, "B": True})
        with pytest.raises(CmlConfigError, match=r"environment\['C'\] is a NoneType"):
            hook.start_job_run(PID, JID, {"C": None})
        with pytest.raises(CmlConfigError, match="arguments must be a string"):
            hook.start_job_run(PID, JID, {}, ["--a"])  # type: ignore[arg-type]
    assert checks == ["A", "B", "C"]
    [body] = posted  # the bad calls sent nothing
    assert {k: v for k, v in body["environment"].items() if k != START_TOKEN_ENV} == {"A": "1", "B": "True"}
    assert "arguments" not in body
