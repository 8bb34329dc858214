"""Fine-tune the top encoder layers on the routing target.

The bottom layers stay frozen and their output is computed once and cached, so
an epoch costs about one forward pass of the full model on two cores. The loss
is the ridge target (quality gain, MSE) plus a term that keeps each embedding
close to the stock all-MiniLM-L6-v2 one: the semantic cache reuses the
embedding, so it has to stay a general-purpose sentence embedding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from classifiers.encoder import Bert
from classifiers.heads import LinearFit
from router.scoring.inputs import TextEncoder

__all__ = ["FinetuneConfig", "finetune_top"]


@dataclass(frozen=True)
class FinetuneConfig:
    layers: int = 2  # top layers trained
    epochs: int = 2
    batch: int = 32
    lr: float = 3e-5
    head_lr: float = 1e-3
    anchor: float = 1.0  # weight of (1 - cosine to the stock embedding)


@dataclass
class _Bucket:
    idx: np.ndarray
    hidden: Tensor  # fp16 [b, t, h], output of the frozen layers
    mask: Tensor
    log_chars: Tensor


@torch.no_grad()
def _cache_bottom(
    bert: Bert, encoder: TextEncoder, texts: Sequence[str], frozen: int, size: int
) -> list[_Bucket]:
    bert.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    for start in range(0, len(order), size):
        idx = np.asarray(order[start : start + size])
        batch = encoder.encode([texts[i] for i in idx])
        mask = torch.from_numpy(batch.attention_mask)
        hidden = bert.bottom(torch.from_numpy(batch.input_ids), mask, frozen)
        out.append(_Bucket(idx, hidden.half(), mask, torch.from_numpy(batch.log_chars)))
        if (start // size) % 50 == 0:
            print(f"  cached {start}/{len(texts)}", file=sys.stderr, flush=True)
    return out


def finetune_top(
    bert: Bert,
    encoder: TextEncoder,
    texts: Sequence[str],
    gain: np.ndarray,
    stock: np.ndarray,
    init: LinearFit,
    config: FinetuneConfig,
    seed: int = 0,
) -> Bert:
    """Train the top `config.layers` layers of `bert` in place; returns it."""
    frozen = len(bert.layers) - config.layers
    buckets = _cache_bottom(bert, encoder, texts, frozen, config.batch)
    head = nn.Linear(bert.hidden + 1, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(init.weight, dtype=torch.float32)[None])
        head.bias.fill_(init.bias)
    # The Platt scale makes the warm-started head output a logit; regress the
    # gain through a learned affine map so the MSE target keeps its units.
    scale = nn.Linear(1, 1)
    top = bert.layers[frozen:]
    for p in bert.parameters():
        p.requires_grad_(False)
    for p in top.parameters():
        p.requires_grad_(True)
    optim = torch.optim.AdamW(
        [
            {"params": list(top.parameters()), "lr": config.lr},
            {"params": [*head.parameters(), *scale.parameters()], "lr": config.head_lr},
        ],
        weight_decay=0.01,
    )
    target = torch.tensor(gain, dtype=torch.float32)
    anchor = torch.tensor(stock, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    steps = config.epochs * len(buckets)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: max(0.0, 1.0 - s / steps))
    bert.train()
    for epoch in range(config.epochs):
        started, total = time.monotonic(), 0.0
        for n, b in enumerate(rng.permutation(len(buckets))):
            bucket = buckets[int(b)]
            x = bert.top(bucket.hidden.float(), bucket.mask, frozen)
            emb = Bert.pool(x, bucket.mask)
            logit = head(torch.cat([emb, bucket.log_chars[:, None]], dim=1))
            pred = scale(logit)[:, 0]
            idx = torch.from_numpy(bucket.idx)
            loss = nn.functional.mse_loss(pred, target[idx])
            loss = loss + config.anchor * (1.0 - (emb * anchor[idx]).sum(1)).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            total += float(loss.detach())
            if n % 50 == 0:
                print(
                    f"  epoch {epoch} step {n}/{len(buckets)} loss {total / (n + 1):.4f} "
                    f"{time.monotonic() - started:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    bert.eval()
    for p in bert.parameters():
        p.requires_grad_(True)
    return bert
