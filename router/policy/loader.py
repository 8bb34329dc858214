"""Load a policy from YAML, reporting every error as `FILE:LINE:COL: message`."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from router.cache.config import CacheConfig
from router.policy.model import (
    NEVER_REQUEST,
    NEVER_RESPONSE,
    SECRET_HEADERS,
    AuthConfig,
    BudgetConfig,
    Caps,
    EndpointConfig,
    HeaderRules,
    HeadersConfig,
    Limits,
    Match,
    Policy,
    Range,
    RecordConfig,
    Rollout,
    Route,
    ScoringConfig,
    Shadow,
    UiConfig,
    Upstream,
)
from router.policy.quantiles import FILE_NAME as QUANTILES_FILE
from router.policy.quantiles import QuantileTable, QuantileTableError
from router.policy.reader import Section, strings_of
from router.policy.sections import default_of, keys, read, read_key
from router.policy.yamlnodes import Errors, Node, compose

__all__ = ["PolicyError", "default_policy_path", "load_policy", "parse_policy"]

# Each section's keys come from its dataclass in router/policy/model.py.
_TOP = keys(Policy) | {"version"}
_SERVER = keys(Limits) | {"max_body_mb", "admin_key"}  # these two live on Policy
_RANGE = keys(Range) - {"top_percent", "bottom_percent"}
_SCORE_RANGE = keys(Range)
_MiB = 1024 * 1024

# Reports an unknown upstream: (where the name is written, the name).
CheckTarget = Callable[[Node | None, str | None], None]


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
    upstreams, check_target = _upstreams(top)
    routes = _routes(top, check_target)
    default = _default_route(top, check_target)
    on_error = _on_classifier_error(top, upstreams, default, check_target)
    auth = _auth(top.section("auth", keys(AuthConfig)), errors)
    record = _record(top.section("record", keys(RecordConfig)))
    scoring = _scoring(top, routes)
    limits, max_body, admin_key = _server(top.section("server", _SERVER))
    budgets = _budgets(top.section("budgets", keys(BudgetConfig) | {"on_exceeded"}), check_target)
    cache = _cache(top)
    headers = _headers(top.section("headers", keys(HeadersConfig)))
    embeddings, completions = (
        _endpoint(top.section(name, keys(EndpointConfig)), default_of(Policy, name), check_target)
        for name in ("embeddings", "completions")
    )
    # Rewrites percent rules in `routes`: before the routes are frozen below.
    quantiles = _resolve_percents(routes, scoring, top.value_node("scoring") or top.node, errors)
    policy = read(
        Policy,
        top,
        None,
        upstreams=upstreams,
        models=top.strings("models") or ("auto",),
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
        limits=limits,
        admin_key=admin_key,
        source=source,
        quantiles=quantiles,
        ui=_ui(top.section("ui", keys(UiConfig))),
    )
    check_target(top.value_node("passthrough"), policy.passthrough)
    if errors or default is None or on_error is None:
        return None
    return policy


def _upstreams(top: Section) -> tuple[dict[str, Upstream], CheckTarget]:
    """The upstreams, and the check that a name used elsewhere is one of them."""
    upstreams: dict[str, Upstream] = {}
    ups = top.section("upstreams")
    if ups is None:
        top.errors.add(top.node, "missing required key 'upstreams'")
    else:
        for name in ups.names():
            node = ups.value_node(name)
            assert node is not None
            upstream = _upstream(name, Section(node, top.errors, keys(Upstream)))
            if upstream is not None:
                upstreams[name] = upstream
        if not ups.names():
            top.errors.add(ups.node, "'upstreams' must name at least one upstream")

    def check_target(node: Node | None, name: str | None) -> None:
        if name is not None and ups is not None and name not in ups.entries:
            known = ", ".join(sorted(ups.entries))
            top.errors.add(node, f"unknown upstream '{name}' (known: {known})")

    return upstreams, check_target


def _upstream(name: str, s: Section) -> Upstream | None:
    upstream = read(Upstream, s, None, name=name)
    base_url: str | None = upstream.base_url  # None: missing (reported)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        s.errors.add(s.value_node("base_url"), "'base_url' must start with http:// or https://")
    model: str | None = upstream.model
    if base_url is None or model is None:
        return None
    return dataclasses.replace(upstream, base_url=base_url.rstrip("/"))


def _cloudiest(upstreams: dict[str, Upstream]) -> str | None:
    """With no `on_classifier_error`, fall back to the most expensive (strongest) upstream."""
    if not upstreams:
        return None
    return max(upstreams.values(), key=lambda u: (u.price.input + u.price.output, u.name)).name


def _routes(top: Section, check_target: CheckTarget) -> list[Route]:
    routes: list[Route] = []
    seen: set[str] = set()
    for i, node in enumerate(top.sequence("routes")):
        route = _route(Section(node, top.errors, keys(Route)), f"route-{i + 1}", check_target)
        if route is None:
            continue
        if route.name in seen:
            top.errors.add(node, f"duplicate route name '{route.name}'")
        seen.add(route.name)
        routes.append(route)
    return routes


def _default_route(top: Section, check_target: CheckTarget) -> Route | None:
    s = top.section("default", keys(Route) - {"match"})
    if s is None:
        top.errors.add(
            top.node, "missing required key 'default' (the route taken when no rule matches)"
        )
        return None
    return _route(s, "default", check_target)


def _on_classifier_error(
    top: Section, upstreams: dict[str, Upstream], default: Route | None, check: CheckTarget
) -> str | None:
    on_error = top.string("on_classifier_error")
    if on_error is None and default is not None:
        on_error = _cloudiest(upstreams) or default.target
    check(top.value_node("on_classifier_error"), on_error)
    return on_error


def _server(s: Section | None) -> tuple[Limits, int, str | None]:
    """`server:`: the limits, plus `max_body_mb` and `admin_key`, which live on Policy."""
    default_body: int = default_of(Policy, "max_body_bytes")
    if s is None:
        return Limits(), default_body, None
    max_body = s.number("max_body_mb", default_body / _MiB, low=0.001)
    return read(Limits, s), int(max_body * _MiB), s.string("admin_key") or None


def _scoring(top: Section, routes: list[Route]) -> ScoringConfig:
    """A written `scoring:` is on unless it says otherwise; score rules turn it on."""
    s = top.section("scoring", keys(ScoringConfig))
    scoring = ScoringConfig() if s is None else read(ScoringConfig, s, ScoringConfig(enabled=True))
    scored = any(r.match.score for r in routes)
    if scored and not scoring.enabled and top.has("scoring"):
        top.errors.add(top.value_node("scoring"), "routes match on 'score' but scoring is disabled")
    if scored and not top.has("scoring"):
        scoring = ScoringConfig(enabled=True)
    return scoring


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


def _route(s: Section, fallback_name: str, check_target: CheckTarget) -> Route | None:
    route = read(
        Route,
        s,
        None,
        name=read_key(Route, "name", s, fallback_name),
        match=_match(s.section("match", keys(Match))),
        rollout=_rollout(s.section("rollout", keys(Rollout)), check_target),
        shadow=_shadow(s.section("shadow", keys(Shadow)), check_target),
    )
    target: str | None = route.target
    check_target(s.value_node("target"), target)
    for fallback in route.fallbacks:
        check_target(s.value_node("fallbacks"), fallback)
    return None if target is None else route


def _match(m: Section | None) -> Match:
    if m is None:
        return Match()
    headers: list[tuple[str, frozenset[str] | None]] = []
    if (h := m.section("headers")) is not None:
        for header in h.names():
            node = h.value_node(header)
            assert node is not None
            if isinstance(node, yaml.ScalarNode) and node.value in ("*", ""):
                headers.append((header.lower(), None))
            else:
                values = strings_of(node, m.errors, header)
                headers.append((header.lower(), frozenset(values or ())))
    return read(
        Match,
        m,
        None,
        headers=tuple(headers),
        prompt_chars=_range(m.section("prompt_chars", _RANGE)),
        prompt_tokens=_range(m.section("prompt_tokens", _RANGE)),
        score=_score_range(m.section("score", _SCORE_RANGE)),
    )


def _rollout(r: Section | None, check_target: CheckTarget) -> Rollout | None:
    if r is None:
        return None
    target = r.string("target", required=True)
    check_target(r.value_node("target"), target)
    sticky = r.string("sticky", "conversation") or "conversation"
    if sticky not in ("tenant", "conversation", "request") and not sticky.startswith("header:"):
        r.errors.add(
            r.value_node("sticky"),
            "'sticky' must be tenant, conversation, request or header:<name>",
        )
    if target is None:
        return None
    return Rollout(r.number("percent", 0.0, low=0, high=100), target, sticky.lower())


def _shadow(s: Section | None, check_target: CheckTarget) -> Shadow | None:
    if s is None:
        return None
    target = s.string("target", required=True)
    check_target(s.value_node("target"), target)
    if target is None:
        return None
    return Shadow(s.number("percent", 0.0, low=0, high=100), target)


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
    return read(AuthConfig, s, None, keys=keys)


def _record(s: Section | None) -> RecordConfig:
    if s is None:
        return RecordConfig()
    record = read(RecordConfig, s)
    for header in record.headers:
        if header in SECRET_HEADERS:
            s.errors.add(s.value_node("headers"), f"'{header}' carries credentials: not recordable")
    return dataclasses.replace(
        record, headers=tuple(h for h in record.headers if h not in SECRET_HEADERS)
    )


def _ui(s: Section | None) -> UiConfig:
    if s is None:
        return UiConfig()
    ui = read(UiConfig, s)
    node = s.value_node("admin_key")
    if isinstance(node, yaml.ScalarNode) and ui.admin_key is None:
        s.errors.add(node, "'admin_key' is empty (omit it for no key)")
    return ui


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


def _endpoint(s: Section | None, base: EndpointConfig, check_target: CheckTarget) -> EndpointConfig:
    """`embeddings:` / `completions:`: `models: {name: upstream | {upstream, model}}`."""
    if s is None:
        return base
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
    return read(EndpointConfig, s, base, models=models)


def _budgets(s: Section | None, check_target: CheckTarget) -> BudgetConfig | None:
    if s is None:
        return None
    tenants: dict[str, Caps] = {}
    if (t := s.section("tenants")) is not None:
        for name in t.names():
            node = t.value_node(name)
            assert node is not None
            tenants[name] = read(Caps, Section(node, s.errors, keys(Caps)))
    action, target = _on_exceeded(s, check_target)
    return read(BudgetConfig, s, None, tenants=tenants, action=action, target=target)


def _on_exceeded(s: Section, check_target: CheckTarget) -> tuple[str, str | None]:
    e = s.section("on_exceeded", {"action", "target"})
    if e is None:
        s.errors.add(s.node, "'budgets' needs 'on_exceeded' (action: route + target, or reject)")
        return "route", None
    action: str = read_key(BudgetConfig, "action", e)
    target = e.string("target")
    check_target(e.value_node("target"), target)
    if action == "route" and target is None:
        s.errors.add(e.node, "'on_exceeded' with action 'route' needs a 'target'")
    return action, target


def _cache(top: Section) -> CacheConfig | None:
    """The `cache:` section: any CacheConfig field, read by its declared type."""
    node = top.value_node("cache")
    if node is None:
        return None
    s = Section(node, top.errors, keys(CacheConfig))
    # A cosine similarity; CacheConfig (below the policy) carries no Key for it.
    similarity = s.number("similarity", default_of(CacheConfig, "similarity"), low=0, high=1.0)
    config = read(CacheConfig, s, None, similarity=similarity)
    return config if config.enabled else None
