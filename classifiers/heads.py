"""Routing heads on top of the sentence embedding, fitted in closed form.

A ridge regression predicts the quality gain of the strong model over the weak
one (`strong - weak`, not just who won: an MMLU question both models miss and
one both get right are alike, and the gap size matters on MT Bench). A
Platt-style logistic fit then maps that prediction to P(strong is better), so
the score reads like RouteLLM's win rate and thresholds carry meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LinearHead",
    "center_by_group",
    "fit_linear_head",
    "fit_platt",
    "fit_ridge",
    "head_features",
]


def head_features(embeddings: np.ndarray, log_chars: np.ndarray) -> np.ndarray:
    return np.hstack([embeddings, log_chars[:, None]]).astype(np.float64)


def center_by_group(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`values` minus their group's mean.

    Routing is judged within a benchmark, and the gain's mean differs a lot
    between benchmarks (MT Bench's strong model wins half the time, MMLU's a
    sixth). Uncentered, the head spends its capacity telling benchmarks apart;
    centered, it learns what makes one prompt harder than its neighbours
    (+0.01-0.03 dev APGR on each benchmark).
    """
    out = values.astype(np.float64).copy()
    for g in np.unique(groups):
        mask = groups == g
        out[mask] -= out[mask].mean()
    return out


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mean_x, mean_y = x.mean(0), y.mean()
    xc = x - mean_x
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return w, float(mean_y - mean_x @ w)


def fit_platt(z: np.ndarray, label: np.ndarray, steps: int = 25) -> tuple[float, float]:
    """a, b so that sigmoid(a * z + b) fits `label` (Newton's method on the log loss)."""
    mu, sd = float(z.mean()), max(float(z.std()), 1e-12)
    u = (z - mu) / sd
    theta = np.array([0.0, float(np.log(label.mean() / (1.0 - label.mean())))])
    design = np.stack([u, np.ones_like(u)], axis=1)
    for _ in range(steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))  # sigmoid without overflow
        grad = design.T @ (p - label)
        hess = design.T @ (design * (p * (1.0 - p))[:, None])
        theta = theta - np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
    a, b = float(theta[0]), float(theta[1])
    return a / sd, b - a * mu / sd


@dataclass(frozen=True)
class LinearFit:
    weight: np.ndarray  # over [embedding, log_chars]
    bias: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x @ self.weight + self.bias
        return out


def fit_linear_head(x: np.ndarray, gain: np.ndarray, label: np.ndarray, alpha: float) -> LinearFit:
    w, b = fit_ridge(x, gain, alpha)
    a, c = fit_platt(x @ w + b, label)
    return LinearFit(weight=w * a, bias=b * a + c)


class LinearHead(nn.Module):
    """logit = w . [embedding, log_chars] + b"""

    def __init__(self, fit: LinearFit) -> None:
        super().__init__()
        dim = fit.weight.shape[0] - 1
        self.linear = nn.Linear(dim + 1, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(fit.weight, dtype=torch.float32)[None])
            self.linear.bias.fill_(fit.bias)

    def forward(self, embedding: Tensor, log_chars: Tensor) -> Tensor:
        x = torch.cat([embedding, log_chars[:, None]], dim=1)
        return self.linear(x)[:, 0]
