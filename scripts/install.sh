#!/usr/bin/env bash
# Install interactvlm_ros and everything it needs into ./.venv (CPU; no GPU needed).
# torch is installed FIRST and pinned so that nothing pulls the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# PyPI's Linux torch is the CUDA build (GBs of nvidia-* wheels): take the CPU build from PyTorch's index, torch alone
# (one try: where that index cannot be reached pip prints one warning and goes on with what it has, e.g. a local CPU
# wheel in its find-links), then its small dependencies from the usual index
python -m pip install -q --no-deps --retries 0 "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e "ros2_ws/src/interactvlm_ros[all]"
python -m pip install -q -r requirements-dev.txt
echo "interactvlm_ros installed into $VENV ($(python -c 'import interactvlm_ros; print(interactvlm_ros.__version__)'))"
