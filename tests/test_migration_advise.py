"""The README's migration walkthrough, end to end on loopback.

Demo upstreams behind a scoring router, the shipped start-in-shadow policy,
traffic, `router judge` (the demo cloud stand-in is the judge), `router
advise` proposing a step, the step applied by hot reload, more traffic, and
the next proposal. Every command is the one a user runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Stack

from router.cli import main
from router.demo import HARD_CHARS

ROOT = Path(__file__).resolve().parents[1]


def walkthrough_policy(shadow_percent: int) -> str:
    """policies/examples/start-in-shadow.yaml on the test's upstreams and records file."""
    text = (ROOT / "policies/examples/start-in-shadow.yaml").read_text()
    text = text.replace("http://127.0.0.1:18081/v1", "{local}/v1")
    text = text.replace("http://127.0.0.1:18082/v1", "{cloud}/v1")
    text = text.replace("path: records/decisions.jsonl", "path: {records}")
    # A larger shadow than the example's 10% gives the same labels from less traffic.
    return text.replace("shadow: {percent: 10,", f"shadow: {{percent: {shadow_percent},")


def prompts(batch: int, n: int) -> list[str]:
    """Three short questions to one long one; the demo judge calls the long ones hard."""
    out = []
    for i in range(n):
        if i % 4 == 3:
            body = f"Case {batch}.{i}: a shipment of {i + 7} crates leaves the depot. " * 16
            assert len(body) > HARD_CHARS
            out.append(body + "How many crates arrive if a fifth are lost on the way?")
        else:
            out.append(f"Batch {batch}: what is {i} plus {i * 3 + batch}?")
    return out


def send(stack: Stack, texts: list[str]) -> list[httpx.Response]:
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        return [
            client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": t}]},
            )
            for t in texts
        ]


def all_records(stack: Stack, n: int) -> list[dict[str, Any]]:
    """The records once all `n` are written (a shadowed request's record waits for its shadow)."""
    deadline = time.time() + 10
    while len(records := stack.records()) < n and time.time() < deadline:
        time.sleep(0.05)
    assert len(records) == n
    return records


