#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, virtual environment, project + dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs: the MQTT broker (and its CLI clients for debugging),
# headless Chromium with its WebDriver for the dashboard's browser tests, and mbpoll (a
# libmodbus Modbus master) for the Modbus interoperability test.
APT_PACKAGES=(mosquitto mosquitto-clients chromium chromium-driver postgresql mbpoll)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
fi

PY=${PY:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# The exact versions the tests passed with, each checked against its hash (requirements.lock,
# made by `make lock`). torch is the CPU wheel 2.13.0+cpu. TWINLOOP_TORCH=cuda (a machine
# with an NVIDIA GPU) installs every other pin from the lock, then torch 2.13.0 from PyPI,
# whose Linux wheel is the CUDA build (several GB, with its nvidia-* libraries).
LOCK=requirements.lock
if [ "${TWINLOOP_TORCH:-cpu}" = cuda ]; then
  awk '/^torch==/{skip=1; next} skip && /^ /{next} {skip=0; print}' "$LOCK" >.venv/lock-no-torch.txt
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r .venv/lock-no-torch.txt
  .venv/bin/python -m pip install --quiet 'torch==2.13.0'
else
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$LOCK"
fi
# The project itself, editable, built with the locked setuptools (no unpinned build env).
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check
