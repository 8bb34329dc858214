"""Replay benchmark: throughput with recorded scores, with re-scoring, and replay vs `router eval`.

    .venv/bin/python bench/replay/run.py [--records 200000] [--rescore 512] [--out FILE]

1. Offline replay of N synthetic records that carry scores (JSON read + prepare +
   candidate, baseline and sweep decisions + report), in records per second.
2. Re-scoring: the classifier over recorded prompts (bounded by the model).
3. The dev split converted to records and scored by the shipped classifier,
   replayed with a score-threshold policy: APGR/CPT from the replay's own
   decide()-driven sweep next to `router.evaluation` on the same scores. The
   same comparison with prompt length as the score checks against the figures
   in shared/data/routing/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from router.evaluation import evaluate, group_by_benchmark, read_jsonl
from router.policy.loader import parse_policy
from router.replay.convert import convert_routing_rows
from router.replay.engine import Replay, prepare
from router.replay.records import load_records
from router.replay.rescore import rescore

DEV = Path("/work/shared/data/routing/dev.jsonl")
PRICES = """
upstreams:
  local: {base_url: "http://127.0.0.1:18081/v1", model: l, price: {input: 0.05, output: 0.10}}
  cloud: {base_url: "http://127.0.0.1:18082/v1", model: c, price: {input: 2.50, output: 10.00}}
"""
CANDIDATE = (
    "version: 1\n"
    + PRICES
    + """
routes:
  - name: pinned
    match: {headers: {x-route: cloud}}
    target: cloud
  - name: easy
    match: {score: {lt: THRESHOLD}}
    target: cloud
    rollout: {percent: 50, target: local, sticky: tenant}
