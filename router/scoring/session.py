"""The onnxruntime session: provider choice and thread settings."""

from __future__ import annotations

import ctypes
import os
import sys
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


def _gpu_driver_present() -> bool:
    # onnxruntime-gpu lists CUDA as available on any host; asking for it where
    # no NVIDIA driver exists only produces library-load errors in the log.
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def preferred_providers() -> list[str]:
    forced = os.environ.get(PROVIDER_ENV)
    if forced:
        return [forced, "CPUExecutionProvider"] if forced != "CPUExecutionProvider" else [forced]
    if "CUDAExecutionProvider" in ort.get_available_providers() and _gpu_driver_present():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _preload_cuda_libraries() -> None:
    # onnxruntime-gpu finds CUDA/cuDNN from the nvidia-* wheels only once they
    # are loaded; a host with a system-wide CUDA needs none of this.
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # a failed preload only means the CPU fallback
        return


def create_session(
    model: Path, threads: int | None = None, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    available = ort.get_available_providers()
    chosen = [p for p in providers or preferred_providers() if p in available]
    chosen = chosen or ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in chosen:
        _preload_cuda_libraries()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    # Spinning threads steal the cores the event loop needs and widen p99.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Warnings about graph rewrites are noise for a model this size.
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=chosen)
    except Exception:
        if chosen == ["CPUExecutionProvider"]:
            raise
        # A GPU provider that fails outright (driver/runtime mismatch) must not
        # take scoring down with it: the CPU provider always works.
        session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if inputs != EXPECTED_INPUTS or not outputs >= EXPECTED_OUTPUTS:
        raise ValueError(
            f"{model}: expected inputs {sorted(EXPECTED_INPUTS)} and outputs "
            f"{sorted(EXPECTED_OUTPUTS)}, got {sorted(inputs)} and {sorted(outputs)}"
        )
    return session
