"""Load a policy from YAML, reporting every error as `FILE:LINE:COL: message`."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from importlib import resources
from pathlib import Path

import yaml

from router.cache.config import CacheConfig
from router.policy.model import (
    NEVER_REQUEST,
    NEVER_RESPONSE,
    SECRET_HEADERS,
    AuthConfig,
    BreakerConfig,
    BudgetConfig,
    CacheRule,
    Caps,
    EndpointConfig,
    HeaderRules,
    HeadersConfig,
    Limits,
    Match,
    Policy,
    Price,
    Range,
    RecordConfig,
    Rollout,
    Route,
    ScoringConfig,
    Shadow,
    Timeouts,
    UiConfig,
    Upstream,
)
from router.policy.quantiles import FILE_NAME as QUANTILES_FILE
from router.policy.quantiles import QuantileTable, QuantileTableError
from router.policy.reader import Section, strings_of
from router.policy.yamlnodes import Errors, Node, compose

__all__ = ["PolicyError", "default_policy_path", "load_policy", "parse_policy"]

_TOP = {
    "version",
    "server",
    "auth",
    "upstreams",
    "models",
    "routes",
    "default",
    "on_classifier_error",
    "record",
    "scoring",
    "cache",
    "demo",
    "budgets",
    "headers",
    "embeddings",
    "completions",
    "passthrough",
    "ui",
}
_UPSTREAM = {
    "base_url",
    "api_key",
    "model",
    "price",
    "timeouts",
    "retries",
    "backoff",
    "breaker",
    "max_connections",
}
_ROUTE = {"name", "match", "target", "fallbacks", "rollout", "shadow", "cache"}
_MATCH = {"model", "tenant", "headers", "prompt_chars", "prompt_tokens", "score"}
_RANGE = {"gt", "gte", "lt", "lte"}
_SCORE_RANGE = _RANGE | {"top_percent", "bottom_percent"}
_SERVER = {
    "max_body_mb",
    "max_json_depth",
    "max_header_kb",
    "max_headers",
    "header_timeout_s",
    "body_timeout_s",
    "keep_alive_s",
    "max_connections",
    "shutdown_shadow_wait_s",
    "admin_key",
}


_POSITION = re.compile(r":(\d+):(\d+): ")


class PolicyError(Exception):
    def __init__(self, messages: list[str]) -> None:
        messages = sorted(messages, key=_position)
        super().__init__("\n".join(messages))
        self.messages = messages


def _position(message: str) -> tuple[int, int]:
    found = _POSITION.search(message)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def default_policy_path(name: str = "default.yaml") -> Path:
    """The shipped policy: inside the wheel, or `policies/` in a source checkout."""
    packaged = Path(str(resources.files("router"))) / "_policies" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "policies" / name


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}:1:1: cannot read policy: {exc.strerror}"]) from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    errors = Errors(source)
    root = compose(text, errors)
    if root is None:
        if not errors:
            errors.add(None, "the policy is empty")
        raise PolicyError(errors.messages)
    policy = _build(Section(root, errors, _TOP), errors, source)
    if errors or policy is None:
        raise PolicyError(errors.messages)
    return policy


def _build(top: Section, errors: Errors, source: str) -> Policy | None:
    if not top.ok:
        return None
    version = top.integer("version", 1, low=1)
    if version != 1:
        errors.add(top.value_node("version"), f"unsupported policy version {version}")

    upstreams: dict[str, Upstream] = {}
    ups = top.section("upstreams")
    if ups is None:
        errors.add(top.node, "missing required key 'upstreams'")
    else:
        for name in ups.names():
            node = ups.value_node(name)
            assert node is not None
            upstream = _upstream(name, Section(node, errors, _UPSTREAM))
            if upstream is not None:
                upstreams[name] = upstream
        if not ups.names():
            errors.add(ups.node, "'upstreams' must name at least one upstream")

    models = top.strings("models") or ("auto",)

    def check_target(node: Node | None, name: str | None) -> None:
        if (
            name is not None
            and ups is not None
            and name not in upstreams
            and name not in ups.entries
        ):
            errors.add(node, f"unknown upstream '{name}' (known: {', '.join(sorted(ups.entries))})")

    routes: list[Route] = []
    seen: set[str] = set()
    for i, node in enumerate(top.sequence("routes")):
        route = _route(Section(node, errors, _ROUTE), f"route-{i + 1}", check_target)
        if route is None:
            continue
        if route.name in seen:
            errors.add(node, f"duplicate route name '{route.name}'")
        seen.add(route.name)
        routes.append(route)

    default_section = top.section("default", _ROUTE - {"match"})
    if default_section is None:
        errors.add(
            top.node, "missing required key 'default' (the route taken when no rule matches)"
        )
        default = None
    else:
        default = _route(default_section, "default", check_target)

    on_error_node = top.value_node("on_classifier_error")
    on_error = top.string("on_classifier_error")
    if on_error is None and default is not None:
        on_error = _cloudiest(upstreams) or default.target
    check_target(on_error_node, on_error)

    auth_keys = {"keys", "tenant_header", "default_tenant", "max_tenant_chars"}
    auth = _auth(top.section("auth", auth_keys), errors)
    record = _record(
        top.section(
            "record",
            {
                "sink",
                "path",
                "rotate_mb",
                "keep",
                "prompts",
                "headers",
                "redis_url",
                "redis_cluster",
                "stream",
                "maxlen",
                "max_queue",
            },
        )
    )
    scoring = _scoring(
        top.section("scoring", {"enabled", "model", "max_batch", "max_wait_ms", "quantiles"})
    )
    server = top.section("server", _SERVER)
    max_body = int(
        (server.number("max_body_mb", 10.0, low=0.001) if server else 10.0) * 1024 * 1024
    )
    limits = _limits(server)
    admin_key = (server.string("admin_key") if server else None) or None
    if any(r.match.score for r in routes) and not scoring.enabled and top.has("scoring"):
        errors.add(top.value_node("scoring"), "routes match on 'score' but scoring is disabled")
    if any(r.match.score for r in routes) and not top.has("scoring"):
        scoring = ScoringConfig(enabled=True)

    budgets = _budgets(
        top.section(
            "budgets",
            {
                "tenants",
                "default",
                "on_exceeded",
                "redis_url",
                "redis_cluster",
                "estimate_output_tokens",
                "namespace",
                "reservation_ttl_s",
            },
        ),
        check_target,
    )

    cache = _cache(top)
    headers = _headers(top.section("headers", {"response", "request"}))
    embeddings = _endpoint(top.section("embeddings", {"models", "cache"}), True, check_target)
    completions = _endpoint(top.section("completions", {"models", "cache"}), False, check_target)
    passthrough = top.string("passthrough") or None
    check_target(top.value_node("passthrough"), passthrough)
    quantiles = _resolve_percents(routes, scoring, top.value_node("scoring") or top.node, errors)
    ui = _ui(top.section("ui", {"enabled", "admin_key"}))

    if errors or default is None or on_error is None:
        return None
    return Policy(
        upstreams=upstreams,
        models=models,
        routes=tuple(routes),
        default=default,
        on_classifier_error=on_error,
        auth=auth,
        record=record,
        scoring=scoring,
        budgets=budgets,
        cache=cache,
        max_body_bytes=max_body,
        headers=headers,
        embeddings=embeddings,
        completions=completions,
        passthrough=passthrough,
        limits=limits,
        admin_key=admin_key,
        source=source,
        demo=top.boolean("demo", False),
        quantiles=quantiles,
        ui=ui,
    )


def _limits(s: Section | None) -> Limits:
    d = Limits()
    if s is None:
        return d
    return Limits(
        # 200: orjson's 254-level serialisation limit, less what wraps a request.
        max_json_depth=s.integer("max_json_depth", d.max_json_depth, low=2, high=200),
        max_header_bytes=int(
            s.number("max_header_kb", d.max_header_bytes / 1024, low=1, high=1024) * 1024
        ),
        max_headers=s.integer("max_headers", d.max_headers, low=8),
        header_timeout_s=s.number("header_timeout_s", d.header_timeout_s, low=0.01),
        body_timeout_s=s.number("body_timeout_s", d.body_timeout_s, low=0.01),
        keep_alive_s=s.number("keep_alive_s", d.keep_alive_s, low=0.01),
        max_connections=s.integer("max_connections", d.max_connections, low=1),
        shutdown_shadow_wait_s=s.number(
            "shutdown_shadow_wait_s", d.shutdown_shadow_wait_s, low=0
        ),
    )


def _cloudiest(upstreams: dict[str, Upstream]) -> str | None:
    """With no `on_classifier_error`, fall back to the most expensive (strongest) upstream."""
    if not upstreams:
        return None
    return max(upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)).name


def _upstream(name: str, s: Section) -> Upstream | None:
    base_url = s.string("base_url", required=True)
    model = s.string("model", required=True)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        s.errors.add(s.value_node("base_url"), "'base_url' must start with http:// or https://")
    api_key = s.string("api_key") or None
    price = Price()
    if (p := s.section("price", {"input", "output"})) is not None:
        price = Price(p.number("input", 0.0, low=0), p.number("output", 0.0, low=0))
    timeouts = Timeouts()
    if (t := s.section("timeouts", {"connect", "first_byte", "read", "total"})) is not None:
        d = Timeouts()
        timeouts = Timeouts(
            connect=t.number("connect", d.connect, low=0.001),
            first_byte=t.number("first_byte", d.first_byte, low=0.001),
            read=t.number("read", d.read, low=0.001),
            total=t.number("total", d.total, low=0.001),
        )
    breaker = BreakerConfig()
    if (b := s.section("breaker", {"failures", "cooldown"})) is not None:
        breaker = BreakerConfig(b.integer("failures", 5, low=1), b.number("cooldown", 10.0, low=0))
    if base_url is None or model is None:
        return None
    return Upstream(
        name=name,
        base_url=base_url.rstrip("/"),
        model=model,
        api_key=api_key,
        price=price,
        timeouts=timeouts,
        retries=s.integer("retries", 1, low=0),
        backoff=s.number("backoff", 0.05, low=0),
        breaker=breaker,
        max_connections=s.integer("max_connections", 256, low=1),
    )


def _range(s: Section | None) -> Range | None:
    if s is None:
        return None
    if not s.names():
        s.errors.add(s.node, "a range needs at least one of gt, gte, lt, lte")
    nan = float("nan")
    values = {k: s.number(k, nan) for k in ("gt", "gte", "lt", "lte") if s.has(k)}
    return Range(**values)


def _score_range(s: Section | None) -> Range | None:
    """A score range; `top_percent` / `bottom_percent` stay unresolved until the table loads."""
    if s is None:
        return None
    percents = [k for k in ("top_percent", "bottom_percent") if s.has(k)]
    if not percents:
        return _range(s)
    if len(s.names()) > 1:
        s.errors.add(s.node, f"'{percents[0]}' cannot be combined with other bounds")
    value = s.number(percents[0], 0.0, low=0, high=100)
    return Range(**{percents[0]: value})


def _resolve_percents(
    routes: list[Route], scoring: ScoringConfig, node: Node | None, errors: Errors
) -> QuantileTable | None:
    """The policy's quantile table; percent rules in `routes` rewritten to score bounds."""
    uses = [i for i, r in enumerate(routes) if r.match.score and _is_percent(r.match.score)]
    path = scoring.quantiles
    if not uses and path is None:
        return None
    try:
        if path is None:
            from router.scoring.model_dir import ScorerLoadError, default_model_dir

            try:
                model_dir = Path(scoring.model) if scoring.model else default_model_dir()
            except ScorerLoadError as exc:
                raise QuantileTableError(str(exc)) from None
            path = str(model_dir / QUANTILES_FILE)
        table = QuantileTable.load(path)
    except QuantileTableError as exc:
        if uses:
            errors.add(node, f"score rules in percent need a quantile table: {exc}")
        else:
            errors.add(node, str(exc))
        return None
    for i in uses:
        route = routes[i]
        score = route.match.score
        assert score is not None
        if score.top_percent is not None:
            p = score.top_percent
            # 0%: nothing (no score is above +inf); otherwise the top p% of the table.
            bound = Range(gt=math.inf) if p <= 0 else Range(gte=table.score_at_top(p))
            resolved = dataclasses.replace(bound, top_percent=p)
        else:
            p = score.bottom_percent or 0.0
            # The exact complement of top_percent: 100 - p.
            cut = math.inf if p >= 100 else -math.inf if p <= 0 else table.score_at_top(100 - p)
            resolved = Range(lt=cut, bottom_percent=p)
        routes[i] = dataclasses.replace(
            route, match=dataclasses.replace(route.match, score=resolved)
        )
    return table


