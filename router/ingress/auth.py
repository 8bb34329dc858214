"""Client authentication: policy API keys map to tenants."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from router.errors import RouterError
from router.policy.model import AuthConfig

__all__ = ["tenant_for"]


def tenant_for(auth: AuthConfig, headers: Mapping[str, str]) -> str:
    """The request's tenant; raises a 401 `RouterError` when keys are configured and none fits.

    With keys configured the key decides the tenant, and a tenant header cannot
    override it: otherwise any key holder could spend another tenant's budget.
    """
    if auth.keys:
        header = headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header and headers.get("x-api-key"):
            # Anthropic's SDKs send the key as x-api-key: the same keys, the same tenants.
            scheme, key = "bearer", headers["x-api-key"]
        if scheme.lower() != "bearer" or not key.strip():
            raise RouterError.unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')."
            )
        # Comparing digests, not keys, keeps the lookup's timing independent of the key.
        tenant = auth.keys.get(hashlib.sha256(key.strip().encode()).hexdigest())
        if tenant is None:
            raise RouterError.unauthorized("Incorrect API key provided.")
        return tenant
    if auth.tenant_header:
        value = headers.get(auth.tenant_header)
        if value and len(value) > auth.max_tenant_chars:
            raise RouterError.bad_request(
                f"The '{auth.tenant_header}' header is longer than "
                f"{auth.max_tenant_chars} characters."
            )
        if value:
            return value
    return auth.default_tenant
