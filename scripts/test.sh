#!/usr/bin/env bash
# usage: bash scripts/test.sh [pytest args...]
# Installs (cached) and runs the whole test suite: unit tests, then integration tests
# on real local Spark + Delta, the real embedded Kafka-protocol broker and real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
