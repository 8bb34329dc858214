"""The classifier on the request path: score rules, x-router-score, classifier failure."""

from __future__ import annotations

import httpx
import openai
from conftest import POLICY, Stack

from router.scoring import Scorer

EASY = "hi"
HARD = (
    "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, then generalise the "
    "argument to p^4 - 1 and explain each step of modular arithmetic you use."
)


def scored_policy(threshold: float, scoring: str = "") -> str:
    text = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    rule = (
        "  - name: hard\n"
        f"    match: {{score: {{gte: {threshold}}}}}\n"
        "    target: cloud\n"
        "default:\n"
    )
    text = text.replace("default:\n", rule, 1)
    return text + "on_classifier_error: cloud\n" + scoring


def ask(stack: Stack, text: str):  # type: ignore[no-untyped-def]
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
    return c.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": text}])


def test_score_rule_routes_and_headers_carry_the_score(make_stack) -> None:  # type: ignore[no-untyped-def]
    scorer = Scorer.from_path()
    # One prompt a run, as the sequential requests below are scored.
    easy, hard = (float(scorer.score_batch([text])[0][0]) for text in (EASY, HARD))
    assert hard > easy
    stack: Stack = make_stack(policy=scored_policy(round((easy + hard) / 2, 6)), scoring=True)
    low, high = ask(stack, EASY), ask(stack, HARD)
    assert (low.headers["x-router-route"], low.headers["x-router-rule"]) == ("local", "default")
    assert (high.headers["x-router-route"], high.headers["x-router-rule"]) == ("cloud", "hard")
    assert abs(float(low.headers["x-router-score"]) - easy) < 1e-3
    assert abs(float(high.headers["x-router-score"]) - hard) < 1e-3
    records = stack.records()
    assert [round(r["score"], 3) for r in records] == [round(easy, 3), round(hard, 3)]
    ready = httpx.get(f"{stack.url}/readyz").json()
    assert ready["scoring"]["status"] == "ok"
    assert ready["scoring"]["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_broken_classifier_falls_back_to_on_classifier_error(make_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    stack: Stack = make_stack(policy=scored_policy(0.5, f"scoring: {{model: '{broken}'}}\n"), scoring=True)
    raw = ask(stack, EASY)
    assert raw.status_code == 200
    assert (raw.headers["x-router-route"], raw.headers["x-router-rule"]) == ("cloud", "on_classifier_error")
    assert "x-router-score" not in raw.headers
    record = stack.records()[-1]
    assert record["score"] is None and "unavailable" in record["score_error"]
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200 and ready.json()["scoring"]["status"] == "unavailable"
