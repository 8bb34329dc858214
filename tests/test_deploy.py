"""deploy/: manifests parse, the dashboard queries real metrics, shipped policies load."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from router.policy import parse_policy

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TEMPLATES = DEPLOY / "helm" / "hybrid-router" / "templates"
DASHBOARD = DEPLOY / "grafana" / "hybrid-router.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
METRIC_MODULES = (
    "router.outcomes.metrics",
    "router.cache.metrics",
    "router.upstreams.shadow",
    "router.budgets",
    "router.outcomes.spend",
)
# Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = {"job", "instance", "le"}

pytestmark = pytest.mark.skipif(not DEPLOY.is_dir(), reason="no deploy/ directory")


def _yaml_files() -> list[Path]:
    found = [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]
    return sorted(p for p in found if TEMPLATES not in p.parents)


def _embedded_policies() -> list[tuple[str, str]]:
    """Every policy deploy/ ships: policy files, ConfigMaps, the Helm values."""
    policies = [(str(p), p.read_text()) for p in sorted((DEPLOY / "policies").glob("*.yaml"))]
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "policy.yaml" in doc.get("data", {}):
                policies.append((f"{path}:{doc['metadata']['name']}", doc["data"]["policy.yaml"]))
    values = DEPLOY / "helm" / "hybrid-router" / "values.yaml"
    policies.append((str(values), yaml.safe_load(values.read_text())["policy"]))
    return policies


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


def _collectors() -> dict[str, object]:
    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    return dict(REGISTRY._names_to_collectors)


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"


_POLICIES = _embedded_policies()


@pytest.mark.parametrize(
    "source,text", _POLICIES, ids=[str(Path(s).relative_to(DEPLOY)) for s, _ in _POLICIES]
)
def test_shipped_policies_load(source: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):
        monkeypatch.setenv(name, "redis://redis:6379/0" if "REDIS" in name else "dummy")
    policy = parse_policy(text, source=source)
    assert policy.upstreams


def test_dashboard_queries_existing_metrics_and_labels() -> None:
    exprs = _dashboard_exprs()
    assert exprs
    for expr in exprs:
        _assert_known_metrics_and_labels(expr)


@functools.cache
def _router_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "router").rglob("*.py"))


def _assert_known_metrics_and_labels(expr: str) -> None:
    source = _router_source()
    collectors = _collectors()
    names = set(re.findall(r"\brouter_[a-z_]+", expr))
    assert names, expr
    labels = set(SCRAPE_LABELS)
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f'"{base}"' in source, f"{name} (in {expr!r}) is not defined in router/"
        collector = collectors.get(name) or collectors.get(base)
        assert collector is not None, f"{name} is not registered by {METRIC_MODULES}"
        labels |= set(getattr(collector, "_labelnames", ()))
    used = set(re.findall(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
    for group in re.findall(r"\b(?:by|ignoring)\s*\(([^)]*)\)", expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    assert used <= labels, f"{expr!r} uses {used - labels}, not labels of {names}"


def _alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_are_well_formed() -> None:
    rules = _alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
    text = ALERTS.read_text()
    for topic in (
        "router_fallbacks_total",  # upstream error rate
        "router_breaker_open",
        "router_cache_errors_total",
        "router_budget_used_ratio",
        "router_scoring_errors_total",
        "router_overhead_seconds_bucket",
    ):
        assert topic in text
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yaml"]


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_rules_use_existing_metrics_and_labels(rule: dict[str, object]) -> None:
    _assert_known_metrics_and_labels(str(rule["expr"]))


def test_alert_metrics_are_on_the_running_apps_metrics(stack) -> None:  # type: ignore[no-untyped-def]
    import httpx

    text = httpx.get(f"{stack.url}/metrics").text
    exposed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for rule in _alert_rules():
        for name in set(re.findall(r"\brouter_[a-z_]+", str(rule["expr"]))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert {name, base} & exposed, f"{name} (alert {rule['alert']}) is not on /metrics"


def test_compose_mounts_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"compose mounts missing {host}"


def test_configmap_symlink_swap_is_reloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ConfigMap volume update (the kubelet's ..data symlink swap) reaches the router."""
    from router.policy.reload import PolicyWatcher

    text = (DEPLOY / "policies" / "compose.yaml").read_text()
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")

    def publish(version: str, body: str) -> None:
        # What the kubelet's atomic writer does: a new timestamped directory, then
        # ..data swapped to it by rename; policy.yaml -> ..data/policy.yaml stays.
        target = tmp_path / f"..{version}"
        target.mkdir()
        (target / "policy.yaml").write_text(body)
        (tmp_path / "..data_tmp").symlink_to(target.name)
        (tmp_path / "..data_tmp").rename(tmp_path / "..data")

    publish("v1", text)
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    applied: list[int] = []

    async def scenario() -> None:
        watcher = PolicyWatcher(
            tmp_path / "policy.yaml", lambda p: applied.append(len(p.routes)), interval=0.02
        )
        watcher.start()
        try:
            publish("v2", text.replace("  - name: pinned-cloud", "  - name: pinned-cloud-2"))
            for _ in range(100):
                if applied:
                    break
                await asyncio.sleep(0.02)
        finally:
            await watcher.stop()

    asyncio.run(scenario())
    assert applied, "the symlink swap was not noticed"
