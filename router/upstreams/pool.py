"""The upstream clients of the running policy, kept across policy reloads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from router.policy.model import Policy
from router.upstreams.client import UpstreamClient
from router.upstreams.transport import Transport

__all__ = ["UpstreamPool"]

# Long enough for a request that began under the old policy to finish its stream.
_RETIRE_AFTER_S = 330.0

# Per upstream name: a transport for it, or None for the default one.
TransportFactory = Callable[[str], Transport | httpx.AsyncBaseTransport | None]


class UpstreamPool:
    def __init__(self, transport_factory: TransportFactory | None = None) -> None:
        self.clients: dict[str, UpstreamClient] = {}
        self._transport_factory = transport_factory
        self._retiring: set[asyncio.Task[None]] = set()

    def __getitem__(self, name: str) -> UpstreamClient:
        return self.clients[name]

    def sync(self, policy: Policy) -> None:
        """Keep clients (pools, breakers) whose config is unchanged; replace the rest."""
        fresh: dict[str, UpstreamClient] = {}
        retired: list[UpstreamClient] = []
        for name, config in policy.upstreams.items():
            current = self.clients.get(name)
            if current is not None and current.config == config:
                fresh[name] = current
                continue
            if current is not None:
                retired.append(current)
            transport = self._transport_factory(name) if self._transport_factory else None
            fresh[name] = UpstreamClient(config, transport)
        retired.extend(c for n, c in self.clients.items() if n not in policy.upstreams)
        self.clients = fresh
        for client in retired:
            task = asyncio.ensure_future(self._retire(client))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(client: UpstreamClient) -> None:
        try:
            await asyncio.sleep(_RETIRE_AFTER_S)
        finally:  # at shutdown too, when the wait is cancelled
            await client.aclose()

    async def aclose(self) -> None:
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        for client in self.clients.values():
            await client.aclose()
        self.clients = {}
