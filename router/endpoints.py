"""The small `/v1` endpoints that answer from the router itself, not from a model.

`GET /v1/models`, `POST /v1/feedback` (a label for a recorded request) and
`POST /v1/messages/count_tokens` (an estimate: no Claude tokenizer ships).
"""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from router.errors import ClientGone, RouterError
from router.formats.anthropic import count_tokens, parse_messages
from router.ingress.auth import tenant_for
from router.ingress.body import read_body
from router.ingress.feedback import parse_feedback
from router.ingress.request import json_object
from router.passthrough import model_list
from router.responses import headers_of, send_error, send_json
from router.runtime import Runtime, tenant_digest

__all__ = ["Endpoints"]


class Endpoints:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.runtime.policy
        try:
            tenant_for(policy.auth, headers_of(scope))
        except RouterError as exc:
            await send_error(send, exc)
            return
        await send_json(send, 200, model_list(policy))

    async def feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach an outcome (a score or a label) to a request this router served."""
        runtime = self.runtime
        policy, headers = runtime.policy, headers_of(scope)
        try:
            tenant = tenant_for(policy.auth, headers)
            raw = await read_body(receive, headers, 64 * 1024, policy.limits.body_timeout_s)
            item = parse_feedback(raw)
            # Another tenant's id reads as unknown: ids must not leak across tenants.
            if await runtime.tenant_of(item["request_id"]) != tenant_digest(tenant):
                raise RouterError.not_found(
                    f"No recent request with id '{item['request_id']}'.", code="request_not_found"
                )
        except RouterError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return
        runtime.sink.emit({"kind": "feedback", "v": 1, "ts": time.time(), "tenant": tenant, **item})
        reply = {"object": "feedback", "request_id": item["request_id"], "status": "recorded"}
        await send_json(send, 200, reply)

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /v1/messages/count_tokens`: an estimate (no Claude tokenizer ships)."""
        policy, headers = self.runtime.policy, headers_of(scope)
        try:
            tenant_for(policy.auth, headers)
            limits = policy.limits
            raw = await read_body(receive, headers, policy.max_body_bytes, limits.body_timeout_s)
            body = json_object(raw, limits.max_json_depth)
            parse_messages(body, count_only=True)
            await send_json(send, 200, count_tokens(body))
        except RouterError as exc:
            await send_error(send, exc, dialect="anthropic")
        except ClientGone:
            return