def _is_percent(r: Range) -> bool:
    return r.top_percent is not None or r.bottom_percent is not None


def _route(s: Section, fallback_name: str, check_target: object) -> Route | None:
    assert callable(check_target)
    name = s.string("name", fallback_name) or fallback_name
    target = s.string("target", required=True)
    check_target(s.value_node("target"), target)
    fallbacks = s.strings("fallbacks") or ()
    fb_node = s.value_node("fallbacks")
    for fb in fallbacks:
        check_target(fb_node, fb)
    match = Match()
    if (m := s.section("match", _MATCH)) is not None:
        headers: list[tuple[str, frozenset[str] | None]] = []
        if (h := m.section("headers")) is not None:
            for header in h.names():
                node = h.value_node(header)
                assert node is not None
                if isinstance(node, yaml.ScalarNode) and node.value in ("*", ""):
                    headers.append((header.lower(), None))
                else:
                    values = strings_of(node, s.errors, header)
                    headers.append((header.lower(), frozenset(values or ())))
        models = m.strings("model")
        tenants = m.strings("tenant")
        match = Match(
            models=frozenset(models) if models is not None else None,
            tenants=frozenset(tenants) if tenants is not None else None,
            headers=tuple(headers),
            prompt_chars=_range(m.section("prompt_chars", _RANGE)),
            prompt_tokens=_range(m.section("prompt_tokens", _RANGE)),
            score=_score_range(m.section("score", _SCORE_RANGE)),
        )
    rollout = None
    if (r := s.section("rollout", {"percent", "target", "sticky"})) is not None:
        r_target = r.string("target", required=True)
        check_target(r.value_node("target"), r_target)
        sticky = r.string("sticky", "conversation") or "conversation"
        if sticky not in ("tenant", "conversation", "request") and not sticky.startswith("header:"):
            s.errors.add(
                r.value_node("sticky"),
                "'sticky' must be tenant, conversation, request or header:<name>",
            )
        if r_target is not None:
            rollout = Rollout(r.number("percent", 0.0, low=0, high=100), r_target, sticky.lower())
    shadow = None
    if (sh := s.section("shadow", {"percent", "target"})) is not None:
        sh_target = sh.string("target", required=True)
        check_target(sh.value_node("target"), sh_target)
        if sh_target is not None:
            shadow = Shadow(sh.number("percent", 0.0, low=0, high=100), sh_target)
    cache = CacheRule()
    if (c := s.section("cache", {"enabled", "similarity"})) is not None:
        sim = c.number("similarity", -1.0, low=-1.0, high=1.0) if c.has("similarity") else None
        cache = CacheRule(c.boolean("enabled", True), sim)
    if target is None:
        return None
    return Route(
        name=name,
        target=target,
        match=match,
        fallbacks=tuple(fallbacks),
        rollout=rollout,
        shadow=shadow,
        cache=cache,
    )


