"""The policy: plain frozen dataclasses, built by `router.policy.loader` from YAML.

The loader reads each section from these fields by their types, so a new policy
key is one line here; `Annotated[..., Key(...)]` gives its bounds or YAML name
(see `router.policy.keys`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from router.cache.config import CacheConfig
from router.policy.keys import INTERNAL, Key
from router.policy.quantiles import QuantileTable

__all__ = [
    "NEVER_REQUEST",
    "NEVER_RESPONSE",
    "SECRET_HEADERS",
    "Api",
    "AuthConfig",
    "BreakerConfig",
    "BudgetConfig",
    "CacheRule",
    "Caps",
    "EndpointConfig",
    "HeaderRules",
    "HeadersConfig",
    "Limits",
    "Match",
    "Policy",
    "Price",
    "Range",
    "RecordConfig",
    "ResponsesConfig",
    "Rollout",
    "Route",
    "ScoringConfig",
    "Shadow",
    "Timeouts",
    "UiConfig",
    "Upstream",
    "UpstreamKind",
]


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1_000_000


_Seconds = Annotated[float, Key(low=0.001)]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_byte` runs until the response headers; `read` is the longest silence."""

    connect: _Seconds = 2.0
    first_byte: _Seconds = 30.0
    read: _Seconds = 60.0
    total: _Seconds = 300.0


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: Annotated[int, Key(low=1)] = 5
    cooldown: float = 10.0


