"""PNG of quality/cost curves, when matplotlib is installed (it is optional)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from router.evaluation.metrics import RouterMetrics

__all__ = ["plot_available", "plot_curves"]


def plot_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_curves(report: Mapping[str, Mapping[str, RouterMetrics]], path: str | Path) -> Path:
    """One panel per benchmark: quality against % strong calls for each router."""
    # Imported by name: matplotlib is an optional dependency, typed or not.
    importlib.import_module("matplotlib").use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    fig, axes = plt.subplots(1, len(report), figsize=(5 * len(report), 4), squeeze=False)
    for ax, (bench, row) in zip(axes[0], report.items(), strict=True):
        for name, m in row.items():
            ax.plot(m.curve.x, m.curve.y, marker="o", ms=3, label=f"{name} (APGR {m.apgr:.3f})")
        first = next(iter(row.values())).curve
        ax.axhline(first.weak, color="grey", ls=":", lw=1)
        ax.axhline(first.strong, color="grey", ls="--", lw=1)
        ax.set_title(bench)
        ax.set_xlabel("% calls to the strong model")
        ax.set_ylabel("quality")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
