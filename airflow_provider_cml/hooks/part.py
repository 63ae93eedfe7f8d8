"""What each part of the hook (job definitions, run starts, models, applications) is built on.

A part is reached as an attribute of :class:`~airflow_provider_cml.hooks.cml.CmlHook`
(``hook.jobs``, ``hook.models``...) and sends every request through that hook's transport, so
its connection, retries, bounds and names cache are the hook's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_cml.client import listing

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

#: What an ``ensure_...`` method did to a definition.
EnsureAction = Literal["created", "updated", "unchanged"]


class HookPart:
    """One concern of a hook.

    :param hook: the hook whose connection the part uses.
    """

    def __init__(self, hook: CmlHook) -> None:
        self.hook = hook

    def read_all(
        self,
        path: str,
        key: str,
        *,
        search_filter: Mapping[str, Any] | None = None,
        sort: str | None = None,
        not_found: str | None = None,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing, page after page (see :func:`.listing.paginate`).

        :param path: the listing's path.
        :param key: the answer's list field.
        :param search_filter: the server's ``search_filter`` (name filters match substrings).
        :param sort: e.g. ``"-created_at"``, newest first.
        :param not_found: what a 404 means, for its message.
        :param params: further query parameters, e.g. ``page_size``.
        """
        query = {**listing.listing_params(search_filter, sort), **params}
        return listing.paginate(self.hook.transport, path, key, params=query, not_found=not_found)

    def read_project_listing(
        self, project_id: str, path: str, key: str, search_filter: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Every item of one of a project's listings (models, applications, experiments).

        A 404 there means the project is missing: the error says so.

        :param project_id: project ID.
        :param path: the listing's path below the project.
        :param key: the answer's list field.
        :param search_filter: the server's ``search_filter``.
        """
        where = f"project {project_id!r}"
        return list(self.read_all(path, key, search_filter=search_filter, not_found=where))