def _auth(s: Section | None, errors: Errors) -> AuthConfig:
    if s is None:
        return AuthConfig()
    keys: dict[str, str] = {}
    for node in s.sequence("keys"):
        entry = Section(node, errors, {"key", "tenant"})
        key = entry.string("key", required=True)
        tenant = entry.string("tenant", required=True)
        if key == "":
            errors.add(entry.value_node("key"), "'key' is empty")
        elif key and tenant:
            keys[hashlib.sha256(key.encode()).hexdigest()] = tenant
    header = s.string("tenant_header", "x-tenant-id")
    return AuthConfig(
        keys=keys,
        tenant_header=header.lower() if header else None,
        default_tenant=s.string("default_tenant", "default") or "default",
        max_tenant_chars=s.integer("max_tenant_chars", AuthConfig().max_tenant_chars, low=1),
    )


def _record(s: Section | None) -> RecordConfig:
    if s is None:
        return RecordConfig()
    d = RecordConfig()
    path = s.string("path", d.path)
    sink = s.string("sink", d.sink) or d.sink
    if sink not in ("jsonl", "redis"):
        s.errors.add(s.value_node("sink"), "'sink' must be 'jsonl' or 'redis'")
    headers = tuple(h.lower() for h in s.strings("headers") or ())
    for header in headers:
        if header in SECRET_HEADERS:
            s.errors.add(s.value_node("headers"), f"'{header}' carries credentials: not recordable")
    return RecordConfig(
        headers=tuple(h for h in headers if h not in SECRET_HEADERS),
        sink=sink,
        redis_url=s.string("redis_url", d.redis_url) or d.redis_url,
        redis_cluster=s.boolean("redis_cluster", d.redis_cluster),
        stream=s.string("stream", d.stream) or d.stream,
        maxlen=s.integer("maxlen", d.maxlen, low=1),
        max_queue=s.integer("max_queue", d.max_queue, low=1),
        path=path or None,
        rotate_mb=s.number("rotate_mb", d.rotate_mb, low=0.001),
        keep=s.integer("keep", d.keep, low=1),
        prompts=s.boolean("prompts", d.prompts),
    )