def advise(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()  # the router's own log lines
    assert main(["advise", *args, "--json", "--bootstrap", "300"]) == 0
    advice: dict[str, Any] = json.loads(capsys.readouterr().out)
    return advice


def judge(
    capsys: pytest.CaptureFixture[str], records: Path, policy: Path, out: Path
) -> dict[str, Any]:
    args = ["judge", "--records", str(records), "--policy", str(policy), "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.splitlines()[-1])
    return summary


def wait_for_reload(stack: Stack, text: str) -> None:
    stack.policy_path.write_text(text)
    deadline = time.time() + 5
    while stack.app.runtime.policy.routes == () and time.time() < deadline:
        time.sleep(0.05)
    assert stack.app.runtime.policy.routes, "the router did not reload the advised policy"


def check_figures(step: dict[str, Any], minimum: int) -> None:
    cost = step["cost_change"]["relative"]
    assert cost["low"] <= cost["value"] <= cost["high"] and cost["high"] < 0
    moved = step["quality_change"]["moved"]
    assert moved["low"] <= moved["value"] <= moved["high"]
    assert step["quality_change"]["per_request"]["value"] is not None
    coverage = step["coverage"]
    assert coverage["rated"] >= minimum and coverage["enough"]
    assert 0 < coverage["share"] <= 1 and coverage["reach"] >= coverage["rated"]


def test_walkthrough_judge_then_advise_each_step(
    make_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack: Stack = make_stack(policy=walkthrough_policy(50), scoring=True)
    records, labels = stack.records_path, tmp_path / "judge.jsonl"
    live = str(stack.policy_path)
    start_text = stack.policy_path.read_text()

    # 1. Everything on the cloud, half of it shadowed to the local model.
    assert all(r.status_code == 200 for r in send(stack, prompts(1, 120)))
    recorded = all_records(stack, 120)
    assert {r["route"] for r in recorded} == {"cloud"}
    pairs = sum(1 for r in recorded if (r.get("shadow_result") or {}).get("status") == 200)
    assert pairs > 40

    # Before any judging: not enough labels, and the advisor says to run the judge.
    advice = advise(capsys, str(records), "--policy", live)
    assert advice["verdict"] == "not_enough_labels" and advice["diff"] == ""
    assert advice["labels"]["unrated_shadow_pairs"] == pairs
    assert "router judge" in advice["todo"][0]
    saving = [c for c in advice["candidates"] if c["cost_change"]["usd"] < 0]
    assert saving and all(c["coverage"]["rated"] == 0 for c in saving)

    # 2. The demo cloud stand-in judges every pair.
    summary = judge(capsys, records, stack.policy_path, labels)
    assert summary["rated"] == pairs and summary["unrated"] == 0
    assert summary["wins"] == {"cloud": summary["rated"] - summary["ties"]}  # only hard ones
    assert summary["ties"] > 0

    # 3. Advice: a concrete first step with intervals and the coverage it rests on.
    advice = advise(capsys, str(records), str(labels), "--policy", live, "--write", live)
    assert advice["verdict"] == "step", advice["todo"]
    step = advice["candidates"][advice["recommended_index"]]
    assert step["kind"] == "start_rollout" and step["safe"]
    check_figures(step, 30)
    # The long prompts lose to the cloud, so a step that moves them is refused.
    everyone = next(c for c in advice["candidates"] if "default route" in c["title"])
    assert everyone["quality_change"]["moved"]["value"] < 0 and not everyone["safe"]
    assert advice["diff"].startswith(f"--- a/{live.lstrip('/')}\n+++ b/{live.lstrip('/')}\n")
    assert "+    rollout: {percent: 5, target: local, sticky: conversation}" in advice["diff"]

    # 4. Applied by hot reload: new traffic now reaches the local model through the new route.
    wait_for_reload(stack, stack.policy_path.read_text())
    assert stack.policy_path.read_text() != start_text
    responses = send(stack, prompts(2, 160))
    assert all(r.status_code == 200 for r in responses)
    rules = {r.headers["x-router-rule"] for r in responses}
    assert "easy-local" in rules
    all_records(stack, 280)

    # 5. Judge the new pairs (the old ones are not rated again), and ask again: widen.
    summary = judge(capsys, records, stack.policy_path, labels)
    assert summary["skipped_done"] == pairs and summary["rated"] > 0
    out = tmp_path / "advice-out"
    advice = advise(capsys, str(records), str(labels), "--policy", live, "--out", str(out))
    assert advice["verdict"] == "step", advice["todo"]
    step = advice["candidates"][advice["recommended_index"]]
    assert step["kind"] == "widen_rollout" and step["title"].endswith("5% -> 20%")
    check_figures(step, 30)
    assert "-    rollout: {percent: 5," in advice["diff"]
    assert "+    rollout: {percent: 20," in advice["diff"]
    # The replay report of that step shows the same advice.
    html = (out / "report.html").read_text()
    assert (
        "Advice: Recommended next step: widen &#x27;easy-local&#x27; rollout 5% -&gt; 20%" in html
    )
    assert "+    rollout: {percent: 20," in html and "rated / reach" in html
    report = json.loads((out / "report.json").read_text())
    assert report["advice"]["recommended"] == step["title"]
    assert report["candidate"]["share"]["local"] > report["baseline"]["share"]["local"]


def test_advise_without_a_shadow_proposes_one(
    make_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = walkthrough_policy(10).replace("  shadow: {percent: 10, target: local}\n", "")
    stack: Stack = make_stack(policy=text, scoring=True)
    send(stack, prompts(1, 100))  # the shadow samples 10% by request id: some are sampled
    all_records(stack, 100)
    advice = advise(capsys, str(stack.records_path), "--policy", str(stack.policy_path))
    assert advice["verdict"] == "not_enough_labels"
    assert advice["labels"]["rated_pairs"] == 0 and advice["labels"]["shadow_pairs"] == 0
    assert advice["recommended"] == "start a 10% shadow of 'default' to local"
    assert "+  shadow: {percent: 10, target: local}" in advice["diff"]
    shadow = advice["candidates"][advice["recommended_index"]]
    assert shadow["cost_change"]["usd"] > 0 and shadow["quality_change"] is None
    # The text output says the same, with the diff.
    capsys.readouterr()
    assert main(["advise", str(stack.records_path), "--policy", str(stack.policy_path)]) == 0
    out = capsys.readouterr().out
    assert "Not enough labels" in out and "+  shadow: {percent: 10, target: local}" in out


def test_policy_edits_keep_the_file_as_written() -> None:
    from router.replay.policyedit import add_key, append_route, replace_value

    text = (
        "version: 1   # top\n"
        "routes: []\n"
        "\n"
        "default:   # the rest\n"
        "  target: cloud\n"
        "  fallbacks: [local]   # keep me\n"
        "other: {a: 1}\n"
    )
    route = ["name: r", "target: local"]
    added = append_route(text, route, "{name: r, target: local}")
    assert added == text.replace("routes: []", "routes:\n  - name: r\n    target: local")
    more = append_route(added, ["name: s", "target: cloud"], "")
    assert "    target: local\n  - name: s\n    target: cloud\n\ndefault:" in more
    shadowed = add_key(more, ("default",), "shadow", "{percent: 10, target: local}")
    assert "  fallbacks: [local]   # keep me\n  shadow: {percent: 10, target: local}\n" in shadowed
    assert add_key(shadowed, ("other",), "b", "2").endswith("other: {a: 1, b: 2}\n")
    assert replace_value(shadowed, ("default", "shadow", "percent"), "20").count("percent: 20") == 1
    flow = "routes: [{name: a, target: x}]\ndefault: {target: x}\n"
    assert append_route(
        flow, route, "{name: r}"
    ) == "routes: [{name: a, target: x}, {name: r}]\n" + ("default: {target: x}\n")
