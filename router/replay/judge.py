"""Rate shadow pairs with an LLM judge, and write the verdicts as feedback lines.

A shadow pair is a recorded request with two answers: the one the client got
(`route`, `answer`) and the shadow upstream's (`shadow_result`). The judge sees
the prompt and both answers twice, once in each order, because judges favour
one position; only a verdict that survives the swap counts as a win, anything
else is a tie. A call that fails or a reply with no readable verdict is
counted and produces no label: a guess would teach `router train` noise.

Output: two `{"kind": "feedback", "source": "judge", "upstream": ...}` lines per
rated pair (1.0 / 0.0 for a win, 0.5 each for a tie), which `router replay` and
`router train` join to the record by `request_id`. Pairs already in the output
file are skipped, so a run can be stopped and started again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "DEFAULT_RUBRIC",
    "JudgeConfig",
    "JudgeStats",
    "Pair",
    "done_pairs",
    "judge_pairs",
    "pairs_from_records",
    "parse_verdict",
]

DEFAULT_RUBRIC = """\
You compare two answers to the same request from an assistant's user.
Judge which answer serves the user better: correct first, then complete and
clear. Ignore length and style unless they hurt the answer. Do not favour an
answer for its position.

[Request]
{prompt}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

End your reply with one line: `VERDICT: A`, `VERDICT: B` or `VERDICT: TIE`.
"""

_VERDICT = re.compile(r"VERDICT:\s*\**\s*(A|B|TIE)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """ "A", "B" or "TIE" from the judge's last verdict line; None when there is none."""
    found = _VERDICT.findall(text)
    return found[-1].upper() if found else None


@dataclass(frozen=True)
class Pair:
    request_id: str
    tenant: str
    prompt: str
    served: str  # upstream whose answer the client got
    served_answer: str
    shadow: str
    shadow_answer: str


def _prompt_of(record: Mapping[str, Any]) -> str | None:
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        parts = []
        for m in messages:
            if isinstance(m, Mapping) and isinstance(m.get("content"), str):
                parts.append(f"{m.get('role', 'user')}: {m['content']}")
        if parts:
            return "\n".join(parts)
    prompt = record.get("prompt")
    return prompt if isinstance(prompt, str) else None


def pairs_from_records(records: Iterable[Mapping[str, Any]]) -> tuple[list[Pair], int]:
    """Shadow pairs with both answers and the prompt; also how many pairs lack text."""
    out: list[Pair] = []
    textless = 0
    for r in records:
        shadow = r.get("shadow_result")
        if not isinstance(shadow, Mapping) or not isinstance(shadow.get("status"), int):
            continue
        if not 200 <= shadow["status"] < 300:
            continue
        prompt, answer, other = _prompt_of(r), r.get("answer"), shadow.get("answer")
        route, shadow_up = r.get("route"), shadow.get("upstream") or r.get("shadow")
        if not (prompt and isinstance(answer, str) and isinstance(other, str)):
            textless += 1
            continue
        if not route or not shadow_up or route == shadow_up:
            continue
        out.append(
            Pair(
                request_id=str(r["request_id"]),
                tenant=str(r.get("tenant") or "default"),
                prompt=prompt,
                served=str(route),
                served_answer=answer,
                shadow=str(shadow_up),
                shadow_answer=other,
            )
        )
    return out, textless


def done_pairs(path: Path) -> set[str]:
    """Request ids the output file already holds judge verdicts for."""
    done: set[str] = set()
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut by an interrupted run: that pair is rated again
            if isinstance(item, dict) and item.get("source") == "judge":
                done.add(str(item.get("request_id")))
    return done


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key: str | None = None
    rubric: str = DEFAULT_RUBRIC
    price_in: float = 0.0  # USD per million tokens
    price_out: float = 0.0
    max_cost_usd: float | None = None
    rate: float | None = None  # judge calls per second
    concurrency: int = 4
    timeout_s: float = 60.0
    max_tokens: int = 512