def _ui(s: Section | None) -> UiConfig:
    if s is None:
        return UiConfig()
    key = s.string("admin_key")
    if key == "":
        s.errors.add(s.value_node("admin_key"), "'admin_key' is empty (omit it for no key)")
    return UiConfig(enabled=s.boolean("enabled", True), admin_key=key or None)


def _scoring(s: Section | None) -> ScoringConfig:
    if s is None:
        return ScoringConfig()
    d = ScoringConfig()
    return ScoringConfig(
        enabled=s.boolean("enabled", True),
        model=s.string("model") or None,
        quantiles=s.string("quantiles") or None,
        max_batch=s.integer("max_batch", d.max_batch, low=1),
        max_wait_ms=s.number("max_wait_ms", d.max_wait_ms, low=0),
    )


def _header_rules(s: Section, name: str, never: frozenset[str]) -> HeaderRules | None:
    patterns = s.strings(name)
    if patterns is None:
        return None
    for pattern in patterns:
        lowered = pattern.lower()
        blocked = (
            lowered in never
            or lowered.startswith("x-router-")
            or (lowered.endswith("*") and any(n.startswith(lowered[:-1]) for n in never))
        )
        if blocked or not lowered.rstrip("*"):
            s.errors.add(s.value_node(name), f"header '{pattern}' may not pass ({name} side)")
    return HeaderRules.of(patterns)


