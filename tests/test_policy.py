"""The policy loader (positioned errors, all at once) and the pure decide()."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from router import Features, PolicyError, RequestFacts, decide, parse_policy
from router.policy import default_policy_path, load_policy

BASE = """\
version: 1
upstreams:
  local: {base_url: http://127.0.0.1:1/v1, model: small, price: {input: 0.1, output: 0.2}}
  cloud: {base_url: http://127.0.0.1:2/v1, model: big, price: {input: 3, output: 15}}
"""


def facts(**kw: object) -> RequestFacts:
    base: dict[str, object] = {
        "request_id": "r1",
        "tenant": "t",
        "model": "auto",
        "prompt_chars": 10,
    }
    base.update(kw)
    return RequestFacts(**base)  # type: ignore[arg-type]


def test_shipped_policies_are_valid() -> None:
    for name in ("default.yaml", "demo.yaml"):
        load_policy(default_policy_path(name))
    for path in Path("policies").glob("**/*.yaml"):
        load_policy(path)


def test_all_errors_reported_with_line_and_column() -> None:
    text = BASE + (
        "routes:\n"
        "  - name: a\n"
        "    match: {score: {gte: high}, colour: red}\n"
        "    target: nowhere\n"
        "    fallbacks: [cloud, ghost]\n"
        "default: {target: local, fallbacks: cloud}\n"
        "record: {keep: 0}\n"
        "extra: 1\n"
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    messages = info.value.messages
    assert "p.yaml:7:26: 'gte' must be a number, got 'high'" in messages
    assert any(m.startswith("p.yaml:7:33: unknown key 'colour'") for m in messages)
    assert any(m.startswith("p.yaml:8:13: unknown upstream 'nowhere'") for m in messages)
    assert any(m.startswith("p.yaml:9:16: unknown upstream 'ghost'") for m in messages)
    assert any(m.startswith("p.yaml:11:16: 'keep' must be >= 1") for m in messages)
    assert any(m.startswith("p.yaml:12:1: unknown key 'extra'") for m in messages)
    assert len(messages) == 6
    lines = [int(m.split(":")[1]) for m in messages]
    assert lines == sorted(lines)


def test_yaml_syntax_error_is_positioned() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("upstreams:\n  a: [1, 2\n", source="s.yaml")
    assert info.value.messages[0].startswith("s.yaml:3:")


def test_missing_env_var_is_an_error_and_default_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HR_TEST_KEY", raising=False)
    text = (
        BASE.replace("model: big,", "model: big, api_key: '${HR_TEST_KEY}',")
        + "default: {target: local}\n"
    )
    with pytest.raises(PolicyError, match="HR_TEST_KEY"):
        parse_policy(text)
    monkeypatch.setenv("HR_TEST_KEY", "sk-123")
    assert parse_policy(text).upstreams["cloud"].api_key == "sk-123"
    assert "sk-123" not in repr(parse_policy(text))  # keys stay out of reprs and logs
    assert (
        parse_policy(text.replace("${HR_TEST_KEY}", "${HR_UNSET_X:-}")).upstreams["cloud"].api_key
        is None
    )


def test_cli_policy_check_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(BASE + "default: {target: local}\n")
    bad.write_text(BASE + "default: {target: elsewhere}\n")
    ok = subprocess.run(
        [sys.executable, "-m", "router.cli", "policy", "check", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "ok" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "router.cli", "policy", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert ko.returncode == 1
    assert f"{bad}:5:19: unknown upstream 'elsewhere'" in ko.stderr


def test_decide_matches_in_order_and_falls_to_default() -> None:
    policy = parse_policy(
        BASE
        + """
routes:
  - {name: pinned, match: {headers: {x-route: [cloud, strong]}}, target: cloud}
  - {name: any-debug, match: {headers: {x-debug: "*"}}, target: cloud}
  - {name: team, match: {tenant: [a, b], model: gpt-4o}, target: cloud}
  - {name: long, match: {prompt_tokens: {gt: 100}}, target: cloud, fallbacks: [local]}
default: {target: local, fallbacks: [cloud]}
"""
    )
    assert decide(policy, facts(headers={"x-route": "strong"})).rule == "pinned"
    assert decide(policy, facts(headers={"x-route": "weak"})).rule == "default"
    assert decide(policy, facts(headers={"x-debug": "1"})).rule == "any-debug"
    assert decide(policy, facts(tenant="a", model="gpt-4o")).rule == "team"
    assert decide(policy, facts(tenant="a")).rule == "default"
    long = decide(policy, facts(prompt_chars=401))
    assert (long.rule, long.targets) == ("long", ("cloud", "local"))
    assert decide(policy, facts(prompt_chars=400)).targets == ("local", "cloud")


SCORED = (
    BASE
    + """
on_classifier_error: cloud
routes:
  - {name: pinned, match: {headers: {x-route: local}}, target: local}
  - {name: hard, match: {score: {gte: 0.6}}, target: cloud, fallbacks: [local]}
default: {target: local, fallbacks: [cloud]}
"""
)


def test_score_rules_and_classifier_failure() -> None:
    policy = parse_policy(SCORED)
    assert policy.scoring.enabled  # score rules turn scoring on
    assert decide(policy, facts(), Features(score=0.7)).rule == "hard"
    assert decide(policy, facts(), Features(score=0.59)).rule == "default"
    failed = decide(policy, facts(), Features(error="onnx exploded"))
    assert (failed.rule, failed.target, failed.fallbacks) == (
        "on_classifier_error",
        "cloud",
        ("local",),
    )
    assert "onnx exploded" in failed.reason
    # Rules before the score rule still apply without a score.
    assert decide(policy, facts(headers={"x-route": "local"}), Features(error="x")).rule == "pinned"


def test_on_classifier_error_defaults_to_the_expensive_upstream() -> None:
    policy = parse_policy(SCORED.replace("on_classifier_error: cloud\n", ""))
    assert policy.on_classifier_error == "cloud"


def test_decide_is_pure_and_deterministic() -> None:
    policy = parse_policy(
        BASE
        + """
routes:
  - name: easy
    match: {model: auto}
    target: cloud
    rollout: {percent: 30, target: local, sticky: "header:x-user"}
    shadow: {percent: 10, target: local}
default: {target: cloud}
"""
    )
    f = facts(headers={"x-user": "u1"})
    assert decide(policy, f) == decide(policy, f)


def test_rollout_share_is_sticky_and_monotone() -> None:
    def share(percent: int) -> set[str]:
        policy = parse_policy(
            BASE
            + f"""
routes:
  - name: easy
    match: {{model: auto}}
    target: cloud
    rollout: {{percent: {percent}, target: local, sticky: "header:x-user"}}
default: {{target: cloud}}
"""
        )
        local = set()
        for i in range(4000):
            d = decide(policy, facts(request_id=f"r{i}", headers={"x-user": f"user{i}"}))
            assert d.rollout in ("in", "out")
            if d.target == "local":
                assert d.fallbacks == ("cloud",)
                local.add(f"user{i}")
        return local

    five, twenty = share(5), share(20)
    assert 0.04 < len(five) / 4000 < 0.06
    assert 0.18 < len(twenty) / 4000 < 0.22
    assert five <= twenty  # widening never moves a user back to the cloud


def test_shadow_sampling_rate() -> None:
    policy = parse_policy(
        BASE
        + """
routes:
  - {name: all, match: {model: auto}, target: cloud, shadow: {percent: 10, target: local}}
default: {target: cloud}
"""
    )
    counts = Counter(decide(policy, facts(request_id=f"r{i}")).shadow for i in range(5000))
    assert 0.08 < counts["local"] / 5000 < 0.12
