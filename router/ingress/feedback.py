"""Validate a `POST /v1/feedback` body."""

from __future__ import annotations

from typing import Any

from router.errors import RouterError
from router.ingress.request import json_object

__all__ = ["parse_feedback"]

_FIELDS = {"request_id", "score", "label", "source", "comment", "upstream"}


def parse_feedback(raw: bytes) -> dict[str, Any]:
    body = json_object(raw)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RouterError.bad_request(f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise RouterError.bad_request(
            "'request_id' is required and must be a string.", "request_id"
        )
    score, label = body.get("score"), body.get("label")
    if score is None and label is None:
        raise RouterError.bad_request("Give a 'score' (number) or a 'label' (string), or both.")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise RouterError.bad_request("'score' must be a number.", "score")
    if label is not None and (not isinstance(label, str) or not 0 < len(label) <= 64):
        raise RouterError.bad_request("'label' must be a string of 1 to 64 characters.", "label")
    source = body.get("source", "api")
    if not isinstance(source, str) or not 0 < len(source) <= 64:
        raise RouterError.bad_request("'source' must be a string of 1 to 64 characters.", "source")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise RouterError.bad_request(
            "'comment' must be a string of at most 2000 characters.", "comment"
        )
    upstream = body.get("upstream")
    if upstream is not None and (not isinstance(upstream, str) or not 0 < len(upstream) <= 64):
        raise RouterError.bad_request("'upstream' must be an upstream name.", "upstream")
    item = {
        "request_id": request_id,
        "score": None if score is None else float(score),
        "label": label,
        "source": source,
        "comment": comment,
    }
    # Which answer is rated: the one the client got (default) or a shadow's.
    if upstream is not None:
        item["upstream"] = upstream
    return item
