#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU whose Python has JAX (the device image):
# installs the wheels carried in .wheels-gpu/ (scripts/gpu-wheels fetches them, here), then
# runs scripts/gpu_check.py, writing its figures to $OUT (or hjax-results/gpu-check).
#
#   scripts/gpu-wheels                 # here: download the wheels the image lacks
#   scripts/gpu_check.sh [--quick]     # there (device run, carry .wheels-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .wheels-gpu/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 scripts/gpu_check.py --out "${OUT:-hjax-results/gpu-check}" "$@"