def _headers(s: Section | None) -> HeadersConfig:
    if s is None:
        return HeadersConfig()
    d = HeadersConfig()
    return HeadersConfig(
        response=_header_rules(s, "response", NEVER_RESPONSE) or d.response,
        request=_header_rules(s, "request", NEVER_REQUEST) or d.request,
    )


def _endpoint(s: Section | None, cache: bool, check_target: object) -> EndpointConfig:
    """`embeddings:` / `completions:`: `models: {name: upstream | {upstream, model}}`."""
    if s is None:
        return EndpointConfig(cache=cache)
    assert callable(check_target)
    models: dict[str, tuple[str, str]] = {}
    if (m := s.section("models")) is not None:
        for name in m.names():
            node = m.value_node(name)
            assert node is not None
            if isinstance(node, yaml.ScalarNode):
                upstream, model = m.string(name, required=True), name
            else:
                entry = Section(node, s.errors, {"upstream", "model"})
                upstream = entry.string("upstream", required=True)
                model = entry.string("model", name) or name
            check_target(node, upstream)
            if upstream:
                models[name] = (upstream, model)
    return EndpointConfig(models=models, cache=s.boolean("cache", cache))


def _caps(s: Section | None) -> Caps | None:
    if s is None:
        return None
    daily = s.number("daily_usd", -1.0, low=0) if s.has("daily_usd") else None
    monthly = s.number("monthly_usd", -1.0, low=0) if s.has("monthly_usd") else None
    return Caps(daily, monthly)


