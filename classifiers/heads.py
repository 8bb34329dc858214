"""Routing heads on top of the sentence embedding, fitted in closed form.

A ridge regression predicts the quality gain of the strong model over the weak
one (`strong - weak`, not just who won: an MMLU question both models miss and
one both get right are alike, and the gap size matters on MT Bench). A
Platt-style logistic fit then maps that prediction to P(strong is better), so
the score reads like RouteLLM's win rate and thresholds carry meaning.

A domain prior sits beside the ridge. On MMLU the subject alone explains more
than a linear map of the embedding does: routing dev prompts by their true
subject's mean train gain reaches APGR 0.70 where the ridge reaches 0.665, and
what the embedding adds within a subject is small (+0.005). A linear head
cannot carve 57 subjects out of the embedding, so a softmax over the training
domains (MMLU subjects, MT Bench categories, GSM8K) does it, and the expected
gain under that softmax is one more input to the ridge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "DomainGate",
    "HeadFit",
    "LinearFit",
    "RoutingHead",
    "center_by_group",
    "cross_fitted_prior",
    "fit_domain_gate",
    "fit_head",
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


@dataclass(frozen=True)
class DomainGate:
    """Softmax over the training domains; `prior` is the expected gain under it."""

    weight: np.ndarray  # [d, K]
    bias: np.ndarray  # [K]
    gains: np.ndarray  # [K]: each domain's mean (centred) gain on the prompts it was fitted on
    domains: tuple[str, ...]

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        z = embeddings @ self.weight + self.bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out: np.ndarray = z / z.sum(axis=1, keepdims=True)
        return out

    def prior(self, embeddings: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.probabilities(embeddings) @ self.gains
        return out


def fit_domain_gate(
    embeddings: np.ndarray, domains: np.ndarray, gain: np.ndarray, l2: float
) -> DomainGate:
    """Multinomial logistic regression of the domain on the embedding (L-BFGS, L2 penalty)."""
    names = tuple(sorted(set(domains.tolist())))
    index = {name: i for i, name in enumerate(names)}
    target = torch.tensor([index[d] for d in domains.tolist()])
    x = torch.tensor(embeddings, dtype=torch.float32)
    weight = torch.zeros(x.shape[1], len(names), requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight + bias, target) + l2 * (weight**2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    gains = np.asarray([gain[domains == name].mean() for name in names])
    return DomainGate(
        weight=weight.detach().numpy().astype(np.float64),
        bias=bias.detach().numpy().astype(np.float64),
        gains=gains,
        domains=names,
    )


def cross_fitted_prior(
    embeddings: np.ndarray,
    domains: np.ndarray,
    gain: np.ndarray,
    l2: float,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Each prompt's prior from a gate fitted on the other folds.

    In-sample, the gate recalls its own training prompts' domains (and their
    gains) far better than it will on new prompts, and the ridge would lean on
    the prior accordingly; out-of-fold priors show it the prior as it really
    behaves.
    """
    order = np.random.default_rng(seed).permutation(len(domains))
    out = np.zeros(len(domains))
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        gate = fit_domain_gate(embeddings[rest], domains[rest], gain[rest], l2)
        out[part] = gate.prior(embeddings[part])
    return out


@dataclass(frozen=True)
class HeadFit:
    """logit = linear . [embedding, log_chars] + prior_weight * gate.prior(embedding)"""

    linear: LinearFit
    gate: DomainGate | None = None
    prior_weight: float = 0.0

    def logit(self, embeddings: np.ndarray, log_chars: np.ndarray) -> np.ndarray:
        out = self.linear.logit(head_features(embeddings, log_chars))
        if self.gate is not None:
            out = out + self.prior_weight * self.gate.prior(embeddings)
        return out


def fit_head(
    embeddings: np.ndarray,
    log_chars: np.ndarray,
    gain: np.ndarray,
    label: np.ndarray,
    alpha: float,
    prior_scale: float = 0.0,
    gate: DomainGate | None = None,
    prior: np.ndarray | None = None,
) -> HeadFit:
    """Ridge over `[embedding, log_chars, prior_scale * prior]`, then Platt scaling.

    `prior` is the training prompts' cross-fitted prior (`cross_fitted_prior`)
    and `gate` the gate fitted on all of them, which the head keeps.
    `prior_scale` sets how cheap the prior's weight is against the ridge
    penalty; 0 gives the plain linear head.
    """
    x = head_features(embeddings, log_chars)
    if prior_scale == 0 or gate is None or prior is None:
        return HeadFit(fit_linear_head(x, gain, label, alpha))
    xa = np.hstack([x, prior_scale * prior[:, None]])
    w, b = fit_ridge(xa, gain, alpha)
    a, c = fit_platt(xa @ w + b, label)
    return HeadFit(
        linear=LinearFit(weight=w[:-1] * a, bias=b * a + c),
        gate=gate,
        prior_weight=float(w[-1] * prior_scale * a),
    )


class RoutingHead(nn.Module):
    """The fitted head as a module, for the ONNX export.

    The linear part reads the Concat of `embedding` and `log_chars`, the layer
    that `router train` swaps for one fitted on a team's own records.
    """

    def __init__(self, fit: HeadFit) -> None:
        super().__init__()
        dim = fit.linear.weight.shape[0] - 1
        self.linear = nn.Linear(dim + 1, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(fit.linear.weight, dtype=torch.float32)[None])
            self.linear.bias.fill_(fit.linear.bias)
        self.gate: nn.Linear | None = None
        if fit.gate is not None:
            self.gate = nn.Linear(dim, len(fit.gate.domains))
            with torch.no_grad():
                self.gate.weight.copy_(torch.tensor(fit.gate.weight.T, dtype=torch.float32))
                self.gate.bias.copy_(torch.tensor(fit.gate.bias, dtype=torch.float32))
            # The prior's weight is folded into the gains: one MatMul, no Mul.
            scaled = torch.tensor(fit.gate.gains * fit.prior_weight, dtype=torch.float32)
            self.register_buffer("gains", scaled[:, None])

    def forward(self, embedding: Tensor, log_chars: Tensor) -> Tensor:
        x = torch.cat([embedding, log_chars[:, None]], dim=1)
        out: Tensor = self.linear(x)[:, 0]
        if self.gate is not None:
            gains: Tensor = self.gains
            out = out + (torch.softmax(self.gate(embedding), dim=1) @ gains)[:, 0]
        return out
