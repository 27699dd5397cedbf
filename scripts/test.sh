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
exec .venv/bin/python -m pytest "$@"
