"""Prompt scoring: the routing classifier that runs in-process with onnxruntime."""

from router.scoring.inputs import InputSpec, TextEncoder, clip_text
from router.scoring.model_dir import DEFAULT_MODEL, ModelDir, ScorerLoadError, default_model_dir
from router.scoring.scorer import Scorer
from router.scoring.text import prompt_text

__all__ = [
    "DEFAULT_MODEL",
    "InputSpec",
    "ModelDir",
    "Scorer",
    "ScorerLoadError",
    "TextEncoder",
    "clip_text",
    "default_model_dir",
    "prompt_text",
]
