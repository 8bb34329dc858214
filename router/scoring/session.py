"""The onnxruntime session: provider choice and thread settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

__all__ = ["PROVIDER_ENV", "create_session", "default_threads", "preferred_providers"]

#: Set to e.g. "CPUExecutionProvider" to override the automatic choice.
PROVIDER_ENV = "ROUTER_SCORING_PROVIDER"

EXPECTED_INPUTS = {"input_ids", "attention_mask", "log_chars"}
EXPECTED_OUTPUTS = {"score", "embedding"}


def default_threads() -> int:
    # Past four threads a model this small gains little and adds tail latency.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cpus or 1))


def preferred_providers() -> list[str]:
    forced = os.environ.get(PROVIDER_ENV)
    if forced:
        return [forced, "CPUExecutionProvider"] if forced != "CPUExecutionProvider" else [forced]
    available = ort.get_available_providers()
    # onnxruntime-gpu lists CUDA even on hosts without a GPU; creating the
    # session then falls back to CPU, which get_providers() reports.
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def create_session(
    model: Path, threads: int | None = None, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # Spinning threads steal the cores the event loop needs and widen p99.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Without a GPU, onnxruntime-gpu logs CUDA load errors before falling back.
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(model), sess_options=options, providers=list(providers or preferred_providers())
    )
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if inputs != EXPECTED_INPUTS or not outputs >= EXPECTED_OUTPUTS:
        raise ValueError(
            f"{model}: expected inputs {sorted(EXPECTED_INPUTS)} and outputs "
            f"{sorted(EXPECTED_OUTPUTS)}, got {sorted(inputs)} and {sorted(outputs)}"
        )
    return session
