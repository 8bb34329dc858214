#!/usr/bin/env bash
# Scoring benchmark on a CUDA host (prepared for one NVIDIA H200): the same
# measurements as bench/scoring/run.py, on onnxruntime's CUDAExecutionProvider.
#
#   bash bench/gpu_scoring.sh            # from the repository root, ~2 minutes
#
# Goals: p50 <= 2 ms at batch 1 (router path), >= 5,000 prompts/s batched.
# Needs Python >= 3.11 and an NVIDIA driver. Packages come from the package
# index, or from a local wheelhouse when WHEELS=/path/to/wheels is set (a host
# without network: put onnxruntime-gpu, the nvidia-*-cu12 wheels and the
# project's dependencies there). Writes bench/scoring/results-gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-bench/.venv-gpu}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "gpu_scoring: nvidia-smi failed; no usable GPU here" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip_install() {
  if [ -n "${WHEELS:-}" ]; then
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" "$@"
  else
    "$VENV/bin/pip" install -q "$@"
  fi
}
pip_install -e .
# The CPU and GPU builds of onnxruntime share one import name: keep only the GPU one.
"$VENV/bin/pip" uninstall -y -q onnxruntime >/dev/null 2>&1 || true
pip_install "onnxruntime-gpu[cuda,cudnn]>=1.20"

"$VENV/bin/python" - <<'PY'
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime-gpu not active"
PY

# Big enough to keep the GPU busy: the micro-batcher forms batches of up to 256.
"$VENV/bin/python" bench/scoring/run.py \
  --provider CUDAExecutionProvider \
  --threads 4 \
  --reps 300 \
  --concurrency 512 \
  --max-batch 256 \
  --max-wait-ms 2 \
  --prompts 50000 \
  --out bench/scoring/results-gpu.json \
  "$@"
