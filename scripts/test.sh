#!/usr/bin/env bash
# usage: bash scripts/test.sh [pytest args...]
# Installs (cached), runs the shape checks (scripts/checks.sh: ruff, import-linter, mypy),
# then the whole test suite: unit tests, then integration tests on real local Spark +
# Delta, the real embedded Kafka-protocol broker and real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/checks.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# Most of the suite waits on brokers, workers and Spark jobs rather than computing, so
# test files run in parallel workers (pytest-xdist; tests/conftest.py's scheduler keeps
# the SparkSession, its lake and module fixtures built once). SHOPFLOW_TEST_WORKERS=0
# runs everything in this process.
workers=${SHOPFLOW_TEST_WORKERS:-4}
if [ "$workers" = 0 ]; then exec .venv/bin/python -m pytest "$@"; fi
exec .venv/bin/python -m pytest -n "$workers" "$@"
