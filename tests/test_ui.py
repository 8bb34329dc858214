"""The `/ui` status page: its ring buffer, its JSON, its key and switch, and the page itself
rendered by headless Chromium after real traffic through fake upstreams."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import POLICY, Stack
from prometheus_client import CollectorRegistry, Counter, Histogram

from router.ui.history import CounterHistory
from router.ui.stats import quantile, quantiles_by


def policy(extra: str = "", prompts: bool = False) -> str:
    text = POLICY.replace("{{", "{").replace("}}", "}")
    return text.replace("{prompts}", str(prompts).lower()) + extra


CACHED = "cache: {enabled: true}\n"


def chat(stack: Stack, text: str, route: str | None = None, tenant: str = "t1") -> httpx.Response:
    headers = {"x-tenant-id": tenant}
    if route:
        headers["x-route"] = route
    body = {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": text}]}
    raw = httpx.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers, timeout=10)
    assert raw.status_code == 200, raw.text
    return raw


def traffic(stack: Stack) -> dict[str, int]:
    """5 prompts to local, 3 pinned to cloud, then 2 of the local ones again (cache hits)."""
    for i in range(5):
        assert chat(stack, f"local question {i}").headers["x-router-route"] == "local"
    for i in range(3):
        assert chat(stack, f"cloud question {i}", "cloud").headers["x-router-route"] == "cloud"
    time.sleep(0.3)  # the cache stores after the answer went out
    for i in range(2):
        assert chat(stack, f"local question {i}").headers["x-router-cache"] == "hit"
    return {"local": 5, "cloud": 3, "cache": 2}


def data(stack: Stack, **params: Any) -> dict[str, Any]:
    raw = httpx.get(f"{stack.url}/ui/data", params=params, timeout=10)
    assert raw.status_code == 200, raw.text
    body: dict[str, Any] = raw.json()
    return body


# -- the ring buffer ------------------------------------------------------------------


def test_history_keeps_two_resolutions_and_answers_windows() -> None:
    registry = CollectorRegistry()
    hits = Counter("t_hits_total", "h", ["route"], registry=registry)
    history = CounterHistory([hits], fine=5, fine_size=4, coarse=60, coarse_size=3)
    t0 = 1000.0
    for i in range(30):  # 150 s of 5-second readings, one hit on "a" per reading
        hits.labels("a").inc()
        if i == 10:
            hits.labels("b").inc(2)  # a new label set appears mid-way
        history.sample(t0 + 5 * i)
    # The fine ring holds only the last 4 readings; older times come from the coarse ring.
    assert history.at(t0 + 5 * 29).ts == t0 + 145
    assert history.at(t0 + 5 * 26 + 1).ts == t0 + 130
    assert history.at(t0 + 100).ts == t0 + 60  # coarse: readings at 0, 60, 120 s
    assert history.at(t0 - 50).ts == t0  # before the first reading: the first reading
    now = history.read(t0 + 150)
    delta = history.delta(now, history.at(t0 + 60))
    assert delta[("t_hits_total", ("a",))] == 30 - 13
    assert delta[("t_hits_total", ("b",))] == 0  # moved before that reading
    from_start = history.delta(now, history.at(t0))
    assert from_start[("t_hits_total", ("b",))] == 2  # unknown in the older reading: from zero
    assert history.delta(now, history.at(t0 + 140))[("t_hits_total", ("b",))] == 0
    # A reading taken too early replaces the previous one instead of crowding the ring.
    history.sample(t0 + 146)
    assert [r.ts for r in history._fine.items][-2:] == [t0 + 140, t0 + 146]


def test_quantiles_follow_prometheus_histogram_quantile() -> None:
    registry = CollectorRegistry()
    latency = Histogram("t_seconds", "l", ["upstream"], buckets=(0.1, 0.2, 0.4), registry=registry)
    for value in [0.05] * 50 + [0.15] * 40 + [0.3] * 9 + [5.0]:
        latency.labels("x").observe(value)
    history = CounterHistory([latency])
    q = quantiles_by(history.delta(history.read(0), None), "t_seconds", (0.5, 0.9, 0.99, 1.0))
    assert q["x"]["p50"] == pytest.approx(0.1)
    assert q["x"]["p90"] == pytest.approx(0.2)
    assert q["x"]["p99"] == pytest.approx(0.4)
    assert q["x"]["p100"] == pytest.approx(0.4)  # +Inf bucket: the largest finite bound
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


# -- the JSON endpoint ----------------------------------------------------------------


def test_data_counts_the_traffic_sent(make_stack: Any) -> None:
    stack: Stack = make_stack(policy=policy(CACHED, prompts=True))
    before = data(stack)
    assert before["totals"]["requests"] == 0
    sent = traffic(stack)
    body = data(stack)
    assert body["totals"]["by_route"] == {k: float(v) for k, v in sent.items()}
    assert body["totals"]["by_rule"] == {"default": 7.0, "pinned-cloud": 3.0}
    assert body["cache"]["hits"] == 2 and body["cache"]["misses"] == 8
    assert body["cache"]["hit_rate"] == pytest.approx(0.2)
    upstreams = {u["name"]: u for u in body["upstreams"]}
    assert upstreams["local"]["requests"] == 5 and upstreams["cloud"]["requests"] == 3
    assert upstreams["local"]["breaker"] == "closed"
    assert upstreams["cloud"]["latency_s"]["p50"] is not None
    # Spend, the all-on-cloud figure and the cache's savings agree with the records.
    answered = [r for r in stack.records() if r["route"] in ("local", "cloud")]
    repeated = {f"local question {i}" for i in range(2)}
    hit_origins = [r for r in answered if r["messages"][-1]["content"] in repeated]
    assert len(answered) == 8 and len(hit_origins) == 2

    def on_cloud(r: dict[str, Any]) -> float:
        return float(r["tokens_in"] * 2.0 + r["tokens_out"] * 8.0) / 1e6

    cost = sum(r["cost_usd"] for r in answered)
    top = sum(on_cloud(r) for r in answered + hit_origins)
    assert cost > 0 and top > cost
    assert body["savings"]["cost_usd"] == pytest.approx(cost, abs=1e-9)
    assert body["savings"]["all_top_usd"] == pytest.approx(top, abs=1e-9)
    assert body["savings"]["saved_usd"] == pytest.approx(top - cost, abs=1e-9)
    assert body["cache"]["saved_usd"] == pytest.approx(
        sum(r["cost_usd"] for r in hit_origins), abs=1e-9
    )
    # The last decisions, newest first.
    decisions = body["decisions"]
    assert [d["route"] for d in decisions[:2]] == ["cache", "cache"]
    assert len(decisions) == 10
    assert [r["name"] for r in body["routes"]][-1] == "default"
    assert body["policy"]["source"] == str(stack.policy_path)
    assert body["process"]["workers"] == 1
    assert sum(sum(p.values()) for p in body["timeline"]["points"]) == 10


def test_prompts_show_only_when_the_policy_records_them(make_stack: Any) -> None:
    stack: Stack = make_stack(policy=policy(prompts=True))
    chat(stack, "what is a tee?")
    [decision] = data(stack)["decisions"]
    assert decision["prompt"] == "what is a tee?"
    assert decision["answer"].startswith("[DEMO local model]")


def test_admin_key_guards_page_and_data(make_stack: Any) -> None:
    stack: Stack = make_stack(policy=policy("ui: {enabled: true, admin_key: s3cret}\n"))
    for path in ("/ui", "/ui/data"):
        denied = httpx.get(stack.url + path)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_admin_key"
        assert httpx.get(stack.url + path, params={"key": "wrong"}).status_code == 401
        assert httpx.get(stack.url + path, params={"key": "s3cret"}).status_code == 200
        assert httpx.get(stack.url + path, headers={"x-admin-key": "s3cret"}).status_code == 200
        bearer = {"authorization": "Bearer s3cret"}
        assert httpx.get(stack.url + path, headers=bearer).status_code == 200
    assert httpx.post(stack.url + "/ui/data", params={"key": "s3cret"}).status_code == 405


def test_open_without_key_and_404_when_switched_off(make_stack: Any) -> None:
    stack: Stack = make_stack(policy=policy())
    page = httpx.get(stack.url + "/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert b"/*app.js*/" not in page.content and b"function render" in page.content
    chat(stack, "not recorded")
    [decision] = data(stack)["decisions"]
    assert "prompt" not in decision and "answer" not in decision
    assert httpx.get(stack.url + "/ui/nothing").status_code == 404
    stack.write_policy(stack.policy_path.read_text() + "ui: {enabled: false}\n")
    deadline = time.time() + 5
    while httpx.get(stack.url + "/ui/data").status_code != 404:
        assert time.time() < deadline, "the reload did not switch the page off"
        time.sleep(0.05)
    off = httpx.get(stack.url + "/ui")
    assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"


def test_policy_load_time_moves_on_reload(make_stack: Any) -> None:
    stack: Stack = make_stack(policy=policy())
    first = data(stack)["policy"]["loaded_at"]
    time.sleep(0.05)
    stack.write_policy(stack.policy_path.read_text() + "\n# edited\nui: {enabled: true}\n")
    deadline = time.time() + 5
    while data(stack)["policy"]["loaded_at"] == first:
        assert time.time() < deadline
        time.sleep(0.05)


# -- the page in a real browser -------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Cells(HTMLParser):
    """Text of elements by id, and of `td.requests` cells by their row's data-upstream."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.upstream_requests: dict[str, str] = {}
        self._stack: list[tuple[str, dict[str, str | None]]] = []
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr":
            self._row = a.get("data-upstream")
        self._stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, text: str) -> None:
        if not self._stack:
            return
        _, a = self._stack[-1]
        if a.get("id"):
            self.by_id[str(a["id"])] = self.by_id.get(str(a["id"]), "") + text
        if self._row and "requests" in (a.get("class") or "").split():
            self.upstream_requests[self._row] = text


