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
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e "ros2_ws/src/interactvlm_ros[all]"
python -m pip install -q -r requirements-dev.txt
echo "interactvlm_ros installed into $VENV ($(python -c 'import interactvlm_ros; print(interactvlm_ros.__version__)'))"