UpstreamKind = Literal["openai", "anthropic"]
# The request formats an upstream serves: chat completions, responses, messages.
Api = Literal["chat", "responses", "messages"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: Annotated[str, INTERNAL]  # its key under `upstreams:`
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    price: Price = Price()
    timeouts: Timeouts = Timeouts()
    retries: int = 1
    backoff: float = 0.05
    breaker: BreakerConfig = BreakerConfig()
    max_connections: Annotated[int, Key(low=1)] = 256
    kind: UpstreamKind = "openai"
    # Empty (the default): the kind's own API, ("chat",) or ("messages",).
    apis: tuple[Api, ...] = ()
    anthropic_version: str = "2023-06-01"  # the anthropic-version header, for kind anthropic

    def __post_init__(self) -> None:
        if not self.apis:
            object.__setattr__(
                self, "apis", ("messages",) if self.kind == "anthropic" else ("chat",)
            )


@dataclass(frozen=True, slots=True)
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    # `score: {top_percent: N}` / `{bottom_percent: N}` as written; the loader has
    # already turned it into gte / lt through the policy's quantile table.
    top_percent: float | None = None
    bottom_percent: float | None = None

    def contains(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.gte is None or value >= self.gte)
            and (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
        )


@dataclass(frozen=True, slots=True)
class Match:
    """All given conditions must hold; an empty match matches everything."""

    models: Annotated[frozenset[str] | None, Key(yaml="model")] = None
    tenants: Annotated[frozenset[str] | None, Key(yaml="tenant")] = None
    # header name (lower case) -> allowed values; None means "present with any value"
    headers: tuple[tuple[str, frozenset[str] | None], ...] = ()
    prompt_chars: Range | None = None
    prompt_tokens: Range | None = None
    score: Range | None = None


@dataclass(frozen=True, slots=True)
class Rollout:
    """Send `percent` of a route's matches to `target`, sticky by `sticky`."""

    percent: float
    target: str
    # "tenant", "conversation", "request" or "header:<name>"
    sticky: str = "conversation"


@dataclass(frozen=True, slots=True)
class Shadow:
    """Also send `percent` of a route's matches to `target`, off the client's path."""

    percent: float
    target: str


@dataclass(frozen=True, slots=True)
class CacheRule:
    enabled: bool = True
    similarity: Annotated[float | None, Key(low=-1.0, high=1.0)] = None


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    target: str
    match: Match = Match()
    fallbacks: tuple[str, ...] = ()
    rollout: Rollout | None = None
    shadow: Shadow | None = None
    cache: CacheRule = CacheRule()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    # sha256 hex digest of an API key -> tenant; the keys themselves are not kept
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    tenant_header: Annotated[str | None, Key(lower=True)] = "x-tenant-id"
    default_tenant: str = "default"
    # A longer tenant header is a 400: the tenant lands in records and metrics.
    max_tenant_chars: Annotated[int, Key(low=1)] = 256


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """Header names (lower case) that may pass: exact names, and prefixes from `name-*`."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> HeaderRules:
        lowered = [p.lower() for p in patterns]
        return cls(
            frozenset(p for p in lowered if not p.endswith("*")),
            tuple(p[:-1] for p in lowered if p.endswith("*")),
        )

    def allows(self, name: str) -> bool:
        return name in self.names or (bool(self.prefixes) and name.startswith(self.prefixes))


# What an upstream's answer keeps by default: what SDKs and rate-limit-aware clients read.
DEFAULT_RESPONSE_HEADERS = (
    "x-request-id",
    "request-id",
    "x-ratelimit-*",
    "retry-after",
    "retry-after-ms",
    "openai-processing-ms",
    "openai-version",
    "anthropic-ratelimit-*",
)
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "api-key", "x-api-key"}
)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never passed back to a client: the router frames the body itself, an upstream's
# cookies and auth challenges are the router's business, and x-router-* are its own.
NEVER_RESPONSE = _HOP_BY_HOP | {
    "set-cookie",
    "set-cookie2",
    "content-length",
    "content-encoding",
    "content-type",
    "www-authenticate",
    "date",
    "server",
}
# Never passed on to an upstream: credentials (the router sends the upstream's own)
# and what the router sets itself.
NEVER_REQUEST = (
    _HOP_BY_HOP
    | SECRET_HEADERS
    | {"host", "content-length", "content-type", "accept-encoding", "expect"}
)
# What a client's request passes on by default: W3C trace context, so traces continue.
DEFAULT_REQUEST_HEADERS = ("traceparent", "tracestate")


_DEFAULT_RESPONSE = HeaderRules.of(DEFAULT_RESPONSE_HEADERS)
_DEFAULT_REQUEST = HeaderRules.of(DEFAULT_REQUEST_HEADERS)


@dataclass(frozen=True, slots=True)
class HeadersConfig:
    response: HeaderRules = _DEFAULT_RESPONSE
    request: HeaderRules = _DEFAULT_REQUEST


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """A model-routed pass-through endpoint (`/v1/embeddings`, `/v1/completions`).

    `models` maps the model name a client sends to (upstream, model name sent there).
    """

    models: dict[str, tuple[str, str]] = field(default_factory=dict)
    cache: bool = True  # exact-match cache (embeddings), when the policy has a cache


@dataclass(frozen=True, slots=True)
class RecordConfig:
    sink: Literal["jsonl", "redis"] = "jsonl"  # redis: a Redis Stream, for a fleet
    path: str | None = "records/decisions.jsonl"
    rotate_mb: Annotated[float, Key(low=0.001)] = 100.0
    keep: Annotated[int, Key(low=1)] = 5
    prompts: bool = False
    # Request headers to keep in records (lower case), e.g. the sticky key of a rollout,
    # so that replay can reproduce header rules. Never credentials.
    headers: Annotated[tuple[str, ...], Key(lower=True)] = ()
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    stream: str = "hr:decisions"
    maxlen: Annotated[int, Key(low=1)] = 1_000_000
    # Records waiting for the writer; beyond this they are dropped and counted.
    max_queue: Annotated[int, Key(low=1)] = 100_000


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    enabled: bool = False
    model: str | None = None  # a classifier directory; None = the shipped default
    # The quantile table behind `top_percent` rules; None = `quantiles.json` of the model.
    quantiles: str | None = None
    max_batch: Annotated[int, Key(low=1)] = 32
    max_wait_ms: float = 2.0


@dataclass(frozen=True, slots=True)
class Caps:
    """US dollars a tenant may spend per UTC day and per calendar month (None = no cap)."""

    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    tenants: dict[str, Caps] = field(default_factory=dict)
    default: Caps | None = None
    # Written under `on_exceeded:`. "route" to `target`, or "reject" with 429.
    action: Annotated[Literal["route", "reject"], INTERNAL] = "route"
    target: Annotated[str | None, INTERNAL] = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    # Output tokens assumed for a request without max_tokens when reserving spend.
    estimate_output_tokens: Annotated[int, Key(low=1)] = 1024
    namespace: str = "hr"
    # A reservation nothing settled (the process died, Redis was away) expires after
    # this; keep it above the longest upstream `total` timeout.
    reservation_ttl_s: Annotated[float, Key(low=1)] = 900.0

    def caps_for(self, tenant: str) -> Caps | None:
        return self.tenants.get(tenant, self.default)


@dataclass(frozen=True, slots=True)
class UiConfig:
    """The `/ui` status page: on unless switched off; `admin_key` guards it when set."""

    enabled: bool = True
    admin_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may send, and how slowly: the policy's `server:` section.

    The connection-level ones (headers, timeouts, connections) are enforced by the
    protocol `router serve` runs and are read once at start; the rest apply per request.
    """

    # orjson serialises at most 254 levels; the records and upstream bodies wrap the
    # request in a few more, so the limit stays well below that.
    max_json_depth: Annotated[int, Key(low=2, high=200)] = 64
    # The request line and all headers together; written in KiB.
    max_header_bytes: Annotated[int, Key(yaml="max_header_kb", scale=1024, low=1, high=1024)] = (
        32 * 1024
    )
    max_headers: Annotated[int, Key(low=8)] = 100
    # From the first byte (or connect) to the last header.
    header_timeout_s: Annotated[float, Key(low=0.01)] = 10.0
    body_timeout_s: Annotated[float, Key(low=0.01)] = 30.0  # to read the whole body
    # Idle time allowed between two requests on one connection.
    keep_alive_s: Annotated[float, Key(low=0.01)] = 5.0
    # Open connections per worker; more get a 503.
    max_connections: Annotated[int, Key(low=1)] = 1000
    # At shutdown, how long records waiting on a shadow answer wait for it.
    shutdown_shadow_wait_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    """The store behind the Responses API's `previous_response_id`: in memory, or Redis."""

    store_ttl_s: Annotated[float, Key(low=1)] = 3600
    max_stored: Annotated[int, Key(low=1)] = 10_000  # per worker, in memory
    redis_url: str | None = None  # set: shared by every replica
    redis_cluster: bool = False
    namespace: str = "hr"


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole policy; each field is the top-level YAML key of the same name."""

    upstreams: dict[str, Upstream]
    models: tuple[str, ...]
    routes: tuple[Route, ...]
    default: Route
    on_classifier_error: str
    auth: AuthConfig = AuthConfig()
    record: RecordConfig = RecordConfig()
    scoring: ScoringConfig = ScoringConfig()
    budgets: BudgetConfig | None = None
    cache: CacheConfig | None = None  # None: no cache
    # `server.max_body_mb`, in bytes
    max_body_bytes: Annotated[int, INTERNAL] = 10 * 1024 * 1024
    headers: HeadersConfig = HeadersConfig()
    embeddings: EndpointConfig = EndpointConfig()
    completions: EndpointConfig = EndpointConfig(cache=False)
    # The upstream that any other `/v1/...` path goes to as is; None: a 404 naming this.
    passthrough: str | None = None
    limits: Annotated[Limits, Key(yaml="server")] = Limits()
    # `server.admin_key`. When set, /metrics and /readyz's details need it (Bearer or
    # x-admin-key).
    admin_key: Annotated[str | None, INTERNAL] = field(default=None, repr=False)
    source: Annotated[str, INTERNAL] = "<policy>"
    demo: bool = False
    # Loaded when a score rule speaks in percent of traffic (and for reports).
    quantiles: Annotated[QuantileTable | None, INTERNAL] = None
    ui: UiConfig = UiConfig()
    responses: ResponsesConfig = ResponsesConfig()
    # When this policy was parsed (the status page shows it); not part of equality.
    loaded_at: Annotated[float, INTERNAL] = field(default_factory=time.time, compare=False)

    @property
    def uses_score(self) -> bool:
        return any(route.match.score is not None for route in self.routes)
