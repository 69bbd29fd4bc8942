#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, virtual environment, project + dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs: the MQTT broker (and its CLI clients for debugging) and
# headless Chromium with its WebDriver for the dashboard's browser tests.
APT_PACKAGES=(mosquitto mosquitto-clients chromium chromium-driver postgresql)
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
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to 2.13.0 in pyproject.toml (the CPU wheel on disk); an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install --quiet -e '.[dev]'