def render(url: str, out: Path, chromium: str) -> str:
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1400,1900", "--virtual-time-budget=8000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run(
        [*flags, f"--screenshot={out}", url], capture_output=True, text=True, timeout=90
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    return dom.stdout


@pytest.mark.skipif(_chromium() is None, reason="no headless chromium (apt-get install chromium)")
def test_page_in_headless_chromium_shows_the_traffic(make_stack: Any, tmp_path: Path) -> None:
    stack: Stack = make_stack(policy=policy(CACHED + "ui: {admin_key: k1}\n", prompts=True))
    sent = traffic(stack)
    shot = tmp_path / "ui.png"
    chromium = _chromium()
    assert chromium is not None
    dom = render(f"{stack.url}/ui?key=k1", shot, chromium)
    assert re.search(r'<body[^>]*data-rendered="', dom), "the page did not render its data"
    cells = _Cells()
    cells.feed(dom)
    assert cells.by_id["total-requests"] == str(sum(sent.values()))
    assert cells.upstream_requests == {k: str(v) for k, v in sent.items()}
    assert cells.by_id["cache-hits"] == "2" and cells.by_id["cache-misses"] == "8"
    assert cells.by_id["cache-hit-rate"] == "20.0%"
    assert "one process" in cells.by_id["scope"]
    assert "local question" in dom  # recorded prompts appear in the last decisions
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_budget_use_per_tenant_on_page_and_metrics(make_stack: Any) -> None:
    import uuid

    import redis

    namespace = f"hrui{uuid.uuid4().hex[:8]}"
    budgets = (
        "budgets:\n"
        f"  namespace: {namespace}\n"
        "  redis_url: redis://127.0.0.1:6379/0\n"
        "  tenants: {capped: {daily_usd: 0.001, monthly_usd: 0.01}}\n"
        "  on_exceeded: {action: reject}\n"
    )
    stack: Stack = make_stack(policy=policy(budgets))
    try:
        for i in range(2):
            chat(stack, f"budget question {i}", "cloud", tenant="capped")
        spent = sum(r["cost_usd"] for r in stack.records())
        assert spent > 0
        [row] = data(stack)["budgets"]
        assert row["tenant"] == "capped" and row["daily_cap"] == 0.001
        assert row["daily_usd"] == pytest.approx(spent) and row["monthly_usd"] == pytest.approx(
            spent
        )
        metrics = httpx.get(f"{stack.url}/metrics").text
        for period, cap in (("day", 0.001), ("month", 0.01)):
            line = f'router_budget_used_ratio{{period="{period}",tenant="capped"}} '
            value = float(metrics.split(line, 1)[1].split()[0])
            assert value == pytest.approx(spent / cap)
    finally:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)


def test_ui_policy_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from router.policy import PolicyError, parse_policy

    base = policy().replace("{local}", "http://l").replace("{cloud}", "http://c")
    base = base.replace("{records}", "r.jsonl")
    assert parse_policy(base).ui.enabled and parse_policy(base).ui.admin_key is None
    monkeypatch.setenv("UI_KEY", "from-env")
    ui = parse_policy(base + 'ui: {enabled: false, admin_key: "${UI_KEY}"}\n').ui
    assert (ui.enabled, ui.admin_key) == (False, "from-env")
    assert "from-env" not in repr(ui)  # keys stay out of reprs and logs
    with pytest.raises(PolicyError) as err:
        parse_policy(base + "ui: {enabled: maybe, admin_key: '', port: 1}\n")
    text = "\n".join(err.value.messages)
    assert "'admin_key' is empty" in text and "unknown key 'port'" in text and "enabled" in text
