"""What a field of an API answer means in a spec's terms, a field left out included.

API v2 is protobuf served as JSON, and proto3 JSON may leave out every field that holds its type's
zero value: ``nvidia_gpu: 0``, ``bypass_authentication: false``, ``description: ""``, an empty map.
So a field missing from an answer is its type's zero, never "unknown": an application read without
``nvidia_gpu`` has 0 GPUs. The types are the sheets' (``cml-api-v2-spec.md`` §3.4 for a Job,
``cml-api-v2-models-apps.md`` §2, §4 and §7 for models, deployments and applications); this module
is the one place that knows them, so every comparison of a spec with an answer reads fields here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: JSON forms of the API's types: proto3 ``string``, ``bool``, ``int32`` (a number), ``int64`` (a
#: string), ``double``, and ``json`` (a map carried as a JSON string, as ``environment`` is in
#: every answer). Any other name is a message (a nested object) of this table.
_COMMON_WORKLOAD = {
    "name": "string",
    "script": "string",
    "kernel": "string",
    "runtime_identifier": "string",
    "cpu": "double",
    "memory": "double",
    "nvidia_gpu": "int32",
    "environment": "json",
    "run_as": "int32",
    "accelerator_label_id": "int64",
    "resource_group_id": "int32",
    "resource_profile_id": "int32",
}
TYPES: dict[str, dict[str, str]] = {
    "Job": {
        **_COMMON_WORKLOAD,
        "arguments": "string",
        "schedule": "string",
        "parent_id": "string",
        "timeout": "int64",
        "kill_on_timeout": "bool",
        "paused": "bool",
        "retry_enabled": "bool",
        "max_retry": "int32",
        "retry_delay": "int32",
        "retry_for_script_failure": "bool",
        "retry_for_system_failure": "bool",
        "retry_for_timedout_runs": "bool",
        "retry_for_skipped_runs": "bool",
    },
    "Application": {
        **_COMMON_WORKLOAD,
        "description": "string",
        "subdomain": "string",
        "bypass_authentication": "bool",
        "cdv_app": "bool",
    },
    "Model": {
        "name": "string",
        "description": "string",
        "auth_enabled": "bool",
        "registered_model_id": "string",
        "deletion_status": "string",
        "created_at": "string",
        "visibility": "string",
        "default_resources": "DefaultResources",
        "default_replication_policy": "DefaultReplicationPolicy",
        "run_as": "int32",
    },
    "DefaultResources": {"cpu_millicores": "int64", "memory_mb": "int64", "nvidia_gpus": "int64"},
    "DefaultReplicationPolicy": {"num_replicas": "int64", "type": "string"},
    "ModelDeployment": {
        "cpu": "double",
        "memory": "double",
        "nvidia_gpu": "int32",
        "replicas": "int32",
        "environment": "json",
        "status": "string",
    },
}
_ZEROS: dict[str, Any] = {"string": "", "bool": False, "int32": 0, "int64": 0, "double": 0.0}


def field_type(kind: str, key: str) -> str:
    """The sheet's type of ``kind``'s field ``key`` (a dotted path reaches into messages).

    :param kind: the answer's schema, e.g. ``"Application"``.
    :param key: the field, e.g. ``"nvidia_gpu"`` or ``"default_resources.nvidia_gpus"``.
    """
    *outer, last = key.split(".")
    for part in outer:
        kind = TYPES[kind][part]
    return TYPES[kind][last]


def read(kind: str, answer: Mapping[str, Any], key: str) -> Any:
    """Field ``key`` of ``answer`` in a spec's terms; a field (or message) left out is its type's zero.

    ``int64`` strings become ints, doubles floats, ``json`` strings maps of strings. A value that
    does not parse is returned as it came, so it compares unequal to anything a spec holds.

    :param kind: the answer's schema (see :data:`TYPES`).
    :param answer: the answer, as the API sent it.
    :param key: the field; a dotted path for a field of a nested message.
    """
    *outer, last = key.split(".")
    value: Any = answer
    for part in outer:
        value = value.get(part) if isinstance(value, Mapping) else None
    value = value.get(last) if isinstance(value, Mapping) else None
    return as_type(field_type(kind, key), value)


def as_type(kind: str, value: Any) -> Any:
    """``value`` read as the API's type ``kind`` (``None``, i.e. left out, is the type's zero).

    :param kind: ``string``, ``bool``, ``int32``, ``int64``, ``double`` or ``json``.
    :param value: the value as the answer carries it.
    """
    if kind == "json":
        if value is None or value == "":
            return {}
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            return value
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, Mapping) else value
    if value is None:
        return _ZEROS.get(kind, {})  # a message left out: all its fields are zero
    try:
        if kind in ("int32", "int64") and not isinstance(value, bool):
            return int(value)
        if kind == "double" and not isinstance(value, bool):
            return float(value)
    except (TypeError, ValueError):
        return value
    return value
