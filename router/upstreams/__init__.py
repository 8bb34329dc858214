"""OpenAI-compatible upstreams: pooled clients, retries, fallbacks, circuit breakers."""

from router.upstreams.breaker import CircuitBreaker
from router.upstreams.client import UpstreamClient, UpstreamFailure, UpstreamReply
from router.upstreams.pool import UpstreamPool
from router.upstreams.transport import make_transport

__all__ = [
    "CircuitBreaker",
    "UpstreamClient",
    "UpstreamFailure",
    "UpstreamPool",
    "UpstreamReply",
    "make_transport",
]
