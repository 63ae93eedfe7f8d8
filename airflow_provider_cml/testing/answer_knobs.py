"""Workbench knobs that change how an answer is sent, not what it says: proto3 zeros, slow look-ups.

* ``omit_zero_values`` (a workbench spec key, :attr:`Workbench.omit_zero_values`): answers about
  jobs, models and applications leave out every field that holds its type's zero value (``0``,
  ``false``, ``""``, an int64 ``"0"``, an empty map, nested ones too), as proto3 JSON may. An empty
  ``environment`` (a JSON string in answers) is sent as ``""`` and so left out as well: a server
  that keeps no variables has no JSON to give. Empty lists are left out too (a listing with no
  items is ``{}``).
* :attr:`Serving.model_lookup_delay`: a ListModels answer, already computed, waits this long before
  it is sent (outside the workbench's lock), so that two callers' look-ups interleave with their
  creates, as two DAG runs' can.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cml.testing.workbench import Workbench

#: Jobs (not their runs), models with their builds and deployments, applications.
_PROTO3_PATHS = re.compile(r"/api/v2/(jobs|projects/[^/]+/(jobs(/[^/]+)?|models(/.*)?|applications(/.*)?))")
_MODELS_LISTING = re.compile(r"/api/v2/projects/[^/]+/models")


def shape(wb: Workbench, method: str, path: str, status: int, body: Any) -> Any:
    """The answer as this workbench's knobs send it (after any delay they ask for).

    :param wb: the workbench (its knobs).
    :param method: the request's method.
    :param path: the request's path.
    :param status: the answer's status (only 200 answers are shaped).
    :param body: the answer's body.
    """
    if status != 200:
        return body
    if method == "GET" and wb.serving.model_lookup_delay and _MODELS_LISTING.fullmatch(path):
        time.sleep(wb.serving.model_lookup_delay)
    if wb.omit_zero_values and _PROTO3_PATHS.fullmatch(path):
        return without_zeros(body)
    return body


def without_zeros(value: Any) -> Any:
    """``value`` with every zero-valued field of every object left out (proto3 JSON's unpopulated).

    Zero values: ``0``, ``false``, ``""``, an int64 ``"0"``, ``{}`` and ``[]``.

    :param value: a JSON value.
    """
    if isinstance(value, list):
        return [without_zeros(item) for item in value]
    if not isinstance(value, dict):
        return value
    kept = {}
    for key, item in value.items():
        item = without_zeros(item)
        if key == "environment" and item == "{}":
            continue  # an empty environment: no JSON to give
        if item is False or item in ("", "0", {}, []) or (type(item) in (int, float) and item == 0):
            continue
        kept[key] = item
    return kept