def _budgets(s: Section | None, check_target: object) -> BudgetConfig | None:
    if s is None:
        return None
    assert callable(check_target)
    tenants: dict[str, Caps] = {}
    if (t := s.section("tenants")) is not None:
        for name in t.names():
            node = t.value_node(name)
            assert node is not None
            caps = _caps(Section(node, s.errors, {"daily_usd", "monthly_usd"}))
            if caps is not None:
                tenants[name] = caps
    default = _caps(s.section("default", {"daily_usd", "monthly_usd"}))
    action, target = "route", None
    if (e := s.section("on_exceeded", {"action", "target"})) is not None:
        action = e.string("action", "route") or "route"
        if action not in ("route", "reject"):
            s.errors.add(e.value_node("action"), "'action' must be 'route' or 'reject'")
        target = e.string("target")
        check_target(e.value_node("target"), target)
        if action == "route" and target is None:
            s.errors.add(e.node, "'on_exceeded' with action 'route' needs a 'target'")
    else:
        s.errors.add(s.node, "'budgets' needs 'on_exceeded' (action: route + target, or reject)")
    d = BudgetConfig()
    return BudgetConfig(
        tenants=tenants,
        default=default,
        action=action,
        target=target,
        redis_url=s.string("redis_url", d.redis_url) or d.redis_url,
        redis_cluster=s.boolean("redis_cluster", d.redis_cluster),
        estimate_output_tokens=s.integer("estimate_output_tokens", d.estimate_output_tokens, low=1),
        namespace=s.string("namespace", d.namespace) or d.namespace,
        reservation_ttl_s=s.number("reservation_ttl_s", d.reservation_ttl_s, low=1),
    )


def _cache(top: Section) -> CacheConfig | None:
    """The `cache:` section: any CacheConfig field, read by its declared type."""
    node = top.value_node("cache")
    if node is None:
        return None
    types = {f.name: str(f.type) for f in dataclasses.fields(CacheConfig)}
    defaults = CacheConfig()
    s = Section(node, top.errors, set(types))
    values: dict[str, object] = {}
    for name in s.names():
        kind, default = types.get(name), getattr(defaults, name, None)
        if kind == "bool":
            values[name] = s.boolean(name, bool(default))
        elif kind == "int":
            values[name] = s.integer(name, int(default or 0), low=0)
        elif kind == "float":
            high = 1.0 if name == "similarity" else None
            values[name] = s.number(name, float(default or 0), low=0, high=high)
        elif kind is not None:
            values[name] = s.string(name) or None
    config = CacheConfig(**values)  # type: ignore[arg-type]
    return config if config.enabled else None
