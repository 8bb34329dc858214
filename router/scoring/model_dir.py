"""A classifier directory: model.onnx, tokenizer.json and classifier.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from router.scoring.inputs import InputSpec

__all__ = ["DEFAULT_MODEL", "ModelDir", "ScorerLoadError", "default_model_dir"]

DEFAULT_MODEL = "minilm-router-v2"

REQUIRED_FILES = ("model.onnx", "tokenizer.json", "classifier.json")


class ScorerLoadError(RuntimeError):
    """The classifier directory is missing, incomplete or unreadable."""


def default_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The shipped classifier: inside the installed wheel, else in the source tree."""
    package = Path(__file__).resolve().parent.parent
    candidates = [package / "_classifiers" / name, package.parent / "classifiers" / name]
    for candidate in candidates:
        if (candidate / "model.onnx").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ScorerLoadError(f"classifier {name!r} not found (looked in {tried})")


@dataclass(frozen=True)
class ModelDir:
    path: Path
    name: str
    spec: InputSpec
    embedding_dim: int

    @property
    def model_file(self) -> Path:
        return self.path / "model.onnx"

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    @classmethod
    def load(cls, path: str | Path) -> ModelDir:
        root = Path(path)
        if not root.is_dir():
            raise ScorerLoadError(f"classifier directory {root} does not exist")
        missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
        if missing:
            raise ScorerLoadError(f"classifier directory {root} lacks {', '.join(missing)}")
        try:
            meta = json.loads((root / "classifier.json").read_text(encoding="utf-8"))
            spec = InputSpec(**meta.get("input", {}))
            return cls(
                path=root,
                name=str(meta.get("name", root.name)),
                spec=spec,
                embedding_dim=int(meta["embedding_dim"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ScorerLoadError(f"{root / 'classifier.json'} is invalid: {exc}") from exc
