"""Reading API v2 listings: every page, the same filter on each, and a clear stop for one that never ends.

Also how a name is picked from what a listing returned (the server's name filter matches
substrings; the provider wants exactly one exact match, and says what is close when there is none).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlApiError, CmlLookupError
from airflow_provider_cml.waiting.kinds import parse_time

if TYPE_CHECKING:
    from airflow_provider_cml.client.sync_client import SyncTransport

DEFAULT_PAGE_SIZE = 100
#: Bounds on one listing: 1,000 pages of 100 are far beyond any workbench; a loop is a broken server.
MAX_PAGES = 1000
MAX_EMPTY_PAGES = 5


def paginate(
    transport: SyncTransport,
    path: str,
    key: str,
    *,
    params: Mapping[str, Any] | None = None,
    not_found: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every item of a listing, following ``next_page_token`` through all pages.

    The same filter and sort are sent with every page, as the API requires. A listing that never
    ends (a token seen before, :data:`MAX_PAGES` pages, or :data:`MAX_EMPTY_PAGES` empty pages in a
    row that still promise more) stops with a clear error instead of looping.

    :param transport: the hook's transport.
    :param path: the listing's path, e.g. ``/projects``.
    :param key: the answer's list field, e.g. ``"projects"``.
    :param params: filter and sort parameters.
    :param not_found: what a 404 means, for its message.
    """
    query: dict[str, Any] = {"page_size": DEFAULT_PAGE_SIZE, **(params or {})}
    seen_tokens: set[str] = set()
    empty_in_a_row = 0
    for _ in range(MAX_PAGES):
        page = transport.request("GET", path, params=query, not_found=not_found)
        items = page.get(key)
        if items is None and set(page) <= {"next_page_token"}:
            items = []  # proto3 JSON leaves an empty list out: an empty page is ``{}``
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise odd_listing(path, f"without the expected {key!r} list of objects")
        yield from items
        token = page.get("next_page_token")
        if not token:
            return
        empty_in_a_row = 0 if items else empty_in_a_row + 1
        if str(token) in seen_tokens or empty_in_a_row >= MAX_EMPTY_PAGES:
            raise odd_listing(
                path,
                "with a listing that never ends (a page token repeats, or empty pages keep promising more)",
            )
        seen_tokens.add(str(token))
        query["page_token"] = token
    raise odd_listing(path, f"with more than {MAX_PAGES} pages")


def odd_listing(path: str, what: str) -> CmlApiError:
    """The error for a listing that is not what the API sends.

    :param path: the listing's path.
    :param what: what was wrong with it.
    """
    return CmlApiError(
        f"Cloudera AI answered GET {path} {what}; is the host a Cloudera AI workbench? Stopped reading.",
        method="GET",
        path=path,
    )


def listing_params(search_filter: Mapping[str, Any] | None, sort: str | None) -> dict[str, Any]:
    """Query parameters for a listing's filter (as JSON, as the API wants it) and sort.

    :param search_filter: e.g. ``{"name": "train"}``.
    :param sort: e.g. ``"-created_at"``.
    """
    params: dict[str, Any] = {}
    if search_filter:
        params["search_filter"] = json.dumps(dict(search_filter))
    if sort:
        params["sort"] = sort
    return params


def at_most_one(kind: str, wanted: str, items: Iterable[dict[str, Any]], scope: str) -> dict[str, Any] | None:
    """The one item named exactly ``wanted`` (a name filter matches substrings), ``None`` if none is.

    Several of that name is an error: what acts on one by name cannot tell which is meant.

    :param kind: e.g. ``"model"``, for messages.
    :param wanted: the name.
    :param items: what the listing returned.
    :param scope: e.g. ``" in project 'x'"``.
    """
    exact = [item for item in items if item.get("name") == wanted]
    if len(exact) > 1:
        ids = ", ".join(str(item.get("id")) for item in exact)
        raise CmlLookupError(
            f"{len(exact)} {kind}s{scope} are named {wanted!r} (IDs: {ids}), so a task cannot tell which "
            f"one is meant. Rename or delete the extra {kind}s in the workbench."
        )
    return exact[0] if exact else None


def first_created(items: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The item created first: oldest ``created_at``, then lowest ``id``.

    Among duplicates, the one every caller picks, whatever order its listing came in.

    :param items: one or more items (a ``created_at`` that does not parse sorts last).
    """

    def key(item: Mapping[str, Any]) -> tuple[bool, datetime, str]:
        when = parse_time(item.get("created_at"))
        if when is None:
            return True, datetime.max.replace(tzinfo=timezone.utc), str(item.get("id"))
        return False, when, str(item.get("id"))

    return min(items, key=key)


def pick_one(kind: str, wanted: str, items: list[dict[str, Any]], scope: str) -> dict[str, Any]:
    """The one item named exactly ``wanted``; a clear error naming close matches otherwise.

    :param kind: ``"project"`` or ``"job"``.
    :param wanted: the name asked for.
    :param items: what the listing returned.
    :param scope: e.g. ``" in project 'x'"``, for messages.
    """
    exact = [item for item in items if item.get("name") == wanted]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        ids = ", ".join(str(item.get("id")) for item in exact)
        raise CmlLookupError(
            f"{len(exact)} {kind}s{scope} are named {wanted!r} (IDs: {ids}). Pass the ID of the one you "
            "mean instead of the name."
        )
    names = sorted({str(item.get("name")) for item in items})
    close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.5)
    if close:
        hint = f" Close matches: {', '.join(repr(n) for n in close)}."
    elif names:
        hint = f" Names there include: {', '.join(repr(n) for n in names[:5])}."
    else:
        hint = ""
    raise CmlLookupError(
        f"No {kind}{scope} is named exactly {wanted!r} (names are case-sensitive).{hint} Check the name "
        f"in the workbench, or pass the {kind} ID."
    )
