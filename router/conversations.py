"""`previous_response_id` for the Responses API: recall a stored conversation, store the next.

The store (`router.responses_store`) holds, per tenant and response id, the
conversation up to and including that response. A request that names a
`previous_response_id` the store does not hold gets OpenAI's own 400; a store
that cannot be reached is a 503, since the id may well be valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from router.errors import RouterError, StoreUnavailable
from router.formats.dialect import OnFinal
from router.formats.responses import previous_response_not_found, stored_items
from router.responses_store import ResponseStore

__all__ = ["recall", "remember"]

log = structlog.get_logger("router")


async def recall(
    store: ResponseStore | None, tenant: str, body: Mapping[str, Any]
) -> list[dict[str, Any]] | None:
    previous = body.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or store is None:
        raise previous_response_not_found(str(previous))
    try:
        history = await store.get(tenant, previous)
    except StoreUnavailable as exc:
        raise exc.router_error() from None
    if history is None:
        raise previous_response_not_found(previous)
    return history


def remember(
    store: ResponseStore | None,
    tenant: str,
    body: Mapping[str, Any],
    history: list[dict[str, Any]] | None,
) -> OnFinal | None:
    """What stores the conversation once its answer is final (`store: false` opts out)."""
    if store is None or body.get("store") is False:
        return None

    async def put(response: dict[str, Any]) -> None:
        try:
            # The id is the router's, or (an upstream that speaks Responses) the upstream's.
            await store.put(
                tenant, str(response.get("id")), stored_items(history or (), body, response)
            )
        except (StoreUnavailable, RouterError, ValueError) as exc:
            # The answer still goes out; only a later previous_response_id misses.
            log.warning("response_store_failed", error=type(exc).__name__)

    return put