@dataclass
class JudgeStats:
    pairs: int = 0
    skipped_done: int = 0
    rated: int = 0
    ties: int = 0
    calls: int = 0
    failed_calls: int = 0
    unparseable: int = 0
    unrated: int = 0  # pairs left without a label: a call failed or was unreadable
    stopped_by_cost: int = 0
    cost_usd: float = 0.0
    wins: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Pacer:
    """Starts at most `rate` calls a second (none when rate is None)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next - now
            self.next = max(now, self.next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


async def _ask(
    client: httpx.AsyncClient, cfg: JudgeConfig, pacer: _Pacer, prompt: str, stats: JudgeStats
) -> str | None:
    await pacer.wait()
    stats.calls += 1
    headers = {"authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    body = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": cfg.max_tokens,
    }
    try:
        resp = await client.post(
            f"{cfg.base_url}/chat/completions", json=body, headers=headers, timeout=cfg.timeout_s
        )
        resp.raise_for_status()
        data = resp.json()
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        stats.failed_calls += 1
        return None
    tokens_in = int(usage.get("prompt_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or 0)
    stats.cost_usd += (tokens_in * cfg.price_in + tokens_out * cfg.price_out) / 1e6
    verdict = parse_verdict(text) if isinstance(text, str) else None
    if verdict is None:
        stats.unparseable += 1
    return verdict


def _combine(first: str, second: str) -> str:
    """`first`: served answer shown as A; `second`: shown as B. "served", "shadow" or "tie"."""
    if first == "A" and second == "B":
        return "served"
    if first == "B" and second == "A":
        return "shadow"
    return "tie"


def _lines(pair: Pair, outcome: str, now: float) -> list[dict[str, Any]]:
    score = {"served": (1.0, 0.0), "shadow": (0.0, 1.0), "tie": (0.5, 0.5)}[outcome]
    out = []
    for upstream, value in zip((pair.served, pair.shadow), score, strict=True):
        label = "tie" if outcome == "tie" else ("win" if value == 1.0 else "loss")
        out.append(
            {
                "kind": "feedback",
                "v": 1,
                "request_id": pair.request_id,
                "tenant": pair.tenant,
                "score": value,
                "label": label,
                "source": "judge",
                "upstream": upstream,
                "comment": f"pairwise, both orders: {outcome}",
                "ts": now,
            }
        )
    return out


async def _rate(
    client: httpx.AsyncClient, cfg: JudgeConfig, pacer: _Pacer, pair: Pair, stats: JudgeStats
) -> str | None:
    """The pair's outcome with the answers shown in both orders, counted in `stats`;
    None when either verdict is missing."""
    a_first = cfg.rubric.format(
        prompt=pair.prompt, answer_a=pair.served_answer, answer_b=pair.shadow_answer
    )
    b_first = cfg.rubric.format(
        prompt=pair.prompt, answer_a=pair.shadow_answer, answer_b=pair.served_answer
    )
    first, second = await asyncio.gather(
        _ask(client, cfg, pacer, a_first, stats),
        _ask(client, cfg, pacer, b_first, stats),
    )
    if first is None or second is None:
        stats.unrated += 1
        return None
    outcome = _combine(first, second)
    stats.rated += 1
    if outcome == "tie":
        stats.ties += 1
    else:
        up = pair.served if outcome == "served" else pair.shadow
        stats.wins[up] = stats.wins.get(up, 0) + 1
    return outcome


async def judge_pairs(
    pairs: list[Pair],
    cfg: JudgeConfig,
    out: Path,
    *,
    tick: Callable[[int], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> JudgeStats:
    """Rate every pair not yet in `out`, appending verdicts as they come."""
    stats = JudgeStats(pairs=len(pairs))
    done = done_pairs(out)
    todo = [p for p in pairs if p.request_id not in done]
    stats.skipped_done = len(pairs) - len(todo)
    pacer = _Pacer(cfg.rate)
    queue: asyncio.Queue[Pair] = asyncio.Queue()
    for p in todo:
        queue.put_nowait(p)
    finished = 0
    out.parent.mkdir(parents=True, exist_ok=True)

    def over_budget() -> bool:
        return cfg.max_cost_usd is not None and stats.cost_usd >= cfg.max_cost_usd

    async with httpx.AsyncClient(transport=transport) as client:
        with open(out, "a", encoding="utf-8") as fh:

            async def worker() -> None:
                nonlocal finished
                while not queue.empty():
                    pair = queue.get_nowait()
                    if over_budget():
                        stats.stopped_by_cost += 1
                        continue
                    outcome = await _rate(client, cfg, pacer, pair, stats)
                    if outcome is not None:
                        for line in _lines(pair, outcome, time.time()):
                            fh.write(json.dumps(line) + "\n")
                        fh.flush()
                    finished += 1
                    if tick is not None:
                        tick(finished)

            await asyncio.gather(*(worker() for _ in range(max(1, cfg.concurrency))))
    return stats