default: {target: cloud, fallbacks: [local]}
"""
)
BASELINE = "version: 1\n" + PRICES + "default: {target: cloud}\n"
EVAL_POLICY = (
    "version: 1\n"
    + PRICES
    + "routes:\n  - name: easy\n    match: {score: {lt: THRESHOLD}}\n    target: local\n"
    "default: {target: cloud}\n"
)


def synthetic(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w") as fh:
        for i in range(n):
            rec = {
                "request_id": f"{i:032x}",
                "ts": 1.7e9 + i,
                "tenant": f"team-{i % 37}",
                "model": "auto",
                "stream": bool(i % 2),
                "rule": "default",
                "reason": "default",
                "route": "cloud",
                "upstream_model": "c",
                "targets": ["cloud", "local"],
                "tried": [],
                "rollout": None,
                "score": round(rng.random(), 6),
                "cache": "miss",
                "status": 200,
                "error": None,
                "latency_ms": 812.3,
                "tokens_in": rng.randint(20, 3000),
                "tokens_out": rng.randint(10, 800),
                "cost_usd": 0.004,
                "prompt_chars": rng.randint(80, 12000),
                "v": 1,
            }
            if i % 10 == 0:
                rec["feedback"] = [{"score": rng.random(), "label": None, "source": "t", "ts": 0}]
            fh.write(json.dumps(rec) + "\n")


def bench_offline(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        synthetic(path, n)
        candidate = parse_policy(CANDIDATE.replace("THRESHOLD", "0.4"))
        baseline = parse_policy(BASELINE)
        t0 = time.perf_counter()
        loaded = load_records(path)
        t1 = time.perf_counter()
        prepared = prepare(loaded.records)
        t2 = time.perf_counter()
        engine = Replay(prepared, candidate, baseline)
        report = engine.run().report
        t3 = time.perf_counter()
    total = t3 - t0
    return {
        "records": n,
        "read_s": round(t1 - t0, 3),
        "prepare_s": round(t2 - t1, 3),
        "decide_and_report_s": round(t3 - t2, 3),
        "decide_calls_per_record": 4,
        "total_s": round(total, 3),
        "records_per_s": round(n / total),
        "sweep_points": len(report["sweep"]["points"]),
    }


def _scorer() -> Any:
    from router.scoring import Scorer

    return Scorer.from_path(threads=2)


def bench_rescore(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    records = convert_routing_rows(rows[:n], {"strong": "cloud", "weak": "local"})
    scorer = _scorer()
    scorer.score_batch(["warm up"])
    t0 = time.perf_counter()
    rescore(records, scorer)
    elapsed = time.perf_counter() - t0
    return {"records": n, "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed, 1)}


def compare_with_eval(records: list[dict[str, Any]], raw: dict[str, np.ndarray]) -> dict[str, Any]:
    """Replay-sweep metrics vs router.evaluation on the same scores, per benchmark."""
    threshold = float(np.median([r["score"] for r in records]))
    policy = parse_policy(EVAL_POLICY.replace("THRESHOLD", repr(threshold)))
    replayed = Replay(prepare(records), policy).run().report["eval"]
    rows = [
        {
            "id": r["request_id"],
            "benchmark": r["group"],
            "prompt": r["prompt"],
            "strong_score": r["quality"]["cloud"],
            "weak_score": r["quality"]["local"],
        }
        for r in records
    ]
    out: dict[str, Any] = {}
    for name, bench in group_by_benchmark(rows).items():
        ev = evaluate(bench, raw[name])
        rp = replayed.get(name, {})
        out[name] = {
            "n": len(bench),
            "eval": {
                "apgr": ev.apgr,
                "cpt20": ev.cpt20,
                "cpt50": ev.cpt50,
                "cpt80": ev.cpt80,
                "ties": ev.curve.ties_broken,
            },
            "replay": {k: rp.get(k) for k in ("apgr", "cpt20", "cpt50", "cpt80", "ties")},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rescore", type=int, default=512, help="prompts to re-score")
    parser.add_argument(
        "--scored-dev", help="dev records already scored by this script (skips scoring)"
    )
    parser.add_argument("--out", default="bench/replay/results.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0))}
    print(f"offline replay of {args.records} records ...", file=sys.stderr)
    result["offline"] = bench_offline(args.records)
    rows = list(read_jsonl(DEV)) if DEV.exists() else []
    if rows and args.rescore:
        print(f"re-scoring {args.rescore} prompts ...", file=sys.stderr)
        result["rescore"] = bench_rescore(rows, args.rescore)
    if rows:
        if args.scored_dev:
            with open(args.scored_dev) as fh:
                records = [json.loads(line) for line in fh]
            raw_scores = np.asarray([r["score_raw"] for r in records], dtype=np.float64)
        else:
            print(
                f"scoring {len(rows)} dev prompts with the shipped classifier ...", file=sys.stderr
            )
            records = convert_routing_rows(rows, {"strong": "cloud", "weak": "local"})
            scorer = _scorer()
            # One prompt a run, as `router eval` and the model card score them.
            raw_scores = scorer.score_each([r["prompt"] for r in records])[0].astype(np.float64)
            for rec, raw in zip(records, raw_scores, strict=True):
                # Replay sees the score as the live record keeps it: rounded to 6 places.
                rec["score_raw"] = float(raw)
                rec["score"] = round(float(raw), 6)
            cache = Path(args.out).with_name("replay-dev-scored.jsonl")
            cache.parent.mkdir(parents=True, exist_ok=True)
            with open(cache, "w") as fh:
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
        groups = [r["group"] for r in records]
        raw = {g: raw_scores[[x == g for x in groups]] for g in dict.fromkeys(groups)}
        result["dev_classifier"] = compare_with_eval(records, raw)
        length = [dict(r, score=float(r["prompt_chars"])) for r in records]
        raw_len = {
            g: np.asarray([r["prompt_chars"] for r in length if r["group"] == g], np.float64)
            for g in raw
        }
        result["dev_length"] = compare_with_eval(length, raw_len)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return 0


def _f(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "t" if v else ""
    return f"{v:.2f}%" if pct else f"{v:.3f}"


def print_table(result: dict[str, Any]) -> None:
    off = result["offline"]
    print(f"\nreplay throughput ({result['cpus']} cpus)")
    print(
        f"  recorded scores : {off['records_per_s']:>9,} records/s  ({off['records']} records, "
        f"read {off['read_s']}s, prepare {off['prepare_s']}s, decide+report "
        f"{off['decide_and_report_s']}s)"
    )
    if "rescore" in result:
        rs = result["rescore"]
        print(f"  with re-scoring : {rs['records_per_s']:>9,} records/s  ({rs['records']} prompts)")
    for key, title in (("dev_classifier", "shipped classifier"), ("dev_length", "prompt length")):
        if key not in result:
            continue
        print(f"\ndev split, score = {title}: router eval vs replay")
        head = ("benchmark", "n", "", "APGR", "CPT20", "CPT50", "CPT80")
        print("  {:<10} {:>5} {:<7} {:>7} {:>8} {:>8} {:>8}".format(*head))
        for bench, row in result[key].items():
            for side in ("eval", "replay"):
                m = row[side]
                print(
                    f"  {bench:<10} {row['n']:>5} {side:<7} {_f(m['apgr']):>7} "
                    f"{_f(m['cpt20'], True):>8} {_f(m['cpt50'], True):>8} "
                    f"{_f(m['cpt80'], True):>8} {_f(m['ties'])}"
                )


if __name__ == "__main__":
    sys.exit(main())
