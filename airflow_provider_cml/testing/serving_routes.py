"""The HTTP routes of the simulated workbench's models, builds, deployments and applications.

Paths as API v2 spec 26.06.13 has them: updates under the dotted ``{model.id}`` and
``{application.id}`` keys, ``:restart`` and ``:stop`` as bodiless POSTs. Also the model service's
``POST /model`` (not part of API v2), which calls a deployed model's function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from airflow_provider_cml.testing.serving import Serving
from airflow_provider_cml.testing.workbench import ApiError, project_collection

#: ``(method, path) -> (status, body)``, or ``None`` when the path is not one of these.
Page = Callable[[str, list[dict[str, Any]]], dict[str, Any]]

_MODEL = r"/projects/([^/]+)/models/([^/:]+)"
_BUILD = _MODEL + r"/builds/([^/:]+)"
_APP = r"/projects/([^/]+)/applications/([^/:]+)"


def route(serving: Serving, method: str, rest: str, body: Callable[[], dict[str, Any]], page: Page) -> Any:
    """Answer one API v2 request below ``/api/v2`` if it is a serving path, else ``None``.

    :param serving: the state.
    :param method: the HTTP method.
    :param rest: the path below ``/api/v2``.
    :param body: reads the request's JSON body.
    :param page: pages a listing (filter, sort, page size and token from the query).
    """
    wb = serving.wb
    listed = project_collection(
        wb, method, rest, "models", serving.models.values(), serving.create_model, body, page
    )
    if listed is not None:
        return listed
    m = re.fullmatch(_MODEL, rest)
    if m:
        model = serving.model(wb.project(m.group(1)), m.group(2))
        if method == "GET":
            return 200, model.to_api()
        if method == "PATCH":
            return 200, serving.update_model(model, body()).to_api()
        if method == "DELETE":
            serving.delete_model(model)
            return 200, {}
    m = re.fullmatch(_MODEL + "/builds", rest)
    if m:
        model = serving.model(wb.project(m.group(1)), m.group(2))
        if method == "GET":
            return 200, page("model_builds", [b.to_api() for b in serving.builds_of(model)])
        if method == "POST":
            return 200, serving.create_build(model, body()).to_api()
    m = re.fullmatch(_BUILD, rest)
    if m and method == "GET":
        return 200, serving.build(serving.model(wb.project(m.group(1)), m.group(2)), m.group(3)).to_api()
    m = re.fullmatch(_BUILD + "/deployments", rest)
    if m:
        build = serving.build(serving.model(wb.project(m.group(1)), m.group(2)), m.group(3))
        if method == "GET":
            return 200, page("model_deployments", [d.to_api() for d in serving.deployments_of(build)])
        if method == "POST":
            return 200, serving.create_deployment(build, body()).to_api()
    m = re.fullmatch(_BUILD + r"/deployments/([^/:]+)(:restart|:stop)?", rest)
    if m:
        build = serving.build(serving.model(wb.project(m.group(1)), m.group(2)), m.group(3))
        deployment = serving.deployment(build, m.group(4))
        if method == "GET" and not m.group(5):
            return 200, deployment.to_api()
        if method == "POST" and m.group(5) == ":stop":
            return 200, serving.stop_deployment(deployment).to_api()
        if method == "POST" and m.group(5) == ":restart":
            return 200, serving.restart_deployment(deployment).to_api()
    return _registry(serving, method, rest, body, page) or _applications(serving, method, rest, body, page)


def _registry(
    serving: Serving, method: str, rest: str, body: Callable[[], dict[str, Any]], page: Page
) -> Any:
    if method == "POST" and rest == "/registry/models":
        return 200, serving.registry_writes.register(body())
    if method != "GET":
        return None
    serving.registry_writes.settle()  # versions become READY (or FAILED) when their time has come
    if rest == "/registry/models":  # its filter key is model_name: the pager matches "name" for it
        details = [{k: v for k, v in m.items() if k != "model_versions"} for m in serving.registry.values()]
        return 200, page("models", details)
    m = re.fullmatch(r"/registry/models/([^/:]+)", rest)
    if m:
        return 200, serving.registered(m.group(1))
    m = re.fullmatch(r"/registry/models/([^/:]+)/versions/([^/:]+)", rest)
    if m:
        return 200, serving.registered_version(m.group(1), m.group(2))
    return None


def _applications(
    serving: Serving, method: str, rest: str, body: Callable[[], dict[str, Any]], page: Page
) -> Any:
    wb = serving.wb
    apps = serving.applications.values()
    listed = project_collection(
        wb, method, rest, "applications", apps, serving.create_application, body, page
    )
    if listed is not None:
        return listed
    m = re.fullmatch(_APP + r"(:restart|:stop)?", rest)
    if m:
        app = serving.application(wb.project(m.group(1)), m.group(2))
        verb = m.group(3)
        if method == "GET" and not verb:
            return 200, app.to_api()
        if method == "PATCH" and not verb:
            return 200, serving.update_application(app, body()).to_api()
        if method == "POST" and verb == ":restart":
            return 200, serving.restart_application(app).to_api()
        if method == "POST" and verb == ":stop":
            return 200, serving.stop_application(app).to_api()
    return None


def model_service(
    serving: Serving, query: dict[str, list[str]], raw: bytes, authorization: str
) -> tuple[int, Any]:
    """``POST /model``: ``{"accessKey": ..., "request": {...}}`` (or ``?accessKey=``) to the live deployment.

    :param serving: the state.
    :param query: the query string, parsed.
    :param raw: the request body.
    :param authorization: the ``Authorization`` header (``Bearer <API key>`` for a model with auth).
    """
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "invalid JSON body") from None
    if not isinstance(payload, dict) or "request" not in payload:
        raise ApiError(400, 'the body must be {"accessKey": ..., "request": {...}}')
    access_key = str(payload.get("accessKey") or (query.get("accessKey") or [""])[0])
    scheme, _, key = authorization.partition(" ")
    return serving.predict(access_key, payload["request"], key if scheme.lower() == "bearer" else None)
